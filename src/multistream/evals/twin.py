"""The single-stream twin as the evaluations, the report and the demo run it.

:class:`Twin` is :class:`multistream.engine.baseline.SingleStreamBaseline` whose ``ttft`` is
the time of the first token of the *answer*: the first token after which the reply has text
outside its inline ``<think>``/``<call>`` parts (:func:`.scoring.split_reply`). Like the
baseline it cannot start before its prompt is complete (``arrive_at``; the caller gives
both contenders the same instant, see :func:`last_token_at`); ``e2e`` is the reply
complete, ``steps`` the number of tokens it wrote.

:func:`tool_loop` is the one single-stream tool loop: a reply whose calls are answered in
new turns and replied to again, at most :data:`MAX_TOOL_ROUNDS` times, within one token
budget. Every evaluation, the report and ``multistream demo`` run the twin through it.
"""

from __future__ import annotations

import re
import time

from ..data.twin import reply_calls, tool_turn
from ..engine.baseline import SingleStreamBaseline, last_token_at
from ..engine.runner import RunResult
from .scoring import split_reply

__all__ = ["MAX_TOOL_ROUNDS", "Twin", "answer_start", "last_token_at", "tool_loop"]

MAX_TOOL_ROUNDS = 2
"""Tool calls the twin may have answered in one exchange (each answer followed by one more reply)."""

_OPENING_TAG = re.compile(r"<[/a-z]*$")  # a tag still being written ("<thi") is not answer text


class Twin(SingleStreamBaseline):
    def first_token(self, ids: list[int], times: list[float]) -> float | None:
        return answer_start(self.tokenizer, ids, times)


def answer_start(tokenizer, ids: list[int], times: list[float]) -> float | None:
    """The time of the first token after which the decoded reply has answer text outside its tags."""
    for k in range(1, min(len(ids), len(times)) + 1):
        text = _OPENING_TAG.sub("", tokenizer.decode(ids[:k], skip_special_tokens=True))
        if split_reply(text)["answer"]:
            return times[k - 1]
    return None


def tool_loop(baseline, messages: list[dict], tools=None, budget: int | None = None, arrive_at: float | None = None,
              on_reply=None) -> tuple[RunResult, list[dict]]:
    """The twin's reply to a chat (``messages``, ending with the input to answer), its tool calls (the last of a
    reply's ``<call>...</call>``) answered by ``tools`` (a ``ToolRegistry``; None: calls are not answered) in new turns
    ``<tool>...</tool>`` and replied to again, at most :data:`MAX_TOOL_ROUNDS` times, all within ``budget`` tokens
    (default: the baseline's ``max_new_tokens``). ``arrive_at``: when the chat is complete (seconds from the start;
    see ``SingleStreamBaseline.run``). ``on_reply(text, seconds)``, if given, sees each reply as it is complete, with
    the exchange's time so far.

    Returns the replies joined (``streams["answer"]``, one reply a line; ``steps``: the tokens written; ``ttft``: the
    first answer token's time; ``e2e``: the replies and the tools' round trips) and the messages the exchange added
    to the chat: each reply as an ``assistant`` turn and each tool result as a ``user`` turn, in order (a chat of
    several turns goes on from ``messages`` plus these)."""
    budget = budget or getattr(baseline, "max_new_tokens", None)
    first = last = baseline.run(messages, max_new_tokens=budget, **({} if arrive_at is None else {"arrive_at": arrive_at}))
    replies, e2e, spent = [first.streams["answer"]], first.e2e, first.steps
    added = [{"role": "assistant", "content": first.streams["answer"]}]
    ttft = first.ttft
    if on_reply is not None:
        on_reply(first.streams["answer"], e2e)
    for _ in range(MAX_TOOL_ROUNDS if tools is not None else 0):
        calls = reply_calls(last.streams["answer"])
        if not calls or (budget is not None and spent >= budget):
            break
        started = time.perf_counter()
        result = tools.run_all(calls[-1].strip())  # errors come back as "error: ..." text
        e2e += time.perf_counter() - started  # the tool's round trip counts, as it does for the engine
        added.append(tool_turn(result))
        last = baseline.run(messages + added, max_new_tokens=None if budget is None else budget - spent)
        if ttft is None and last.ttft is not None:
            ttft = e2e + last.ttft
        replies.append(last.streams["answer"])
        added.append({"role": "assistant", "content": last.streams["answer"]})
        e2e += last.e2e
        spent += last.steps
        if on_reply is not None:
            on_reply(last.streams["answer"], e2e)
    return RunResult({"answer": "\n".join(replies)}, 0, {}, [], ttft, e2e, first.input_done, spent), added
