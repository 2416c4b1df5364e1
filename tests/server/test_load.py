"""Load: 100 WebSocket sessions and 100 HTTP completions at once, then a soak of sessions dropped abruptly.

Every session must answer, with no cross-talk (each gets the tokens it gets alone), and the
engine's memory (its KV cache) must return to where it started once they have gone.
"""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from websockets.asyncio.client import connect

from multistream.server import ServerLimits

from .test_ws import health, wait_sessions

pytestmark = pytest.mark.slow  # load tests: many sessions at once, a soak

N = 100


async def ws_session(url: str, question: str) -> list[str]:
    """Open, ask, collect the answer's tokens until its message ends, close."""
    async with connect(url, open_timeout=60, max_size=None) as ws:
        await ws.send(json.dumps({"type": "open"}))
        await ws.send(json.dumps({"type": "input", "text": question}))
        tokens = []
        async for raw in ws:
            m = json.loads(raw)
            assert m["type"] != "error", m
            if m["type"] == "token" and m["stream"] == "answer":
                tokens.append(m["text"])
            if m["type"] == "message_end" and m["stream"] == "answer":
                break
        await ws.send(json.dumps({"type": "close"}))
        return tokens


async def http_completion(base: str, question: str) -> str:
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=120)
    r = await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": question}])
    await client.close()
    return r.choices[0].message.content


async def drop_abruptly(url: str, k: int) -> None:
    ws = await connect(url, open_timeout=60)
    await ws.send(json.dumps({"type": "open"}))
    await ws.send(json.dumps({"type": "input", "text": f"dropped {k}"}))
    await ws.recv()
    ws.transport.abort()  # no close frame, no goodbye: the TCP connection just ends


def test_many_concurrent_sessions_answer_without_cross_talk_and_memory_returns(live):
    server = live(limits=ServerLimits(max_sessions=2 * N + 8), max_sessions=2 * N + 8)
    cache = server.app.state.hub.engine.core.cache
    questions = [f"question number {k} about {'xyz'[k % 3] * (1 + k % 4)}" for k in range(N)]
    alone = {q: asyncio.run(ws_session(server.ws, q)) for q in questions[:5]}  # one at a time
    before = cache.nbytes
    peak = {"sessions": 0, "bytes": 0}

    async def watch(stop: asyncio.Event):
        while not stop.is_set():
            peak["sessions"] = max(peak["sessions"], len(server.app.state.hub.sessions))
            peak["bytes"] = max(peak["bytes"], cache.nbytes)
            await asyncio.sleep(0.005)

    async def everyone():
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        ws = [ws_session(server.ws, q) for q in questions]
        http = [http_completion(server.http, q) for q in questions]
        results = await asyncio.gather(*ws, *http)
        stop.set()
        await watcher
        return results[:N], results[N:]

    ws_answers, http_answers = asyncio.run(everyone())
    for q, tokens in zip(questions, ws_answers):
        assert "".join(tokens) == q  # its own question, nobody else's
    for q in alone:
        assert ws_answers[questions.index(q)] == alone[q]  # token for token as alone
    assert http_answers == questions
    wait_sessions(server, 0)
    assert peak["sessions"] > N  # they really were open at once
    assert peak["bytes"] > 4 * before and cache.nbytes == before  # memory went up with them, and came back
    print(f"\nload: {2 * N} sessions, at most {peak['sessions']} open at once; KV cache bytes before "
          f"{before}, peak {peak['bytes']}, after {cache.nbytes}")


def test_a_soak_of_sessions_dropped_abruptly_leaves_nothing_behind(live):
    server = live(limits=ServerLimits(max_sessions=64), max_sessions=64)
    cache = server.app.state.hub.engine.core.cache
    before = cache.nbytes
    total = 1000

    async def soak():
        sem = asyncio.Semaphore(32)

        async def one(k):
            async with sem:
                await drop_abruptly(server.ws, k)

        await asyncio.gather(*(one(k) for k in range(total)))

    asyncio.run(soak())
    wait_sessions(server, 0, tries=600)
    assert cache.nbytes == before and cache.in_use == 0
    assert health(server)["status"] == "ok"
    assert asyncio.run(ws_session(server.ws, "still answering")) != []
    print(f"\nsoak: {total} sessions opened and dropped; KV cache bytes before {before}, after {cache.nbytes}")
