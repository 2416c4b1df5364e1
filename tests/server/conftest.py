"""A live server on a free loopback port around a mock model whose answer depends on the question."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from types import SimpleNamespace

import pytest
import torch
from conftest import make_tokenizer
from torch import nn

from multistream.engine.aio import AsyncEngine
from multistream.engine.core import EngineConfig, EngineCore
from multistream.engine.tools import demo_tools
from multistream.rows import RowFormat
from multistream.server import ServerLimits, create_app
from multistream.server.run import Server
from multistream.streams import DEFAULT_LAYOUT
from multistream.text import StreamTokenizer
from multistream.toolcall import format_call


class EchoModel(nn.Module):
    """After each user message, the ``answer`` stream says that message back, then ends it.

    ``repeats=0`` says it back forever (until interrupted or aborted); ``think`` writes
    ``len=N`` on the think stream first. A message containing ``+`` is also sent to the
    calculator on the ``call`` stream instead of being said back; with ``results``, a
    tool result read after the user's message is then said back on the answer stream; with ``ack``, a sum first gets
    "One moment." on the answer stream and its call only after that message ended. The model keeps no state of its own: it reads the
    tokens (ids, streams, positions) back from the engine's KV cache, so what it says
    comes only from what its session's cache holds.
    """

    def __init__(self, repeats: int = 1, delay: float = 0.0, think: bool = False, layout=DEFAULT_LAYOUT,
                 results: bool = False, ack: bool = False):
        super().__init__()
        self.layout = layout  # (the streams are found by their roles: any names will do)
        self.role_of = {name: role for role, name in layout.roles.items()}
        self.tok = StreamTokenizer.wrap(make_tokenizer())
        self.vocab = len(self.tok)
        self.repeats, self.delay, self.think, self.results = repeats, delay, think, results
        self.ack = self.tok.encode_message("One moment.") if ack else []
        cfg = SimpleNamespace(num_hidden_layers=1, num_key_value_heads=1, head_dim=3, hidden_size=3, num_attention_heads=1)
        emb = nn.Embedding(self.vocab, 3)
        self.base = SimpleNamespace(config=cfg, get_input_embeddings=lambda: emb)
        self.idx = {s.name: i for i, s in enumerate(self.layout)}
        self.row_format = RowFormat(tuple(self.layout.output_mask), self.tok.silence_id, "invisible")

    @property
    def device(self):
        return torch.device("cpu")

    def _target(self, stream: str, message: list[int], n: int, rows_after: int) -> int | None:
        tok = self.tok
        if stream == "result":  # (``results``) a tool result, said back once
            seq = message + [tok.end_id]
            return seq[n] if n < len(seq) else None
        if stream == "answer" and "+" in tok.decode(message):  # a sum goes to the calculator instead
            return self.ack[n] if n < len(self.ack) else None
        if stream == "answer":
            if self.repeats == 0:
                return message[n % len(message)]
            seq = message * self.repeats + [tok.end_id]
        elif stream == "think" and self.think:
            seq = tok.encode_message(f"len={len(message)}")
        elif stream == "call" and "+" in tok.decode(message):
            if rows_after <= len(self.ack) + 1:  # (after the acknowledgement's last token and its end)
                return None
            expression = tok.decode(message).replace('"', "")
            seq = tok.encode_message(format_call("calculator", {"expression": expression}))
        else:
            return None
        return seq[n] if n < len(seq) else None

    def forward(self, ids, streams, pos, attention_mask, past_key_values, use_cache, logits_to_keep):
        if self.delay:
            time.sleep(self.delay)
        kv = torch.stack([ids, streams, pos], -1).float()[:, None]
        keys, _ = past_key_values.update(kv, kv, 0)
        k_id, k_stream, k_pos = (keys[:, 0, :, i].long() for i in range(3))
        b, n = ids.shape
        logits = torch.zeros(b, n, self.vocab)
        logits[..., self.tok.silence_id] = 20.0  # sure: silence outweighs all speech together
        silence, end, user = self.tok.silence_id, self.tok.end_id, self.idx[self.layout.role("user")]
        for j, q in logits_to_keep.nonzero().tolist():
            stream = self.role_of.get(self.layout.streams[int(streams[j, q])].name)
            seen = attention_mask[j, 0, q]
            sid, sst, spos = k_id[j][seen], k_stream[j][seen], k_pos[j][seen]
            user_ids, user_pos = sid[sst == user], spos[sst == user]
            ends = (user_ids == end).nonzero().flatten().tolist()
            if not ends:
                continue
            start = ends[-2] + 1 if len(ends) > 1 else 0
            message = [t for t in user_ids[start : ends[-1]].tolist() if t != silence]
            if not message:
                continue
            end_row = int(user_pos[ends[-1]])
            if self.results and stream == "answer":  # a tool result read since: say it back
                tool = self.idx[self.layout.role("tool")]
                tool_ids, tool_pos = sid[sst == tool], spos[sst == tool]
                tool_ends = [i for i in (tool_ids == end).nonzero().flatten().tolist() if int(tool_pos[i]) > end_row]
                if tool_ends:
                    first = max([i + 1 for i in (tool_ids == end).nonzero().flatten().tolist() if i < tool_ends[-1]], default=0)
                    message = [t for t in tool_ids[first : tool_ends[-1]].tolist() if t != silence] or message
                    end_row = int(tool_pos[tool_ends[-1]])
                    stream = "result"
            mine = (sst == int(streams[j, q])) & (spos > end_row + 1) & (sid != silence)
            target = self._target(stream, message, int(mine.sum()), int(pos[j, q]) - end_row - 1)
            if target is not None:
                logits[j, q, target] = 40.0
        return SimpleNamespace(logits=logits[logits_to_keep])


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class LiveServer:
    """The real app under uvicorn in a background thread, on a free loopback port.

    ``sndbuf``: the kernel send buffer of accepted sockets (they inherit it from the
    listening one), small to make a client that stops reading felt soon.
    """

    def __init__(self, app, sndbuf: int | None = None):
        self.app = app
        self.sock = free_socket()
        if sndbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.port = self.sock.getsockname()[1]
        self.server = Server(app, "127.0.0.1", self.port, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/sessions"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("the server did not start in 10 s")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


def echo_app(
    repeats: int = 1,
    delay: float = 0.0,
    think: bool = False,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    idle_rows: int | None = 8,
    max_sessions: int = 32,
    max_rows: int = 4096,
    layout=DEFAULT_LAYOUT,
    results: bool = False,
    ack: bool = False,
):
    model = EchoModel(repeats, delay, think, layout, results, ack)
    core = EngineCore(model, EngineConfig(max_sessions=max_sessions, idle_rows=idle_rows, max_rows=max_rows))
    return create_app(AsyncEngine(core, demo_tools()), api_key=api_key, limits=limits, model_name="echo")


@pytest.fixture
def live():
    """``live(**echo_app kwargs)`` -> a started :class:`LiveServer`, stopped after the test."""
    servers = []

    def start(sndbuf: int | None = None, **kw) -> LiveServer:
        s = LiveServer(echo_app(**kw), sndbuf=sndbuf).__enter__()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.__exit__()


class WsClient:
    """A small synchronous WebSocket client: JSON in, JSON out, every wait bounded."""

    def __init__(self, url: str, **kw):
        from websockets.sync.client import connect

        self.conn = connect(url, open_timeout=10, max_size=None, **kw).__enter__()
        self.seen: list[dict] = []

    def send(self, **msg) -> None:
        self.conn.send(json.dumps(msg))

    def send_raw(self, data) -> None:
        self.conn.send(data)

    def recv(self, timeout: float = 10.0) -> dict:
        msg = json.loads(self.conn.recv(timeout=timeout))
        self.seen.append(msg)
        return msg

    def until(self, pred, timeout: float = 20.0, limit: int = 100_000) -> dict:
        """Receive until ``pred(msg)``; returns that message (all are kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        for _ in range(limit):
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if pred(msg):
                return msg
        raise AssertionError(f"no matching message in {limit} messages")

    def open(self, **kw) -> dict:
        self.send(type="open", **kw)
        return self.until(lambda m: m["type"] in ("opened", "error"))

    def text(self, stream: str, after: int = 0) -> str:
        return "".join(m["text"] for m in self.seen[after:] if m["type"] == "token" and m.get("stream") == stream)

    def close(self) -> None:
        self.conn.close()


class RawWs:
    """A bare WebSocket client on a plain socket: it reads only when told to (no background reader)."""

    def __init__(self, port: int, rcvbuf: int = 4096):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n") and len(head) < 10_000:
            head += self._exact(1)
        assert b" 101 " in head.split(b"\r\n")[0], head

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    def send(self, **msg) -> None:
        data, mask = json.dumps(msg).encode(), os.urandom(4)
        n = len(data)
        size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        self.sock.sendall(bytes([0x81]) + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server (never masked, never fragmented here)."""
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self._exact(2), "big")
        elif n == 127:
            n = int.from_bytes(self._exact(8), "big")
        return b0 & 0x0F, self._exact(n)

    def messages(self, limit: int = 1_000_000):
        """Text messages as dicts until the server's close frame."""
        for _ in range(limit):
            op, payload = self.recv()
            if op == 0x8:
                return
            if op == 0x1:
                yield json.loads(payload)
