"""Isolated tools work whatever the host program is: a file, ``python -c``, ``python - < script.py``.

Their workers fork from a server of our own and never import the host's ``__main__`` (multiprocessing's
do, which fails outright under ``python -``). Each host here only builds the tool registry and calls it.
"""

import os
import subprocess
import sys
import warnings

import pytest

from multistream.engine import tools as tools_module
from multistream.engine.tools import ToolRegistry, demo_tools

# The host program: the calculator, and a tool of its own defined in its __main__. No __main__ guard: a
# worker that imported this script again would call the tools again (and print twice).
HOST = """
import os
from multistream.engine.tools import demo_tools

def where(text: str) -> str:
    return f"{text.upper()} from {'this' if os.getpid() == HOST_PID else 'another'} process"

HOST_PID = os.getpid()
tools = demo_tools()
tools.register("where", where, isolate=True)
print("calculator:", tools.run_all('calculator({"expression": "17 + 25"})'))
print("user tool:", tools.run_all('where({"text": "hi"})'))
"""


def has_cloudpickle() -> bool:
    return tools_module._cloudpickle() is not None


def run_host(how: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "always"}
    if how == "file":
        script = tmp_path / "host.py"
        script.write_text(HOST)
        args, stdin = [sys.executable, str(script)], None
    elif how == "-c":
        args, stdin = [sys.executable, "-c", HOST], None
    else:
        args, stdin = [sys.executable, "-"], HOST
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)


@pytest.mark.parametrize("how", ["stdin", "-c", "file"])
def test_the_calculator_and_a_user_tool_answer_from_any_host(how, tmp_path):
    done = run_host(how, tmp_path)
    assert done.returncode == 0, done.stderr
    where = "another" if has_cloudpickle() else "this"
    assert done.stdout.splitlines() == ["calculator: 42", f"user tool: HI from {where} process"], done.stderr
    if not has_cloudpickle():  # the fallback says so, naming the tool
        assert "tool 'where' runs in a thread of this process" in done.stderr


def from_a_nested_scope():
    def inner() -> str:
        return "inner"

    return inner


def test_a_tool_a_worker_cannot_import_runs_in_a_thread_with_a_warning(monkeypatch):
    monkeypatch.setattr(tools_module, "_cloudpickle", lambda: None)
    reg = ToolRegistry(timeout=5.0)
    with pytest.warns(RuntimeWarning, match=r"tool 'inner' runs in a thread of this process.*inner"):
        reg.register("inner", from_a_nested_scope(), isolate=True)
    assert not reg.tools["inner"].isolate
    assert reg.run_all("inner({})") == "inner"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a module-level function goes to a worker by name: no warning
        reg.register("calculator", demo_tools().tools["calculator"].fn, isolate=True)
    assert reg.tools["calculator"].isolate and not reg.tools["calculator"].by_value


def test_the_worker_server_comes_back_after_it_dies():
    reg = demo_tools()
    assert reg.run_all('calculator({"expression": "6 * 7"})') == "42"
    server = tools_module._server()
    server.proc.kill()
    server.proc.wait()
    assert reg.run_all('calculator({"expression": "6 * 7"})') == "42"
    assert tools_module._server() is not server
