"""Tools the model can call on its ``call`` stream, and two demo tools.

A call is one message on the ``call`` stream, ``name({"json": "args"})`` (see
``multistream.toolcall``). A tool is a Python callable taking keyword arguments: a
plain function, a coroutine function, or a (sync or async) generator whose pieces are
streamed into the ``tool`` stream as they come. Whatever goes wrong (unknown tool, bad
arguments, an exception, a timeout) becomes an error text on the ``tool`` stream. A result
longer than ``max_result_chars`` is cut there, with a note saying so (the model reads every
character of it, one token per row, and a session's memory must stay bounded).

A plain function registered with ``isolate=True`` (the demo tools are) runs in a worker
process of its own, which is killed when its timeout passes: a thread cannot be stopped,
so a tool that hangs or computes without end would otherwise keep a core busy for good.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import multiprocessing
import multiprocessing.forkserver
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ..calculator import calculator
from ..timeline import REACTION_ROWS
from ..toolcall import ToolCallError, parse_call

# A result enters the tool stream no earlier than this many rows after the row of the call's end token,
# as in the training data (the schedule convention of multistream.timeline).
RESULT_DELAY_ROWS = REACTION_ROWS


@dataclass
class Tool:
    name: str
    fn: Callable
    description: str = ""
    isolate: bool = False
    """Run each call in a worker process, killed at the timeout (``fn``: a module-level plain function)."""


TIMEOUT_S = 10.0
"""Seconds a tool call may run (``ToolRegistry``, ``demo_tools``)."""


class ToolFailed(Exception):
    """A tool raised in its worker process; the message is ``Type: message``."""


class ToolRegistry:
    def __init__(self, timeout: float = TIMEOUT_S, max_result_chars: int = 8000):
        if max_result_chars < 1:
            raise ValueError(f"max_result_chars must be >= 1, got {max_result_chars}")
        self.tools: dict[str, Tool] = {}
        self.timeout = timeout
        self.max_result_chars = max_result_chars

    def register(self, name: str, fn: Callable, description: str = "", isolate: bool = False) -> None:
        if isolate and (inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            raise ValueError(f"tool {name!r}: only a plain function can run isolated in a worker process")
        if isolate:
            _worker_context()  # start the fork server now, not inside the first call's timeout
        self.tools[name] = Tool(name, fn, description or (inspect.getdoc(fn) or "").split("\n")[0], isolate)

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    def run_all(self, call_text: str) -> str:
        """The whole result text of one call, outside an event loop (scripted runs; errors come back as text)."""

        async def collect() -> list[str]:
            return [piece async for piece in self.run(call_text)]

        return "".join(asyncio.run(collect()))

    async def run(self, call_text: str) -> AsyncIterator[str]:
        """Pieces of the result of one call, ``max_result_chars`` at most (then a note that it was cut);
        errors are yielded as ``error: ...`` text, never raised."""
        left = self.max_result_chars
        pieces = self._run(call_text)
        try:
            async for piece in pieces:
                if len(piece) > left:
                    if left:
                        yield piece[:left]
                    yield f" [cut: the result is longer than {self.max_result_chars} characters]"
                    return
                left -= len(piece)
                yield piece
        finally:
            await pieces.aclose()  # a generator tool cut short is stopped, not left running

    async def _run(self, call_text: str) -> AsyncIterator[str]:
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
def clock(utc_offset_hours: float = 0.0) -> str:
    """The current date and time (UTC, or at the given offset in hours)."""
    tz = dt.timezone(dt.timedelta(hours=float(utc_offset_hours)))
    return dt.datetime.now(tz).strftime("%Y-%m-%d %H:%M:%S %z")


def demo_tools(timeout: float = TIMEOUT_S) -> ToolRegistry:
    reg = ToolRegistry(timeout)
    reg.register("calculator", calculator, isolate=True)
    reg.register("clock", clock, isolate=True)
    return reg
