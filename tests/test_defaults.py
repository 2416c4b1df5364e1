"""Defaults used in several places are defined once (:mod:`multistream.defaults`, or a dataclass's default): no
parameter, dataclass field, keyword argument or command-line option of these names repeats the value as a literal."""

import ast

from test_layering import modules

from multistream import defaults

REPEATED = {  # name (an option's, with - as _) -> the value defined once
    "max_tokens": defaults.EVAL_MAX_TOKENS,
    "input_wait": defaults.INPUT_WAIT_S,
    "speak_rule": defaults.SPEAK_RULE,
    "rate": defaults.ARRIVAL_RATE,
    "rate_tok_s": defaults.ARRIVAL_RATE,
    "speculative": defaults.SPECULATIVE_ROWS,
    "max_rows": defaults.MAX_ROWS,
    "max_sessions": defaults.MAX_SESSIONS,
    "prefix": defaults.SYSTEM_PROMPT,
    "system": defaults.SYSTEM_PROMPT,
}
# module -> literals still there, each to be replaced by its name in multistream.defaults (none left). The test fails
# when one is gone, so that this list only shrinks.
KNOWN_EXCEPTIONS: dict[str, set] = {}


def _literal(node) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ...


def named_literals(tree: ast.AST):
    """(name, literal value, line) of every default, field, keyword argument and ``add_argument`` option default."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            positional = a.posonlyargs + a.args
            for arg, default in zip(positional[len(positional) - len(a.defaults):], a.defaults):
                yield arg.arg, _literal(default), default.lineno
            for arg, default in zip(a.kwonlyargs, a.kw_defaults):
                if default is not None:
                    yield arg.arg, _literal(default), default.lineno
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            yield node.target.id, _literal(node.value), node.lineno
        elif isinstance(node, ast.Call):
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            if getattr(node.func, "attr", None) == "add_argument" and "default" in kw:
                option = next((a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")),
                              None)
                if option:
                    yield option[2:].replace("-", "_"), _literal(kw["default"]), node.lineno
            else:
                for name, value in kw.items():
                    yield name, _literal(value), value.lineno


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                             and not isinstance(a, bool) and a == b)


def test_the_check_sees_a_repeated_default():
    code = "def f(rate: float = 10.0, max_tokens=144): pass\np.add_argument('--input-wait', default=0.5)\nEngineConfig(speculative=16)"
    found = [(n, v) for n, v, _ in named_literals(ast.parse(code)) if n in REPEATED and _same(v, REPEATED[n])]
    assert found == [("rate", 10.0), ("max_tokens", 144), ("input_wait", 0.5), ("speculative", 16)]


def test_defaults_are_defined_once():
    bad, seen = [], {}
    for m, (path, _) in modules().items():
        if m == "multistream.defaults":
            continue
        for name, value, line in named_literals(ast.parse(path.read_text(encoding="utf-8"))):
            if name in REPEATED and _same(value, REPEATED[name]):
                if (name, value) in KNOWN_EXCEPTIONS.get(m, set()):
                    seen.setdefault(m, set()).add((name, value))
                else:
                    bad.append(f"{m}:{line} {name}={value!r}: use multistream.defaults")
    assert not bad, "\n".join(bad)
    assert seen == KNOWN_EXCEPTIONS, f"fixed, remove from KNOWN_EXCEPTIONS: {KNOWN_EXCEPTIONS} (left: {seen})"
