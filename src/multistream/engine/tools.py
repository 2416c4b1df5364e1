"""Tools the model can call on its ``call`` stream, and two demo tools.

A call is one message on the ``call`` stream, ``name({"json": "args"})`` (see
``multistream.toolcall``). A tool is a Python callable taking keyword arguments: a
plain function, a coroutine function, or a (sync or async) generator whose pieces are
streamed into the ``tool`` stream as they come. Whatever goes wrong (unknown tool, bad
arguments, an exception, a timeout) becomes an error text on the ``tool`` stream.

A plain function registered with ``isolate=True`` (the demo tools are) runs in a worker
process of its own, which is killed when its timeout passes: a thread cannot be stopped,
so a tool that hangs or computes without end would otherwise keep a core busy for good.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import inspect
import math
import multiprocessing
import multiprocessing.forkserver
import operator
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ..toolcall import ToolCallError, parse_call

# A result enters the tool stream no earlier than this many rows after the row of the call's end token,
# as in the training data (an input reacting to an output starts one row after the row that follows it).
RESULT_DELAY_ROWS = 2


@dataclass
class Tool:
    name: str
    fn: Callable
    description: str = ""
    isolate: bool = False
    """Run each call in a worker process, killed at the timeout (``fn``: a module-level plain function)."""


class ToolFailed(Exception):
    """A tool raised in its worker process; the message is ``Type: message``."""


class ToolRegistry:
    def __init__(self, timeout: float = 10.0):
        self.tools: dict[str, Tool] = {}
        self.timeout = timeout

    def register(self, name: str, fn: Callable, description: str = "", isolate: bool = False) -> None:
        if isolate and (inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            raise ValueError(f"tool {name!r}: only a plain function can run isolated in a worker process")
        if isolate:
            _worker_context()  # start the fork server now, not inside the first call's timeout
        self.tools[name] = Tool(name, fn, description or (inspect.getdoc(fn) or "").split("\n")[0], isolate)

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    async def run(self, call_text: str) -> AsyncIterator[str]:
        """Pieces of the result of one call; errors are yielded as ``error: ...`` text, never raised."""
        try:
            name, args = parse_call(call_text)
        except ToolCallError as e:
            yield f"error: {e}"
            return
        tool = self.tools.get(name)
        if tool is None:
            yield f"error: unknown tool {name!r}; available: {', '.join(sorted(self.tools)) or 'none'}"
            return
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                if tool.isolate:
                    yield await _in_worker(tool.fn, args, self.timeout)
                else:
                    async for piece in _pieces(tool.fn, args):
                        yield piece
        except TimeoutError:
            yield f"error: tool {name!r} timed out after {self.timeout:g} s"
        except ToolFailed as e:
            yield f"error: tool {name!r} failed: {e}"
        except Exception as e:  # a crashed tool must not take the session down
            yield f"error: tool {name!r} failed: {type(e).__name__}: {e}"


async def _pieces(fn: Callable, args: dict) -> AsyncIterator[str]:
    if inspect.isasyncgenfunction(fn):
        async for piece in fn(**args):
            yield str(piece)
    elif inspect.iscoroutinefunction(fn):
        yield str(await fn(**args))
    elif inspect.isgeneratorfunction(fn):
        gen = fn(**args)
        while True:  # each piece computed off the event loop
            piece = await asyncio.to_thread(next, gen, StopIteration)
            if piece is StopIteration:
                return
            yield str(piece)
    else:
        yield str(await asyncio.to_thread(fn, **args))


def _work(fn: Callable, args: dict, conn) -> None:
    try:
        conn.send((True, str(fn(**args))))
    except Exception as e:
        conn.send((False, f"{type(e).__name__}: {e}"))


_context = None


def _worker_context():
    """Workers fork from a small clean server process (not from this one, which may hold threads and a model)."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload([__name__])
        multiprocessing.forkserver.ensure_running()
    return _context


async def _in_worker(fn: Callable, args: dict, timeout: float) -> str:
    """``str(fn(**args))`` computed in a worker process; the process is killed if this is cancelled or times out."""
    ctx = _worker_context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_work, args=(fn, args, send), daemon=True, name="multistream-tool")
    proc.start()  # a fork of the (running) fork server: milliseconds
    send.close()
    try:
        if not await asyncio.to_thread(receive.poll, timeout):
            raise TimeoutError
        ok, value = receive.recv()
    except EOFError:
        raise ToolFailed(f"the worker process died (exit code {proc.exitcode})") from None
    finally:
        if proc.is_alive():
            proc.kill()
        await asyncio.shield(asyncio.to_thread(proc.join, 5))
        receive.close()
    if not ok:
        raise ToolFailed(value)
    return value


# -- demo tools --------------------------------------------------------------------------
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
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def clock(utc_offset_hours: float = 0.0) -> str:
    """The current date and time (UTC, or at the given offset in hours)."""
    tz = dt.timezone(dt.timedelta(hours=float(utc_offset_hours)))
    return dt.datetime.now(tz).strftime("%Y-%m-%d %H:%M:%S %z")


def demo_tools(timeout: float = 10.0) -> ToolRegistry:
    reg = ToolRegistry(timeout)
    reg.register("calculator", calculator, isolate=True)
    reg.register("clock", clock, isolate=True)
    return reg
