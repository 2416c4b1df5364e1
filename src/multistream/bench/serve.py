"""``multistream bench serve``: the real server (a child process on a loopback port; ``--model tiny`` by default, a
random model built in-process) under load: sessions one at a time, then N WebSocket sessions at once, then N HTTP
completions at once (and with ``--realtime R``, R Realtime sessions at once, then R Realtime sessions beside N
WebSocket and N HTTP ones): sessions/s, generated tokens/s, whether every session answered and answered as it does
alone, and the server process's RSS before, at its peak and after; then a soak of sessions dropped abruptly."""

from __future__ import annotations

import json
import os
import statistics
import time

SERVE_MODEL_NAME = "bench"


def _proc_status_kb(pid: int, field: str) -> int | None:
    """A ``/proc/PID/status`` field in kB (``VmRSS``: resident memory now, ``VmHWM``: its peak); None off Linux."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class _RssWatch:
    """The server process's resident memory: now, and its peak since ``reset`` (sampled, and the kernel's
    high-water mark where it can be reset, which catches peaks between samples)."""

    def __init__(self, pid: int, every: float = 0.005):
        import threading

        self.pid, self.every = pid, every
        self.peak_kb = 0
        self.hwm_ok = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-watch")

    def now_kb(self) -> int | None:
        return _proc_status_kb(self.pid, "VmRSS")

    def reset(self) -> None:
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.hwm_ok = True
        except OSError:
            self.hwm_ok = False
        with self._lock:
            self.peak_kb = self.now_kb() or 0

    def peak(self) -> int:
        hwm = _proc_status_kb(self.pid, "VmHWM") if self.hwm_ok else None
        with self._lock:
            return max(self.peak_kb, hwm or 0)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            kb = self.now_kb()
            if kb is not None:
                with self._lock:
                    self.peak_kb = max(self.peak_kb, kb)

    def __enter__(self) -> _RssWatch:
        self.reset()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _serve_child() -> None:
    """The server process (``python -c``, argv: model, dtype, max_sessions): load or build the model,
    warm it up, print the port, serve until SIGTERM."""
    import logging
    import socket
    import sys

    from ..engine.aio import AsyncEngine
    from ..engine.build import build_engine
    from ..engine.core import EngineConfig
    from ..engine.tools import demo_tools
    from ..runtime import configure
    from ..server import ServerLimits, create_app
    from ..server.run import Server

    configure()  # a process of its own: set up as the command line's
    model, dtype, max_sessions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    logging.basicConfig(level=logging.WARNING)
    core = build_engine(model, EngineConfig(max_sessions=max_sessions), dtype=dtype)
    app = create_app(
        AsyncEngine(core, demo_tools()), limits=ServerLimits(max_sessions=max_sessions), model_name=SERVE_MODEL_NAME
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # clients may connect from now on; the server accepts them once it runs
    port = sock.getsockname()[1]
    server = Server(app, "127.0.0.1", port, log_level="warning")
    print(f"port {port}", flush=True)
    server.run(sockets=[sock])


class _Clients:
    """The load generator: WebSocket sessions, HTTP completions and dropped sessions against one server.

    ``held``/``peak_held``: sessions the clients hold open at this moment (WebSocket: from
    ``opened`` to ``close``; HTTP: from request to response) and the most at once.
    """

    def __init__(self, port: int, max_tokens: int, timeout: float):
        self.port, self.max_tokens, self.timeout = port, max_tokens, timeout
        self.url = f"ws://127.0.0.1:{port}/v1/sessions"
        self.held = self.peak_held = 0

    def _hold(self, d: int) -> None:
        self.held += d
        self.peak_held = max(self.peak_held, self.held)

    def _open_msg(self) -> str:
        budget = {"max_tokens": self.max_tokens, "temperature": 0}
        return json.dumps({"type": "open", "tools": False, "streams": {s: budget for s in ("think", "answer", "call")}})

    async def ws(self, question: str) -> dict:
        """Open, ask, read until the answer's message ends, close. ``answer``: its tokens' texts."""
        import asyncio

        from websockets.asyncio.client import connect

        t = time.perf_counter()
        answer, generated, held, error = [], 0, False, None
        try:
            async with asyncio.timeout(self.timeout):
                async with connect(self.url, open_timeout=self.timeout, max_size=None) as ws:
                    await ws.send(self._open_msg())
                    await ws.send(json.dumps({"type": "input", "text": question, "bulk": True}))
                    async for raw in ws:
                        m = json.loads(raw)
                        if m["type"] == "opened":
                            held = True
                            self._hold(1)
                        elif m["type"] in ("error", "closed"):
                            error = m.get("code") or m.get("reason")
                            break
                        elif m["type"] == "token" and not m.get("forced"):
                            generated += 1
                            if m["stream"] == "answer":
                                answer.append(m["text"])
                        elif m["type"] == "message_end" and m["stream"] == "answer":
                            break
                    await ws.send(json.dumps({"type": "close"}))
        except Exception as e:  # a failed session is a figure, not a crash
            error = error or f"{type(e).__name__}: {e}"
        finally:
            if held:
                self._hold(-1)
        return {"answer": answer, "tokens": generated, "seconds": time.perf_counter() - t,
                "ok": error is None and bool(answer), "error": error}

    async def realtime(self, question: str) -> dict:
        """A ``/v1/realtime`` session: the question as an item, ``response.create``, the answer's deltas until
        ``response.done``. Each output stream has the budget of a WebSocket session, so the answers compare."""
        import asyncio

        from websockets.asyncio.client import connect

        t = time.perf_counter()
        answer, generated, held, error = [], 0, False, None
        budget = {"max_tokens": self.max_tokens, "temperature": 0}
        try:
            async with asyncio.timeout(self.timeout):
                async with connect(f"ws://127.0.0.1:{self.port}/v1/realtime?model={SERVE_MODEL_NAME}",
                                   open_timeout=self.timeout, max_size=None) as ws:
                    await ws.send(json.dumps({"type": "session.update", "session": {
                        "multistream": {"streams": {s: budget for s in ("think", "answer", "call")}}}}))
                    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                        "type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]}}))
                    await ws.send(json.dumps({"type": "response.create"}))
                    async for raw in ws:
                        m = json.loads(raw)
                        if m["type"] == "session.created":
                            held = True
                            self._hold(1)
                        elif m["type"] == "error":
                            error = m["error"]["code"]
                            break
                        elif m["type"] == "response.output_text.delta":
                            answer.append(m["delta"])
                        elif m["type"] == "response.done":
                            generated = m["response"]["usage"]["output_tokens"]
                            if m["response"]["status"] != "completed":
                                error = m["response"]["status"]
                            break
        except Exception as e:  # a failed session is a figure, not a crash
            error = error or f"{type(e).__name__}: {e}"
        finally:
            if held:
                self._hold(-1)
        return {"answer": answer, "tokens": generated, "seconds": time.perf_counter() - t,
                "ok": error is None and bool(answer), "error": error}

    async def _http(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """One HTTP/1.1 request on its own connection (no client library needed)."""
        import asyncio

        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            data = json.dumps(body).encode() if body is not None else b""
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data
            )
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), json.loads(payload)

    async def health(self) -> dict:
        return (await self._http("GET", "/health"))[1]

    async def http(self, question: str) -> dict:
        """One chat completion; ``answer``: its content."""
        import asyncio

        t = time.perf_counter()
        self._hold(1)
        try:
            async with asyncio.timeout(self.timeout):
                status, body = await self._http("POST", "/v1/chat/completions", {
                    "model": SERVE_MODEL_NAME, "messages": [{"role": "user", "content": question}],
                    "max_tokens": self.max_tokens, "temperature": 0,
                })
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body.get('error', {}).get('code')}")
            answer, tokens, error = body["choices"][0]["message"]["content"], body["usage"]["completion_tokens"], None
        except Exception as e:  # a failed completion is a figure, not a crash
            answer, tokens, error = "", 0, f"{type(e).__name__}: {e}"
        finally:
            self._hold(-1)
        return {"answer": answer, "tokens": tokens, "seconds": time.perf_counter() - t, "ok": error is None and bool(answer),
                "error": error}

    async def drop(self, question: str) -> str:
        """Open a session, ask, read one message, then end the TCP connection without a word; what it read first."""
        from websockets.asyncio.client import connect

        ws = await connect(self.url, open_timeout=self.timeout)
        try:
            await ws.send(self._open_msg())
            await ws.send(json.dumps({"type": "input", "text": question, "bulk": True}))
            first = json.loads(await ws.recv())
        finally:
            ws.transport.abort()  # no close frame, no goodbye
        return first.get("code") or first["type"]

    async def wait_empty(self, timeout: float = 120.0) -> int:
        """Wait until the server holds no session; the number it still holds."""
        import asyncio

        deadline = time.monotonic() + timeout
        while True:
            n = (await self.health())["sessions"]
            if n == 0 or time.monotonic() > deadline:
                return n
            await asyncio.sleep(0.05)


def _questions(n: int) -> list[str]:
    """Distinct questions that differ from their first word: even a random model answers each differently."""
    words = ["apple", "river", "stone", "cloud", "violin", "harbour", "copper", "meadow"]
    return [f"{37 * k % 1000} is my number and {words[k % len(words)]} my word; what do you make of {k}?" for k in range(n)]


def bench_serve(
    model: str = "tiny",
    sessions: int = 100,
    soak: int = 2000,
    max_tokens: int = 16,
    soak_concurrency: int = 32,
    dtype: str = "auto",
    timeout: float = 120.0,
    realtime: int = 0,
) -> dict:
    """The server under load, every figure from this one run (see the module docstring).

    Each output stream may write ``max_tokens`` tokens (greedy); a session ends when its
    answer message does (a Realtime session: at its ``response.done``). ``same_as_alone``:
    sessions whose answer equals, token for token, what the same question got when it was
    the only session (no cross-talk). ``realtime``: Realtime sessions in the two phases that have them (0: none).
    """
    import asyncio
    import select
    import subprocess
    import sys

    if sessions < 1 or soak < 0 or soak_concurrency < 1 or max_tokens < 1 or realtime < 0:
        raise ValueError("sessions >= 1, soak >= 0, soak_concurrency >= 1, max_tokens >= 1 and realtime >= 0 are required")
    max_sessions = 2 * max(sessions + realtime, soak_concurrency) + 8  # room for dropped sessions not yet noticed
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from multistream.bench.serve import _serve_child; _serve_child()", model, dtype,
         str(max_sessions)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline() if select.select([proc.stdout], [], [], 300)[0] else ""
        if not line.startswith("port "):
            raise RuntimeError(f"the server process did not start (exit code {proc.poll()})")
        port = int(line.split()[1])
        with _RssWatch(proc.pid) as rss:
            result = asyncio.run(_serve_load(_Clients(port, max_tokens, timeout), rss, sessions, soak, soak_concurrency,
                                             realtime))
    finally:
        proc.terminate()  # SIGTERM: the server says goodbye to its sessions and exits
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
    return {
        "model": model,
        "sessions": sessions,
        "realtime": realtime,
        "max_tokens": max_tokens,
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "startup_s": round(result.pop("startup_s") - t0, 2),
        **result,
    }


async def _serve_load(clients: _Clients, rss: _RssWatch, n: int, soak: int, soak_concurrency: int,
                      realtime: int = 0) -> dict:
    import asyncio

    mb = lambda kb: round(kb / 1024, 1) if kb else None  # noqa: E731
    started = time.perf_counter()
    await clients.wait_empty()
    questions = _questions(n)
    start_kb = rss.now_kb()

    async def phase(name: str, run) -> dict:
        clients.peak_held = clients.held = 0
        rss.reset()
        before = rss.now_kb()
        t = time.perf_counter()
        results = await run()
        wall = time.perf_counter() - t
        peak = rss.peak()
        left = await clients.wait_empty()
        await asyncio.sleep(0.2)  # the server's own clean-up after the last close
        tokens = sum(r["tokens"] for r in results)
        errors = sorted({r["error"] for r in results if r["error"]})
        return {
            "sessions": len(results),
            "answered": sum(r["ok"] for r in results),
            "held_at_once": clients.peak_held,
            "wall_s": round(wall, 3),
            "sessions_per_s": round(len(results) / wall, 2),
            "tokens": tokens,
            "tokens_per_s": round(tokens / wall, 1),
            "median_session_s": round(statistics.median(r["seconds"] for r in results), 3),
            "rss_mb": {"before": mb(before), "peak": mb(peak), "after": mb(rss.now_kb())},
            "left_open": left,
            **({"errors": errors[:5]} if errors else {}),
            "_results": results,
        }

    async def one_at_a_time():
        return [await clients.ws(q) for q in questions]

    async def ws_all():
        return await asyncio.gather(*(clients.ws(q) for q in questions))

    async def http_all():
        return await asyncio.gather(*(clients.http(q) for q in questions))

    rt_questions = [questions[k % n] for k in range(realtime)]

    async def realtime_all():
        return await asyncio.gather(*(clients.realtime(q) for q in rt_questions))

    async def mixed():  # Realtime sessions beside WebSocket and HTTP ones, all at once
        return await asyncio.gather(*(clients.realtime(q) for q in rt_questions), *(clients.ws(q) for q in questions),
                                    *(clients.http(q) for q in questions))

    modes = {"ws_1": await phase("ws_1", one_at_a_time)}
    alone = ["".join(r["answer"]) for r in modes["ws_1"].pop("_results")]
    runs = [(f"ws_{n}", ws_all, questions), (f"http_{n}", http_all, questions)]
    if realtime:
        runs += [(f"realtime_{realtime}", realtime_all, rt_questions),
                 (f"mixed_{realtime}rt_{n}ws_{n}http", mixed, rt_questions + questions + questions)]
    for name, run, asked in runs:
        modes[name] = await phase(name, run)
        got = ["".join(r["answer"]) if isinstance(r["answer"], list) else r["answer"] for r in modes[name].pop("_results")]
        modes[name]["same_as_alone"] = sum(a == alone[questions.index(q)] and bool(a) for a, q in zip(got, asked))
    one = modes["ws_1"]
    ratios = {
        f"{name}_vs_ws_1": {
            "sessions_per_s": round(m["sessions_per_s"] / one["sessions_per_s"], 2),
            "tokens_per_s": round(m["tokens_per_s"] / one["tokens_per_s"], 2) if one["tokens_per_s"] else None,
        }
        for name, m in modes.items() if name != "ws_1"
    }

    soak_result = None
    if soak:
        rss.reset()
        before = rss.now_kb()
        sem = asyncio.Semaphore(soak_concurrency)

        async def one(k: int) -> str:
            async with sem:
                try:
                    return await clients.drop(questions[k % n])
                except Exception as e:  # a refused or broken connection is a figure too
                    return type(e).__name__

        t = time.perf_counter()
        half = soak // 2
        firsts = await asyncio.gather(*(one(k) for k in range(half)))
        left = await clients.wait_empty()
        half_kb = rss.now_kb()  # after the first half: a leak would grow again in the second, a warm-up would not
        firsts += await asyncio.gather(*(one(k) for k in range(half, soak)))
        wall = time.perf_counter() - t
        peak = rss.peak()
        left = max(left, await clients.wait_empty())
        await asyncio.sleep(0.2)
        after = rss.now_kb()
        check = await clients.ws(questions[0])
        outcomes: dict[str, int] = {}
        for f in firsts:
            outcomes[f] = outcomes.get(f, 0) + 1
        soak_result = {
            "sessions": soak,
            "concurrency": soak_concurrency,
            "wall_s": round(wall, 3),
            "sessions_per_s": round(soak / wall, 1),
            "first_message": outcomes,
            "left_open": left,
            "still_answers": check["ok"],
            "same_as_alone_after": "".join(check["answer"]) == alone[0],
            "rss_mb": {"before": mb(before), "peak": mb(peak), "after_half": mb(half_kb), "after": mb(after)},
        }
    return {
        "startup_s": started,
        "rss_mb": {"start": mb(start_kb), "end": mb(rss.now_kb())},
        "modes": modes,
        "ratios": ratios,
        "soak": soak_result,
    }


def print_serve(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().size.width, 132))  # a wide table reads better than a wrapped one
    table = Table(title=f"multistream bench serve: model {r['model']}, {r['max_tokens']} tokens per output stream, "
                        f"server RSS at start {r['rss_mb']['start']} MB")
    for col in ("mode", "answered", "as alone", "at once", "wall s", "sess/s", "tok/s", "sess/s vs 1", "tok/s vs 1",
                "RSS MB before", "peak", "after"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for name, m in r["modes"].items():
        ratio = r["ratios"].get(f"{name}_vs_ws_1", {"sessions_per_s": 1.0, "tokens_per_s": 1.0})
        table.add_row(
            name, f"{m['answered']}/{m['sessions']}", str(m.get("same_as_alone", "ref.")), str(m["held_at_once"]),
            f"{m['wall_s']:.2f}", f"{m['sessions_per_s']:.1f}", f"{m['tokens_per_s']:.0f}",
            f"{ratio['sessions_per_s']}x", f"{ratio['tokens_per_s']}x",
            *(str(m["rss_mb"][k]) for k in ("before", "peak", "after")),
        )
    console.print(table)
    s = r["soak"]
    if s:
        console.print(
            f"soak: {s['sessions']} sessions opened and dropped abruptly, {s['concurrency']} at a time, in {s['wall_s']:.1f} s "
            f"({s['sessions_per_s']}/s); first message: {s['first_message']}; left open after: {s['left_open']}; "
            f"still answers: {s['still_answers']} (as before: {s['same_as_alone_after']}); "
            "RSS MB before / peak / after half of them / after: "
            + " / ".join(str(s["rss_mb"][k]) for k in ("before", "peak", "after_half", "after"))
        )
