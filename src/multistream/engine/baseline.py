"""The single-stream baseline: the same kind of base model used as a plain chat model.

It reads the whole prompt (chat template), then writes its reply token by token with
Hugging Face generation and a streamer. ``run`` waits for the input to arrive, on the
engine's clock (:func:`last_token_at`), and returns the same :class:`RunResult` timings,
so benchmarks compare like with like.
"""

from __future__ import annotations

import time

import torch

from ..text import chat_ids
from .runner import RunResult


def last_token_at(n_tokens: int, rate: float | None) -> float:
    """When the last of ``n_tokens`` input tokens is available, arriving at ``rate`` tokens/s from time 0
    (token ``i`` at ``i / rate``, as the engine's runner feeds them)."""
    return 0.0 if not rate or n_tokens <= 1 else (n_tokens - 1) / rate


class SingleStreamBaseline:
    def __init__(self, model, tokenizer, max_new_tokens: int = 128):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens

    def prompt_ids(self, messages: list[dict]) -> torch.Tensor:
        """The chat template's markup as control tokens, message contents as plain text (as in training)."""
        return torch.tensor([chat_ids(self.tokenizer, messages, add_generation_prompt=True)[0]])

    @torch.no_grad()
    def run(self, messages: list[dict], rate: float | None = None, max_new_tokens: int | None = None,
            arrive_at: float | None = None) -> RunResult:
        """Reply to ``messages`` (at most ``max_new_tokens``, default the baseline's ``max_new_tokens``).

        ``arrive_at``: the prompt is complete this many seconds after the start, and the reply cannot start before;
        ``rate`` (tokens/s, when ``arrive_at`` is not given): the last message arrives at that speed from the start.
        ``ttft`` is :meth:`first_token`'s time, ``e2e`` the reply complete, ``steps`` the tokens written."""
        ids = self.prompt_ids(messages).to(self.model.device)
        if arrive_at is None and rate:
            n = len(self.tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]) + 1
            arrive_at = last_token_at(n, rate)
        t0 = time.perf_counter()
        if arrive_at:
            time.sleep(max(0.0, arrive_at - (time.perf_counter() - t0)))  # it cannot start before it has read
        input_done = time.perf_counter() - t0
        timer = _Timer(t0)
        out = self.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), streamer=timer, do_sample=False,
            max_new_tokens=max_new_tokens or self.max_new_tokens, pad_token_id=self.tokenizer.eos_token_id,
        )
        e2e = time.perf_counter() - t0
        new = out[0, ids.shape[1]:].tolist()
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return RunResult({"answer": text.strip()}, 0, {}, [], self.first_token(new, timer.times), e2e, input_done,
                         len(timer.times))

    def first_token(self, ids: list[int], times: list[float]) -> float | None:
        """The time to the first token that counts for ``ttft``, given the reply's ``ids`` and each one's time: here
        the first token's."""
        return times[0] if times else None


class _Timer:
    """A generation streamer noting when each new token is ready (the first ``put`` is the prompt)."""

    def __init__(self, t0: float):
        self.t0, self.times, self._prompt_seen = t0, [], False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.times.extend([time.perf_counter() - self.t0] * max(1, value.numel()))

    def end(self) -> None:
        pass
