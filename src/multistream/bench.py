"""``multistream bench``: speed measured side by side in one run, reported as ratios.

- ``step``: one row of C streams (C = 1, 2, 4, 8) through the engine against one decode
  step of the bare model with one new token, and the engine's step against the raw
  forward of the same row (the engine's own overhead); and the KV-cache tokens per token read
  in a listening session (a question, then a 1,000-token document) under each silence rule.
- ``latency``: the evaluation's latency benchmark (``multistream eval latency``: the
  same arrival clock, warm-up, alternating order) on the first ``--limit`` built-in
  accuracy cases, the input all at once and at ``--rate`` tokens/s.
- ``ingest``: a long document read step by step, in bulk and speculatively, against the
  bare model's prefill of the same tokens.
- ``serve``: the real server (a child process on a loopback port; ``--model tiny`` by
  default, a random model built in-process) under load: sessions one at a time, then N
  WebSocket sessions at once, then N HTTP completions at once: sessions/s, generated
  tokens/s, whether every session answered and answered as it does alone, and the server
  process's RSS before, at its peak and after; then a soak of sessions dropped abruptly.
- ``train``: the training step of several configurations (the silence rule, the base weights' dtype) on
  the same data, round by round: tokens/s and timelines/s (:mod:`multistream.train.throughput`).

Measurements alternate between the contenders, round by round, and report medians,
because the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from .defaults import ARRIVAL_RATE, EVAL_MAX_TOKENS
from .hardware import resolve_dtype

SYSTEM = "You are a helpful assistant. Answer briefly."
QUESTION = "What is the capital of France?"  # the listening session's question
DOC = ("The committee met on Tuesday to review the budget for the coming year. Most members agreed that "
       "spending on public transport should rise, while a few argued for lower taxes instead. ")


def _ms(seconds: list[float]) -> float:
    return round(1000 * statistics.median(seconds), 2)


def _sync() -> None:
    """Wait for queued GPU work, so that a timing holds what it launched (a no-op on the CPU)."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(fn) -> float:
    _sync()
    t = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t


def _load(args):
    from .zoo import load_model

    return load_model(args.model, dtype=resolve_dtype(args.dtype, args.device)).to(args.device)


# -- step ------------------------------------------------------------------------------------
@torch.no_grad()
def bench_step(model, streams=(1, 2, 4, 6, 8), rounds: int = 20, compiled: bool = True) -> dict:
    """Row cost with C streams after a shared context (the same prefix tokens for every contender), eager and compiled,
    against the bare model's one-token decode step (eager and compiled with a static cache), all in one run."""
    from transformers import DynamicCache

    from .engine.core import EngineConfig, EngineCore
    from .model import MultiStreamModel, unwrap_base
    from .streams import Layout

    base = unwrap_base(model.base)
    tok = model.tok
    prefix_text = DOC * 5
    ctx = torch.tensor([tok.encode_prefix(prefix_text)], device=model.device)
    p = ctx.shape[1]
    bare_cache = DynamicCache(config=base.config)
    base(input_ids=ctx, past_key_values=bare_cache, use_cache=True)
    one, one_pos = ctx[:, -1:], torch.tensor([[p]], device=ctx.device)

    def bare_step():
        base(input_ids=one, position_ids=one_pos, past_key_values=bare_cache, use_cache=True)
        bare_cache.crop(-1)

    contenders = {"bare_decode": bare_step}
    compile_s = {}
    if compiled:
        contenders["bare_compiled_decode"], compile_s["bare"] = _compiled_bare_step(base, ctx)
    filler = tok.encode_text(DOC * 10)
    rows = {}
    for c in streams:
        # one input stream (fed a document) and C-1 outputs; with C = 1 a lone output stream
        spec = ",".join(["user:input"] + [f"out{i}:output" for i in range(c - 1)]) if c > 1 else "answer:output"
        wrapped = MultiStreamModel.wrap(base, tok.hf, Layout.parse(spec), base_ref="bench").to(model.device).eval()
        # room for every row of the run from the start: a compiled forward's shape includes the cache's capacity
        capacity = 1 << (p + c * (rounds + 8)).bit_length()
        for kind in ("eager", "compiled") if compiled else ("eager",):
            config = EngineConfig(idle_rows=None, max_rows=8 * rounds + 64, capacity=capacity, compiled=kind == "compiled")
            core = EngineCore(wrapped, config)
            sid = core.open("bench", prefix=prefix_text, start=True)
            if c > 1:
                core.send_tokens(sid, "user", filler[: 8 * rounds + 48])
            core.step()  # the prefix and row 0
            t = time.perf_counter()
            core.step()  # (compiled: the first row compiles)
            if kind == "compiled":
                compile_s[str(c)] = round(time.perf_counter() - t, 1)
            rows[f"{kind}:{c}"] = core.step
    timings = {k: [] for k in [*contenders, *rows]}
    fns = {**contenders, **rows}
    for _ in range(3):  # warm-up
        for fn in fns.values():
            fn()
    for _ in range(rounds):  # interleaved, so that a noisy neighbour costs every contender alike
        for k, fn in fns.items():
            timings[k].append(_timed(fn))
    bare = statistics.median(timings["bare_decode"])
    result = {k: _ms(v) for k, v in timings.items() if k in contenders}
    per_streams = {}
    for c in streams:
        d = {}
        for kind in ("eager", "compiled") if compiled else ("eager",):
            t = statistics.median(timings[f"{kind}:{c}"])
            d[f"{kind}_row_ms"] = _ms(timings[f"{kind}:{c}"])
            d[f"{kind}_row_vs_decode"] = round(t / bare, 3)
        if compiled:
            d["compiled_row_vs_compiled_decode"] = round(
                statistics.median(timings[f"compiled:{c}"]) / statistics.median(timings["bare_compiled_decode"]), 3)
        per_streams[str(c)] = d
    return {
        "context_tokens": p,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else str(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
        **{f"{k}_ms": v for k, v in result.items()},
        "streams": per_streams,
        "compile_seconds": compile_s,
        "listening_kv_tokens_per_token_read": listening_cache(model),
        "detokenize_us_per_token": detokenize_cost(tok),
    }


def _compiled_bare_step(base, ctx: torch.Tensor):
    """The bare model's one-token decode step, compiled over transformers' static cache; returns (step, compile s)."""
    from transformers import StaticCache

    p = ctx.shape[1]
    cache = StaticCache(config=base.config, max_cache_len=p + 8)
    base(input_ids=ctx, cache_position=torch.arange(p, device=ctx.device), past_key_values=cache, use_cache=True)
    one, one_pos, at = ctx[:, -1:], torch.tensor([[p]], device=ctx.device), torch.tensor([p], device=ctx.device)

    def forward(ids, pos, cache_position):
        for layer in cache.layers:  # the cache counts what it holds: rewind it, so every step writes the same cell
            layer.cumulative_length.fill_(p)
        return base(input_ids=ids, position_ids=pos, cache_position=cache_position, past_key_values=cache,
                    use_cache=True).logits

    fn = torch.compile(forward, dynamic=False, options={"freezing": True})  # as the engine compiles its rows
    t = time.perf_counter()
    fn(one, one_pos, at)  # the context stays p tokens
    return (lambda: fn(one, one_pos, at)), round(time.perf_counter() - t, 1)


def detokenize_cost(tok, lengths=(100, 4000), window: int = 100) -> dict:
    """Microseconds a message's token costs to turn into text once the message is ``lengths`` tokens long:
    incremental (:class:`MessageText`, what the engine does) against re-decoding the whole message per token."""
    from .text import MessageText

    doc = tok.encode_text(DOC)
    ids = (doc * (max(lengths) // len(doc) + 1))[: max(lengths)]
    out = {}
    for n in lengths:
        msg = MessageText()
        for i in ids[: n - window]:
            msg.push(i, tok)
        incremental = _timed(lambda: [msg.push(i, tok) for i in ids[n - window : n]])
        whole = _timed(lambda: [tok.decode(ids[:k]) for k in range(n - window + 1, n + 1)])
        out[str(n)] = {"incremental": round(1e6 * incremental / window, 1), "whole_message": round(1e6 * whole / window, 1)}
    return out


@torch.no_grad()
def listening_cache(model, doc_tokens: int = 1000) -> dict:
    """KV-cache tokens per input token read in a listening session, under each silence rule.

    A question on ``user``, then a ``doc_tokens`` document on ``tool``, read by the engine
    with every output stream held silent; the prefix is not counted. Under the visible
    rule every row stores all its streams (and the row read past each message's end is
    stored too); under the invisible rule only what was said.
    """
    from .engine.core import EngineConfig, EngineCore
    from .rows import SILENCE_RULES

    tok = model.tok
    doc = tok.encode_text(DOC * (doc_tokens // 30 + 2))[: doc_tokens - 1] + [tok.end_id]
    question_stream, doc_stream = model.layout.role("user"), model.layout.role("tool")
    trained_rule, out = model.silence, {}
    try:
        for rule in SILENCE_RULES:  # the same weights, run under each rule
            model.silence = rule
            core = EngineCore(model, EngineConfig(idle_rows=None, bulk_chunk=128))
            sid = core.open("listen", prefix=SYSTEM)
            for s in model.layout.outputs:
                core.mute(sid, s.name)
            read = 0
            for stream, ids in ((question_stream, tok.encode_message(QUESTION)), (doc_stream, doc)):
                read += len(ids)
                core.send_tokens(sid, stream, ids, bulk=True)
                core.step()
                while core.sessions[sid].pending_input:
                    core.step()
            sess = core.sessions[sid]
            out[rule] = round((int(core.cache.lengths[sess.slot]) - len(sess.prefix)) / read, 3)
    finally:
        model.silence = trained_rule
    out["rows"], out["read"] = sess.row, read
    return out


# -- latency ---------------------------------------------------------------------------------
def bench_latency(model, single, rate: float = ARRIVAL_RATE, limit: int = 12, max_tokens: int = EVAL_MAX_TOKENS,
                  tools=None) -> dict:
    """The evaluation's latency benchmark (:mod:`multistream.evals.latency`: the same arrival clock for both, a
    warm-up, alternating order, TTFT of the answer, e2e of the final answer) on the first ``limit`` built-in
    accuracy cases (``tools`` serving both, as in the report), so the bench and the report measure one way."""
    from .evals.cases import load_cases
    from .evals.common import Contenders
    from .evals.latency import eval_latency

    cases, _ = load_cases(None, "prompts", limit)
    r = eval_latency(Contenders(model, single, max_tokens=max_tokens), cases, rate, show_progress=False, tools=tools)
    r["modes"] = {m: {k: v for k, v in d.items() if k != "cases"} for m, d in r["modes"].items()}
    return r


# -- ingest ----------------------------------------------------------------------------------
@torch.no_grad()
def bench_ingest(model, doc_tokens: int = 1000, step_rows: int = 48, chunk: int = 128) -> dict:
    from .engine.core import EngineConfig, EngineCore
    from .model import unwrap_base

    tok = model.tok
    doc = tok.encode_text(DOC * (doc_tokens // 30 + 2))[: doc_tokens - 1]
    base = unwrap_base(model.base)

    ids = torch.tensor([doc + [tok.end_id]])
    prefills = [_timed(lambda: base(input_ids=ids))]

    def read(config: EngineConfig, bulk: bool, limit: int | None = None) -> tuple[float, int, int]:
        core = EngineCore(model, config)
        sid = core.open("doc", prefix=SYSTEM)
        core.send(sid, model.layout.role("user"), "Read this document.")
        core.step()
        core.send_tokens(sid, model.layout.role("tool"), doc + [tok.end_id], bulk=bulk)
        doc_input = core.sessions[sid].inputs[model.layout.index(model.layout.role("tool"))]
        t = time.perf_counter()
        start_row = core.sessions[sid].row
        steps = 0
        while True:  # the document is queued by the first step
            core.step()
            steps += 1
            if not doc_input.queue:
                break
            if limit and core.sessions[sid].row - start_row >= limit:
                break
        return time.perf_counter() - t, core.sessions[sid].row - start_row, steps

    step_t, step_rows_done, _ = read(EngineConfig(idle_rows=None), bulk=False, limit=step_rows)
    prefills.append(_timed(lambda: base(input_ids=ids)))
    bulk_t, bulk_rows, bulk_steps = read(EngineConfig(idle_rows=None, bulk_chunk=chunk), bulk=True)
    prefills.append(_timed(lambda: base(input_ids=ids)))
    spec_t, spec_rows, spec_steps = read(EngineConfig(idle_rows=None, speculative=chunk), bulk=False)
    n = len(doc) + 1
    c = len(model.layout)
    # tokens one document row costs: under the invisible rule input silences are not fed, and bulk reading
    # needs no output queries but the last row's; speculative reading needs every row's output queries
    bulk_cost = 1 if model.silence == "invisible" else c
    spec_cost = 1 + len(model.layout.outputs) if model.silence == "invisible" else c
    rate = lambda rows, t: rows / t  # noqa: E731  document tokens (one per row) per second
    prefill_rate = n / statistics.median(prefills)
    return {
        "doc_tokens": n,
        "streams": c,
        "note": f"silence {model.silence}: a document row costs {bulk_cost} token(s) in bulk reading, {spec_cost} "
        f"speculatively; reading can reach at most 1/{bulk_cost} and 1/{spec_cost} of prefill speed",
        "prefill_tok_s": round(prefill_rate, 1),
        "step_tok_s": round(rate(step_rows_done, step_t), 1),
        "step_measured_rows": step_rows_done,
        "bulk_tok_s": round(rate(bulk_rows, bulk_t), 1),
        "bulk_forwards": bulk_steps,
        "speculative_tok_s": round(rate(spec_rows, spec_t), 1),
        "speculative_forwards": spec_steps,
        "step_vs_prefill": round(rate(step_rows_done, step_t) / prefill_rate, 3),
        "bulk_vs_prefill": round(rate(bulk_rows, bulk_t) / prefill_rate, 3),
        "speculative_vs_prefill": round(rate(spec_rows, spec_t) / prefill_rate, 3),
        "bulk_vs_bound": round(bulk_cost * rate(bulk_rows, bulk_t) / prefill_rate, 3),
        "speculative_vs_bound": round(spec_cost * rate(spec_rows, spec_t) / prefill_rate, 3),
    }


# -- serve ---------------------------------------------------------------------------------
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

    from .engine.aio import AsyncEngine
    from .engine.core import EngineConfig, EngineCore
    from .engine.tools import demo_tools
    from .server import ServerLimits, create_app
    from .server.app import warm_up
    from .server.run import Server
    from .zoo import load_model

    model, dtype, max_sessions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    logging.basicConfig(level=logging.WARNING)
    core = EngineCore(load_model(model, dtype=resolve_dtype(dtype)), EngineConfig(max_sessions=max_sessions))
    warm_up(core)
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
) -> dict:
    """The server under load, every figure from this one run (see the module docstring).

    Each output stream may write ``max_tokens`` tokens (greedy); a session ends when its
    answer message does. ``same_as_alone``: sessions whose answer equals, token for token,
    what the same question got when it was the only session (no cross-talk).
    """
    import asyncio
    import select
    import subprocess
    import sys

    if sessions < 1 or soak < 0 or soak_concurrency < 1 or max_tokens < 1:
        raise ValueError("sessions >= 1, soak >= 0, soak_concurrency >= 1 and max_tokens >= 1 are required")
    max_sessions = 2 * max(sessions, soak_concurrency) + 8  # room for dropped sessions not yet noticed
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from multistream.bench import _serve_child; _serve_child()", model, dtype, str(max_sessions)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline() if select.select([proc.stdout], [], [], 300)[0] else ""
        if not line.startswith("port "):
            raise RuntimeError(f"the server process did not start (exit code {proc.poll()})")
        port = int(line.split()[1])
        with _RssWatch(proc.pid) as rss:
            result = asyncio.run(_serve_load(_Clients(port, max_tokens, timeout), rss, sessions, soak, soak_concurrency))
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
        "max_tokens": max_tokens,
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "startup_s": round(result.pop("startup_s") - t0, 2),
        **result,
    }


async def _serve_load(clients: _Clients, rss: _RssWatch, n: int, soak: int, soak_concurrency: int) -> dict:
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

    modes = {"ws_1": await phase("ws_1", one_at_a_time)}
    alone = ["".join(r["answer"]) for r in modes["ws_1"].pop("_results")]
    for name, run in ((f"ws_{n}", ws_all), (f"http_{n}", http_all)):
        modes[name] = await phase(name, run)
        got = ["".join(r["answer"]) if isinstance(r["answer"], list) else r["answer"] for r in modes[name].pop("_results")]
        modes[name]["same_as_alone"] = sum(a == b and bool(a) for a, b in zip(got, alone))
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


def _print_serve(r: dict) -> None:
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


def _print_step(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"a row of C streams after {r['context_tokens']} tokens of context, {r['dtype']}, {r['device']}, "
                        f"{r['threads']} threads, median of {r['rounds']} rounds")
    for col in ("step", "eager ms", "vs eager decode", "compiled ms", "vs eager decode", "vs compiled decode",
                "compile s"):
        table.add_column(col, justify="left" if col == "step" else "right")
    compiled = r.get("bare_compiled_decode_ms")
    compile_s = r.get("compile_seconds", {})
    table.add_row("bare model, one token", f"{r['bare_decode_ms']:.1f}", "1.0x",
                  f"{compiled:.1f}" if compiled else "-", f"{compiled / r['bare_decode_ms']:.3f}x" if compiled else "-",
                  "1.0x" if compiled else "-", str(compile_s.get("bare", "-")))
    for c, v in r["streams"].items():
        table.add_row(f"engine row, {c} stream{'s' if c != '1' else ''}", f"{v['eager_row_ms']:.1f}",
                      f"{v['eager_row_vs_decode']}x", f"{v['compiled_row_ms']:.1f}" if "compiled_row_ms" in v else "-",
                      f"{v['compiled_row_vs_decode']}x" if "compiled_row_vs_decode" in v else "-",
                      f"{v['compiled_row_vs_compiled_decode']}x" if "compiled_row_vs_compiled_decode" in v else "-",
                      str(compile_s.get(c, "-")))
    console.print(table)
    kv = r.get("listening_kv_tokens_per_token_read")
    if kv:
        console.print(f"KV cache entries per document token read: {kv['invisible']} with invisible silence, "
                      f"{kv['visible']} if silences were kept ({kv['read']} tokens over {kv['rows']} rows)")
    for n, d in r.get("detokenize_us_per_token", {}).items():
        console.print(f"text of a {n}-token message, per token: {d['incremental']} us incremental, "
                      f"{d['whole_message']} us re-decoding the message")


def _print_train(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"training step, recipe {r['recipe']}: {r['batch_size']} x {r['seq_len']} tokens, "
                        f"{r['mixed_precision']}, {r['threads']} threads, {r['device']}")
    for col in ("variant", "changes", "steps", "s/step", "tokens/s", "timelines/s", "tokens/timeline",
                f"tokens/s vs {r['reference']}", f"timelines/s vs {r['reference']}"):
        table.add_column(col)
    for name, v in r["variants"].items():
        table.add_row(name, ", ".join(f"{k}={x}" for k, x in v["changes"].items()) or "(the recipe)", str(v["steps"]),
                      f"{v['s_per_step_median']:.2f}", f"{v['tokens_per_s']:.0f}", f"{v['timelines_per_s']:.2f}",
                      f"{v['tokens_per_timeline']:.0f}", f"{v['tokens_per_s_ratio']}x", f"{v['timelines_per_s_ratio']}x")
    Console().print(table)


# -- CLI -------------------------------------------------------------------------------------
def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.pretty import Pretty

    Console().print(Pretty({k: v for k, v in result.items() if k != "modes"} | (
        {"modes": {m: {k: v for k, v in d.items() if k != "cases"} for m, d in result["modes"].items()}}
        if "modes" in result else {})))


def cmd_bench(args) -> int:
    if args.what == "serve":
        result = bench_serve(args.model or "tiny", sessions=args.sessions, soak=args.soak, max_tokens=args.max_tokens,
                             soak_concurrency=args.soak_concurrency, dtype=args.dtype)
        if args.json:
            print(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            _print_serve(result)
        return 0 if all(m["answered"] == m["sessions"] for m in result["modes"].values()) else 1
    if args.what == "train":
        from .train.throughput import bench_train

        result = bench_train(args.variants, steps=args.train_steps, per_skill=args.per_skill, cpu=args.device == "cpu",
                             progress=not args.json)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            _print_train(result)
        return 0
    args.model = args.model or "default"
    model = _load(args)
    if args.what == "step":
        result = bench_step(model, streams=args.streams, rounds=args.rounds, compiled=not args.eager_only)
    elif args.what == "latency":
        from .engine.tools import demo_tools
        from .zoo import load_single

        twin, twin_tok = load_single(args.single, dtype=resolve_dtype(args.dtype, args.device))
        result = bench_latency(model, (twin.to(args.device), twin_tok), rate=args.rate, limit=args.limit, tools=demo_tools())
    else:
        result = bench_ingest(model, doc_tokens=args.doc_tokens)
    result["model"] = args.model
    if args.what == "step" and not args.json:
        _print_step(result)
    else:
        _print(result, args.json)
    return 0


def _stream_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(c) for c in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected stream counts like 1,2,6, got {text!r}")
    return counts


def _variant_list(text: str) -> list[str]:
    from .train.throughput import VARIANTS

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {', '.join(unknown) or repr(text)}; "
                                         f"the variants are {', '.join(VARIANTS)}")
    return names


def register(sub) -> None:
    from .engine.cli import add_dtype_arg

    b = sub.add_parser("bench", help="speed benchmarks: step, latency, ingest, serve, train (ratios from one run)")
    b.add_argument("what", choices=["step", "latency", "ingest", "serve", "train"])
    b.add_argument("--model", help="the model (default: 'default'; for 'serve': 'tiny', a random model built in-process)")
    b.add_argument("--single", default="default-single", help="single-stream baseline for 'latency'")
    add_dtype_arg(b)
    b.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, cuda:1 ...")
    b.add_argument("--streams", type=_stream_counts, default=(1, 2, 4, 6, 8),
                   help="'step': the row widths to time, comma-separated (default 1,2,4,6,8)")
    b.add_argument("--rounds", type=int, default=20)
    b.add_argument("--rate", type=float, default=ARRIVAL_RATE, help="input arrival rate in tokens/s for 'latency'")
    b.add_argument("--limit", type=int, default=12, help="'latency': the first N built-in accuracy cases")
    b.add_argument("--doc-tokens", type=int, default=1000)
    b.add_argument("--sessions", type=int, default=100, help="'serve': sessions at once (WebSocket, then HTTP)")
    b.add_argument("--soak", type=int, default=2000, help="'serve': sessions opened and dropped abruptly (0: no soak)")
    b.add_argument("--soak-concurrency", type=int, default=32, help="'serve': soak sessions in flight at once")
    b.add_argument("--max-tokens", type=int, default=16, help="'serve': tokens each output stream may write")
    b.add_argument("--variants", type=_variant_list, default=None,
                   help="'train': training configurations to compare, comma-separated, the first the reference "
                        "(default: visible,invisible,invisible-bf16-base)")
    b.add_argument("--train-steps", type=int, default=4, help="'train': timed optimizer steps per variant (after one untimed)")
    b.add_argument("--per-skill", type=int, default=40, help="'train': synthetic timelines per skill to train on")
    b.add_argument("--eager-only", action="store_true", help="'step': skip the compiled columns (each compiles a minute)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
