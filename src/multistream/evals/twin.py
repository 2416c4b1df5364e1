"""The single-stream twin as the evaluations run it: the engine's baseline, timed like the engine.

:class:`Twin` is :class:`multistream.engine.baseline.SingleStreamBaseline` with two
differences that make its timings comparable with the multi-stream model's:

- ``arrive_at``: the prompt is complete this many seconds after the start (the caller
  gives both contenders the same instant; see :func:`last_token_at`), and the twin cannot
  start before it. ``rate`` (the engine baseline's own clock) is still accepted.
- ``ttft`` is the time of the first token of the *answer*: the first token after which the
  reply has text outside its inline ``<think>``/``<call>`` parts (:func:`.scoring.split_reply`);
  ``e2e`` is the reply complete. ``steps`` is the number of tokens it wrote.
"""

from __future__ import annotations

import re
import time

import torch

from ..engine.baseline import SingleStreamBaseline
from ..engine.runner import RunResult
from .scoring import split_reply

_OPENING_TAG = re.compile(r"<[/a-z]*$")  # a tag still being written ("<thi") is not answer text


def last_token_at(n_tokens: int, rate: float | None) -> float:
    """When the last of ``n_tokens`` input tokens is available, arriving at ``rate`` tokens/s from time 0
    (token ``i`` at ``i / rate``; the engine's runner feeds them so)."""
    return 0.0 if not rate or n_tokens <= 1 else (n_tokens - 1) / rate


class Twin(SingleStreamBaseline):
    @torch.no_grad()
    def run(self, messages: list[dict], rate: float | None = None, max_new_tokens: int | None = None,
            arrive_at: float | None = None) -> RunResult:
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
        return RunResult({"answer": text.strip()}, 0, {}, [], answer_start(self.tokenizer, new, timer.times), e2e,
                         input_done, len(timer.times))


def answer_start(tokenizer, ids: list[int], times: list[float]) -> float | None:
    """The time of the first token after which the decoded reply has answer text outside its tags."""
    for k in range(1, min(len(ids), len(times)) + 1):
        text = _OPENING_TAG.sub("", tokenizer.decode(ids[:k], skip_special_tokens=True))
        if split_reply(text)["answer"]:
            return times[k - 1]
    return None


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
