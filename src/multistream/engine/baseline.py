"""The single-stream baseline: the same kind of base model used as a plain chat model.

It reads the whole prompt (chat template), then writes its reply token by token with
Hugging Face generation and a streamer. ``run`` waits for the input to arrive at the
given rate, like the engine does, and returns the same :class:`RunResult` timings, so
benchmarks compare like with like.
"""

from __future__ import annotations

import time

import torch

from ..text import chat_ids
from .runner import RunResult


class SingleStreamBaseline:
    def __init__(self, model, tokenizer, max_new_tokens: int = 128):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens

    def prompt_ids(self, messages: list[dict]) -> torch.Tensor:
        """The chat template's markup as control tokens, message contents as plain text (as in training)."""
        return torch.tensor([chat_ids(self.tokenizer, messages, add_generation_prompt=True)[0]])

    @torch.no_grad()
    def run(self, messages: list[dict], rate: float | None = None, max_new_tokens: int | None = None) -> RunResult:
        """Reply to ``messages``; with ``rate`` (tokens/s) the last user message arrives at that speed first."""
        ids = self.prompt_ids(messages).to(self.model.device)
        t0 = time.perf_counter()
        if rate:
            user_tokens = len(self.tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]) + 1
            time.sleep(max(0.0, user_tokens / rate - (time.perf_counter() - t0)))  # it cannot start before it has read
        input_done = time.perf_counter() - t0
        timer = _TokenTimer(t0)
        out = self.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), streamer=timer, do_sample=False,
            max_new_tokens=max_new_tokens or self.max_new_tokens, pad_token_id=self.tokenizer.eos_token_id,
        )
        e2e = time.perf_counter() - t0
        text = self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return RunResult({"answer": text.strip()}, 0, {}, [], timer.first, e2e, input_done, timer.count)


class _TokenTimer:
    """A generation streamer that notes when the first new token is ready (the first ``put`` is the prompt)."""

    def __init__(self, t0: float):
        self.t0, self.first, self.count, self._prompt_seen = t0, None, 0, False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.count += 1
        if self.first is None:
            self.first = time.perf_counter() - self.t0

    def end(self) -> None:
        pass
