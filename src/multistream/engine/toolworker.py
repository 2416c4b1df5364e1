"""The worker processes of isolated tools: a small fork server of our own.

``ToolRegistry`` runs a tool registered with ``isolate=True`` in a process of its own, killed when its
timeout passes. That process is forked from a server started as a fresh interpreter
(``python -c`` running ``serve`` below), never from the host program, which may hold threads and a model,
and never by way of ``multiprocessing``, whose workers import the host's ``__main__`` again: that fails
outright when the host is ``python - < script.py`` (there is no file) and re-runs the host script
otherwise. The server imports nothing of the host but the parent's ``sys.path`` and this package.

The protocol, one call at a time per socket:

1. the host makes a socket pair and hands one end to the server over the control socket (``SCM_RIGHTS``);
2. the server forks a worker for it, which writes its pid first (so that the host can kill it) and
   then waits for the request;
3. the host writes the request, ``pickle((fn, kwargs, limit))``; the worker answers
   ``pickle((ok, text))`` with ``str(fn(**kwargs))`` cut to ``limit`` characters, or
   ``Type: message`` of the exception, and exits.

Each message is a pickle after its length (8 bytes, big-endian). The worker sends its pid before it reads
the request, so a host that gives up before knowing the pid has sent nothing to compute: closing its end
makes the worker exit. The server reaps its workers as they end (SIGCHLD), kills those still running and
exits when the host's end of the control socket closes (the host exited or shut it down).
"""

from __future__ import annotations

import os
import pickle
import selectors
import signal
import socket
import struct
import sys

HEADER = struct.Struct(">Q")
MAX_MESSAGE_BYTES = 64 << 20
"""A bound on one message either way; a result is cut to the registry's ``max_result_chars`` long before."""


def frame(obj) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_message(sock: socket.socket) -> bytes | None:
    header = _recv_exact(sock, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_MESSAGE_BYTES:
        return None
    return _recv_exact(sock, size)


def _work(sock: socket.socket) -> None:
    """One call in a forked worker: pid out, request in, result out."""
    sock.sendall(frame(os.getpid()))
    request = _read_message(sock)
    if request is None:  # the host gave up before sending anything to compute
        return
    try:
        fn, kwargs, limit = pickle.loads(request)  # may import the tool's module (or cloudpickle)
        answer = (True, str(fn(**kwargs))[:limit])
    except Exception as e:
        answer = (False, f"{type(e).__name__}: {e}")
    try:
        sock.sendall(frame(answer))
    except OSError:  # the host is gone
        pass


def serve(control_fd: int) -> None:
    """The server's loop: fork a worker for each socket handed over ``control_fd``; exit when it closes."""
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)  # a SIGCHLD wakes the select below
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    workers: set[int] = set()
    try:
        while True:
            for key, _ in selector.select():
                if key.fileobj == wake_r:
                    os.read(wake_r, 4096)
                    continue
                message, fds, _, _ = socket.recv_fds(control, 16, 4)
                if not message:
                    return
                for fd in fds:
                    pid = os.fork()
                    if pid == 0:
                        _child(fd, control, selector, (wake_r, wake_w))
                    os.close(fd)
                    workers.add(pid)
            while workers:  # reap the workers that ended
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if not pid:
                    break
                workers.discard(pid)
    finally:
        for pid in workers:  # the host is gone: nobody waits for these results
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _child(fd: int, control: socket.socket, selector, wake: tuple[int, int]) -> None:
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        selector.close()
        control.close()
        for w in wake:
            os.close(w)
        with socket.socket(fileno=fd) as sock:
            _work(sock)
    except BaseException:  # noqa: BLE001 - a worker never returns into the server's loop
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def bootstrap(control_fd: int, path: list[str]) -> str:
    """The ``python -c`` program that starts the server with the host's ``sys.path``."""
    return (
        f"import sys; sys.path[:] = {path!r}; "
        "import multistream.engine.tools; "  # preloaded: the demo tools' workers fork with it imported
        f"from multistream.engine.toolworker import serve; serve({control_fd})"
    )
