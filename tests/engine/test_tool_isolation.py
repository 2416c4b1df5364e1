"""Tools cannot take the server down: bounded arithmetic, and a worker process that the timeout really ends."""

import asyncio
import os
import time
from pathlib import Path

import pytest

from multistream.engine.tools import ToolRegistry, calculator, demo_tools


def hang(pidfile: str) -> str:
    """A tool that never returns, and says which process it runs in."""
    Path(pidfile).write_text(str(os.getpid()))
    while True:
        time.sleep(0.01)


def answer() -> str:
    return "42"


def broken() -> str:
    raise RuntimeError("kaput")


def run(registry: ToolRegistry, call: str) -> str:
    async def go():
        return "".join([piece async for piece in registry.run(call)])

    return asyncio.run(go())


@pytest.mark.parametrize(
    "expression",
    ["(((9**64)**64)**64)**64", "((9**64)**64)**64", "(9**64)**64", "*".join(["9**64"] * 25),
     "max(9**64, 2)**64", "(-(9**64))**63"],
)
def test_the_calculator_bounds_operand_sizes(expression):
    with pytest.raises(ValueError, match="operand too large"):
        calculator(expression)


def test_the_calculator_still_does_big_but_bounded_arithmetic():
    assert calculator("2**64") == str(2**64) and calculator("(2**32)**32") == str(2**1024)
    assert calculator("9**64 * 9**64") == str(9**128) and calculator("2.5**64") == str(int(2.5**64))


def test_a_hanging_isolated_tool_is_killed_at_its_timeout(tmp_path):
    reg = ToolRegistry(timeout=1.0)
    reg.register("hang", hang, isolate=True)
    pidfile = tmp_path / "pid"
    out = run(reg, f'hang({{"pidfile": "{pidfile}"}})')
    assert out == "error: tool 'hang' timed out after 1 s"
    pid = int(pidfile.read_text())
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):  # gone: killed and reaped, not left computing
        os.kill(pid, 0)


def test_isolated_tools_answer_and_fail_like_the_others():
    reg = ToolRegistry(timeout=10.0)
    reg.register("answer", answer, isolate=True)
    reg.register("broken", broken, isolate=True)
    assert run(reg, "answer({})") == "42"
    assert run(reg, "broken({})") == "error: tool 'broken' failed: RuntimeError: kaput"
    assert run(demo_tools(), 'calculator({"expression": "((9**64)**64)**64"})').startswith(
        "error: tool 'calculator' failed: ValueError: operand too large"
    )
    assert all(tool.isolate for tool in demo_tools().tools.values())
    with pytest.raises(ValueError, match="plain function"):
        reg.register("gen", lambda: (yield 1), isolate=True)
