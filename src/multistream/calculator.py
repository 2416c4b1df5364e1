"""The calculator tool: arithmetic from a parsed syntax tree, nothing else executed.

The one calculator of the project: the engine's demo tools run it (in an isolated worker),
the skills compute their answers with it and the reference decoder answers calls with it,
so a training example's result is what the engine's tool returns.
"""

from __future__ import annotations

import ast
import math
import operator

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max}
MAX_BITS = 4096
"""Largest integer (in bits) the calculator builds: past it, ``operand too large`` (a few levels of
``**`` would otherwise build integers of gigabytes)."""


def _bounded(value):
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise ValueError(f"operand too large (over {MAX_BITS} bits)")
    return value


def calculator(expression: str) -> str:
    """Evaluate arithmetic: + - * / // % ** ( ), numbers, sqrt/abs/round/min/max. Nothing else is executed."""
    if len(expression) > 200:
        raise ValueError("expression longer than 200 characters")
    tree = ast.parse(expression, mode="eval")

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow):
                if abs(right) > 64:
                    raise ValueError("exponent too large")
                if isinstance(left, int) and isinstance(right, int) and left.bit_length() * abs(right) > MAX_BITS:
                    raise ValueError(f"operand too large (over {MAX_BITS} bits)")
            if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, int) \
                    and left.bit_length() + right.bit_length() > MAX_BITS + 1:
                raise ValueError(f"operand too large (over {MAX_BITS} bits)")
            return _bounded(_BINARY[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
            return _bounded(_FUNCS[node.func.id](*[ev(a) for a in node.args]))
        raise ValueError(f"unsupported expression element: {ast.dump(node)[:40]}")

    value = ev(tree)
    if isinstance(value, float) and not value.is_integer() and abs(value) < 1e15:
        # without binary noise: 15 significant digits (0.1 * 3 is 0.3, not 0.30000000000000004), then 10 decimals
        # (0.1 + 0.2 - 0.3 is 0, not 5.55e-17), written out without an exponent (0.00001, not 1e-05)
        value = round(float(f"{value:.15g}"), 10)
        if not value.is_integer():
            return f"{value:.10f}".rstrip("0")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)
