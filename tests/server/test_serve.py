"""``multistream serve`` as a separate process: start, answer over the WebSocket, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from .conftest import WsClient, free_socket

ROOT = Path(__file__).resolve().parents[2]


class ServeProcess:
    def __init__(self, *args: str, ready_timeout: float = 300):
        sock = free_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        cmd = [sys.executable, "-m", "multistream.cli", "serve", "--port", str(self.port), *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._q: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_for("Uvicorn running on", ready_timeout)

    def _pump(self):
        for line in self.proc.stdout:
            self._q.put(line)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        for _ in range(100_000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self._q.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.lines.append(line)
            if text in line:
                return line
        self.stop()
        raise AssertionError(f"{text!r} not seen; output:\n" + "".join(self.lines[-40:]))

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/sessions"

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


@pytest.fixture
def tiny_folder(tmp_path, wrap):
    model = wrap("llama")
    return str(model.save(tmp_path / "tiny", save_base=True))


@pytest.mark.slow  # a `multistream serve` process per signal
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_and_open_sessions_get_closed(tiny_folder, sig):
    server = ServeProcess("--model", tiny_folder, "--name", "tiny", ready_timeout=120)
    code = None
    try:
        assert any("loaded and warmed up" in line for line in server.lines)
        c = WsClient(server.ws)
        opened = c.open()
        assert opened["model"] == "tiny"
        c.send(type="input", text="hello world")
        c.until(lambda m: m["type"] == "message_end" and m["stream"] == "user")
        server.proc.send_signal(sig)
        closed = c.until(lambda m: m["type"] == "closed", timeout=30)
        assert closed["reason"] == "shutdown"
        with pytest.raises(ConnectionClosed) as info:
            c.recv(timeout=30)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        code = server.proc.wait(timeout=60)
    finally:
        code = server.stop() if code is None else code
    assert code == 0
    for _ in range(100):  # collect what is left of the output
        try:
            server.lines.append(server._q.get(timeout=0.2))
        except queue.Empty:
            break
    log = "".join(server.lines)
    assert f"session {opened['session']} (ws, 127.0.0.1:" in log and "shutdown" in log


@pytest.mark.slow
def test_serve_default_model_answers_a_websocket_question():
    server = ServeProcess("--model", "default", "--max-rows", "512")
    try:
        c = WsClient(server.ws)
        c.open(prefix="You are a helpful assistant.")
        t0 = time.perf_counter()
        c.send(type="input", text="What is the capital of France?")
        read = c.until(lambda m: m["type"] == "message_end" and m["stream"] == "user", timeout=240)
        # the reply: what the model samples on the answer stream after it has read the question
        first = c.until(
            lambda m: m["type"] == "token" and m["stream"] == "answer" and not m["forced"] and m["row"] > read["row"], timeout=240
        )
        ttft = time.perf_counter() - t0
        end = c.until(lambda m: m["type"] == "closed" or (m["type"] == "message_end" and m["stream"] == "answer"), timeout=300)
        reply = "".join(
            m["text"] for m in c.seen if m["type"] == "token" and m["stream"] == "answer" and m["row"] >= first["row"]
        )
        print(
            f"default model over the WebSocket: question read by row {read['row']}, first answer token at row "
            f"{first['row']} after {ttft:.2f} s; reply {reply!r}"
        )
        assert end["type"] == "message_end" and end["text"] and reply.startswith(first["text"])
        assert read["text"] == "What is the capital of France?"
        c.send(type="close")
        c.until(lambda m: m["type"] == "closed", timeout=60)
    finally:
        assert server.stop() == 0
