"""Library modules leave the process alone: environment, warnings filters and torch threads are set by the entry
points (``multistream.cli.main`` and the library's own worker processes, through :mod:`multistream.runtime`)."""

import ast
import os
import subprocess
import sys
import textwrap

from test_layering import modules

SETTERS = {
    ("torch", "set_num_threads"), ("torch", "set_num_interop_threads"),
    ("warnings", "filterwarnings"), ("warnings", "simplefilter"), ("warnings", "resetwarnings"),
    ("os", "putenv"), ("os", "unsetenv"), ("environ", "setdefault"), ("environ", "update"), ("environ", "pop"),
}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
            yield node, (name, node.func.attr)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in targets:
                if isinstance(t, ast.Subscript) and ast.unparse(t.value) == "os.environ":
                    yield node, ("environ", "[]")


def test_only_the_runtime_module_sets_process_state():
    bad = [
        f"{m}:{node.lineno} {ast.unparse(node)[:80]}"
        for m, (path, _) in modules().items()
        if m != "multistream.runtime"
        for node, what in _calls(ast.parse(path.read_text(encoding="utf-8")))
        if what in SETTERS or what == ("environ", "[]")
    ]
    assert not bad, "\n".join(bad)


def test_the_check_sees_a_setter():
    """(The test above would pass vacuously if it missed the calls it looks for.)"""
    code = "import os, torch, warnings\ntorch.set_num_threads(1)\nos.environ['X'] = '1'\nwarnings.filterwarnings('ignore')\n"
    assert len([w for _, w in _calls(ast.parse(code)) if w in SETTERS or w == ("environ", "[]")]) == 3


def test_importing_every_module_changes_nothing_and_the_command_line_sets_up_its_process(tmp_path):
    code = textwrap.dedent(
        """
        import importlib, os, sys, warnings
        import torch

        env, filters, threads = dict(os.environ), list(warnings.filters), torch.get_num_threads()
        for name in sys.argv[2:]:
            importlib.import_module(name)
        assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())
        assert warnings.filters == filters, [f for f in warnings.filters if f not in filters]
        assert torch.get_num_threads() == threads

        from multistream.cli import main

        main(["validate", "--structure-only", sys.argv[1]])  # a cheap command
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        assert any(f[0] == "ignore" and f[1] and "is_gradient_checkpointing" in f[1].pattern for f in warnings.filters)
        """
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    names = sorted(m for m in modules() if not m.endswith("__main__"))
    run = subprocess.run([sys.executable, "-c", code, str(empty), *names], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
