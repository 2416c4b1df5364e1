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
The workers fork from a server of our own (``toolworker``), started as a fresh interpreter: they
never import the host program's ``__main__``, so they work the same from a script file,
``python -c``, ``python - < script.py`` or an embedded interpreter.

The worker gets the function by reference (its module and name) where a fresh interpreter can
import it. A function it cannot import that way (defined in the host's ``__main__``, a lambda, a
nested function) goes by value if ``cloudpickle`` is installed; without it, such a tool runs in a
thread of this process instead, with a warning at registration: its timeout still answers on time
and its result is still cut, but the thread cannot be stopped.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import inspect
import io
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ..calculator import calculator
from ..timeline import REACTION_ROWS
from ..toolcall import ToolCallError, parse_call
from . import toolworker

# A result enters the tool stream no earlier than this many rows after the row of the call's end token,
# as in the training data (the schedule convention of multistream.timeline).
RESULT_DELAY_ROWS = REACTION_ROWS


@dataclass
class Tool:
    name: str
    fn: Callable
    description: str = ""
    isolate: bool = False
    """Run each call in a worker process, killed at the timeout (see ``ToolRegistry.register``)."""
    by_value: bool = False
    """The worker gets ``fn`` by value (cloudpickle): a fresh interpreter cannot import it by name."""


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
        """Add a tool. ``isolate``: each call runs in a worker process killed at the timeout; ``fn`` must then
        be a plain function (or a picklable callable). One a fresh interpreter cannot import by name (defined
        in ``__main__``, a lambda, a nested function) is sent by value when ``cloudpickle`` is installed, and
        otherwise runs in a thread of this process, with a ``RuntimeWarning`` saying so."""
        if isolate and (inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            raise ValueError(f"tool {name!r}: only a plain function can run isolated in a worker process")
        by_value = False
        if isolate:
            why = _not_by_reference(fn)
            if why is not None:
                cloudpickle = _cloudpickle()
                if cloudpickle is not None:
                    try:
                        cloudpickle.dumps(fn)
                    except Exception as e:
                        raise ValueError(f"tool {name!r}: cannot be sent to a worker process ({why}; by value: "
                                         f"{type(e).__name__}: {e})") from None
                    by_value = True
                else:
                    warnings.warn(
                        f"tool {name!r} runs in a thread of this process, not in a worker process: {why}. Its timeout "
                        "still answers on time but cannot stop it. Define it in a module the worker can import, or "
                        "install cloudpickle to send it by value.", RuntimeWarning, stacklevel=2)
                    isolate = False
        if isolate:
            _server()  # start the worker server now, not inside the first call's timeout
        description = description or (inspect.getdoc(fn) or "").split("\n")[0]
        self.tools[name] = Tool(name, fn, description, isolate, by_value)

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
                    yield await _in_worker(tool, args, self.max_result_chars + 1)
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


class _MainReference(Exception):
    pass


class _ByReference(pickle.Pickler):
    """A pickler that refuses what only this process can unpickle: anything of ``__main__``."""

    def reducer_override(self, obj):
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", None) == "__main__":
            raise _MainReference(f"{obj.__qualname__} is defined in the host program's __main__")
        return NotImplemented


def _not_by_reference(fn: Callable) -> str | None:
    """Why a fresh interpreter cannot get ``fn`` by reference (its module and name), or None if it can."""
    try:
        _ByReference(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(fn)
    except _MainReference as e:
        return str(e)
    except Exception as e:
        return f"it cannot be pickled by name ({type(e).__name__}: {e})"
    return None


def _cloudpickle():
    try:
        import cloudpickle
    except ImportError:
        return None
    return cloudpickle


class _WorkerServer:
    """The running ``toolworker`` server of this process, and the host's end of its control socket."""

    def __init__(self):
        ours, theirs = socket.socketpair()
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.control = ours
        executable = sys.executable
        if not executable:
            raise RuntimeError("isolated tools need sys.executable, the Python that runs the worker server")
        with theirs:
            fd = theirs.fileno()
            self.proc = subprocess.Popen(
                [executable, "-c", toolworker.bootstrap(fd, list(sys.path))],
                pass_fds=[fd], stdin=subprocess.DEVNULL, start_new_session=True,  # no Ctrl-C of the terminal
            )

    def hand(self, sock: socket.socket) -> None:
        """Ask the server to fork a worker that serves ``sock``."""
        with self.lock:
            socket.send_fds(self.control, [b"w"], [sock.fileno()])

    def close(self) -> None:
        self.control.close()  # the server kills its running workers and exits
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_server_lock = threading.Lock()
_the_server: _WorkerServer | None = None


def _server(fresh: bool = False) -> _WorkerServer:
    """This process's worker server, started on first use (again in a forked child, or if it has died)."""
    global _the_server
    with _server_lock:
        s = _the_server
        if s is None or s.pid != os.getpid() or s.proc.poll() is not None or fresh:
            if s is not None and s.pid == os.getpid():
                s.close()
            elif s is not None:  # inherited from the process this one forked from: that one's server, not ours
                s.control.close()
            s = _the_server = _WorkerServer()
        return s


@atexit.register
def _stop_server() -> None:
    s = _the_server
    if s is not None and s.pid == os.getpid():
        s.close()


async def _read_message(reader: asyncio.StreamReader):
    size = toolworker.HEADER.unpack(await reader.readexactly(toolworker.HEADER.size))[0]
    if size > toolworker.MAX_MESSAGE_BYTES:
        raise ToolFailed(f"the worker process sent {size} bytes, more than {toolworker.MAX_MESSAGE_BYTES}")
    return pickle.loads(await reader.readexactly(size))


async def _in_worker(tool: Tool, args: dict, limit: int) -> str:
    """``str(tool.fn(**args))[:limit]`` computed in a worker process, which is killed if this is cancelled
    (the registry's timeout) before the result is in."""
    request = (_cloudpickle().dumps if tool.by_value else pickle.dumps)((tool.fn, args, limit))
    ours, theirs = socket.socketpair()
    try:
        try:
            _server().hand(theirs)
        except OSError:  # the server has died since the last call: once more with a fresh one
            _server(fresh=True).hand(theirs)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    try:
        reader, writer = await asyncio.open_unix_connection(sock=ours)
    except BaseException:
        ours.close()
        raise
    pid = pidfd = None
    done = False
    try:
        pid = await _read_message(reader)
        pidfd = _pidfd(pid)  # the worker is waiting for the request: alive, so this is the right process
        writer.write(toolworker.HEADER.pack(len(request)) + request)
        await writer.drain()
        ok, value = await _read_message(reader)
        done = True
    except (asyncio.IncompleteReadError, ConnectionError):
        raise ToolFailed("the worker process died") from None
    finally:
        writer.close()
        if pid is not None and not done:
            await asyncio.shield(_end(pid, pidfd))
        if pidfd is not None:
            os.close(pidfd)
    if not ok:
        raise ToolFailed(value)
    return value


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)  # Linux: signals through it cannot reach a later process with the same pid
    except (AttributeError, OSError):
        return None


async def _end(pid: int, pidfd: int | None) -> None:
    """Kill a worker and wait (5 s at most) until its server has reaped it."""
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(1000):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.005)


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
