"""Interrupts: a correction that arrives while the answer is being written.

Multi-stream: the system prompt is the prefix and ``user`` enters the ``user`` stream at
row 0. When the answer stream writes its first token, at row ``A``, the interrupt is
scheduled to enter the ``user`` stream at row ``A + interrupt_after_rows`` (its first
token is fed at that row, beside the answer's own tokens; if the request is still being
read then, the interrupt queues behind it on the stream). The final answer is the last
message of the ``answer`` stream. Its latency is the time from the step that fed the
interrupt's first token to the end of that final message.

Single-stream: the baseline cannot read while it writes, so it gets the interrupt as a
new user turn after its reply ends (the twin's training chats render corrections the
same way). Its final answer is the reply to that turn. The interrupt is taken to arrive
when the first reply had written ``interrupt_after_rows`` tokens after its first one
(interpolated between its first and last token times; at the reply's end when it is
shorter), so its latency is the rest of the first reply plus the whole second one.

Success: :func:`.scoring.interrupt_ok` on the final answer (it claims the corrected answer,
or one the case accepts, and states no value of the stale task).

A case marked ``tools`` (an arithmetic correction: the model was trained to leave arithmetic to
the calculator) gives both contenders the evaluation's tools: the engine runs the multi-stream
model's calls; each twin reply's calls are answered in new turns (:func:`.twin.tool_loop`),
within the reply's budget. Budget: each contender may write twice the total
budget (the stale start and the corrected answer): the twin ``max_tokens`` per reply, the
multi-stream model ``2 * max_tokens`` over all its output streams.
"""

from __future__ import annotations

from ..engine.runner import Input
from .cases import InterruptCase
from .common import Contenders, StepClock, progress, run_multi, single_system
from .scoring import final_reply_answer, interrupt_ok, median, rate_ci, ratio
from .twin import tool_loop

NOT_YET = 1 << 30  # the interrupt's row until the answer has started


def run_multi_case(c: Contenders, core, case: InterruptCase, tools=None) -> dict:
    """One case through the engine; the interrupt enters ``interrupt_after_rows`` rows after the answer starts."""
    user, answer = core.layout.role("user"), core.layout.role("answer")
    interrupt = Input(user, case.interrupt, row=NOT_YET)
    seen: dict[str, int] = {}

    def schedule(clock: StepClock, events) -> None:
        if "answer" in seen:
            return
        for e in events:
            if e.stream == answer and e.type == "token":
                seen["answer"] = e.row
                interrupt.row = e.row + case.interrupt_after_rows
                return

    run = run_multi(c, core, [Input(user, case.user, row=0), interrupt], prefix=case.system, after_step=schedule,
                    budget=2 * c.max_tokens, tools=tools if case.tools else None)
    result, clock = run.result, run.clock
    user_end = next((e.row for e in result.events if e.stream == user and e.type == "message_end"), None)
    int_row = next((e.row for e in result.events if e.stream == user and e.type == "token"
                    and user_end is not None and e.row > user_end), None)  # the interrupt queues after the request
    end_row = next((e.row for e in reversed(result.events) if e.stream == answer and e.type in ("token", "message_end")),
                   None)
    latency = rows = None
    if int_row is not None and end_row is not None and end_row >= int_row:
        latency = clock.row_time[end_row] - clock.row_start[int_row]
        rows = end_row - int_row
    return {"answer_row": seen.get("answer"), "interrupt_row": int_row, "scheduled_row": None if "answer" not in seen
            else interrupt.row, "final": run.final, "answer": run.said("answer"),
            "think": run.said("think"), "latency": latency, "rows_to_answer": rows, "rows": result.rows,
            "tokens": clock.spent, "result": result}


def run_single(baseline, case: InterruptCase, budget: int | None = None, tools=None) -> dict:
    tools = tools if case.tools else None
    first_msgs = single_system(case.system) + [{"role": "user", "content": case.user}]
    r1, added = tool_loop(baseline, first_msgs, tools, budget=budget)
    reply1 = r1.streams["answer"]
    r2, _ = tool_loop(baseline, first_msgs + added + [{"role": "user", "content": case.interrupt}], tools, budget=budget)
    k = case.interrupt_after_rows
    if r1.ttft is None or r1.steps <= k:
        arrives = r1.e2e
    else:
        arrives = r1.ttft + k * (r1.e2e - r1.ttft) / max(1, r1.steps - 1)
    reply2 = r2.streams["answer"]
    return {"first_reply": reply1, "reply": reply2, "final": final_reply_answer(reply2), "interrupt_at": arrives,
            "latency": (r1.e2e - arrives) + r2.e2e}


def eval_interrupts(c: Contenders, cases: list[InterruptCase], show_progress: bool = True, tools=None) -> dict:
    """Success and latency of both contenders; ``tools`` (default: the demo tools, where a case needs them) serve
    the cases marked ``tools``."""
    if tools is None and any(case.tools for case in cases):
        from ..engine.tools import demo_tools

        tools = demo_tools()
    core, baseline = c.core(idle_rows=None, max_rows=c.max_rows + 1), c.baseline()
    records = []
    for case in progress(cases, "interrupts", show_progress):
        m = run_multi_case(c, core, case, tools)
        m.pop("result")
        s = run_single(baseline, case, c.max_tokens, tools)
        m["success"] = m["interrupt_row"] is not None and interrupt_ok(m["final"], case.answers, case.stale_answer,
                                                                       case.user)
        s["success"] = interrupt_ok(s["final"], case.answers, case.stale_answer, case.user)
        records.append({"id": case.id, "user": case.user, "interrupt": case.interrupt,
                        "interrupt_after_rows": case.interrupt_after_rows, "expected": case.answer,
                        "stale_answer": case.stale_answer, "multi": m, "single": s})
    return summarise(records)


def summarise(records: list[dict]) -> dict:
    out = {}
    for name in ("multi", "single"):
        rs = [r[name] for r in records]
        ok_latency = [r["latency"] for r in rs if r["success"]]
        out[name] = {**rate_ci("success", [r["success"] for r in rs]), "n": len(rs),
                     "latency_median": median([r["latency"] for r in rs]), "latency_median_success": median(ok_latency)}
    out["success_ratio"] = ratio(out["multi"]["success"], out["single"]["success"])
    out["latency_ratio"] = ratio(out["multi"]["latency_median"], out["single"]["latency_median"])
    out["cases"] = records
    return out
