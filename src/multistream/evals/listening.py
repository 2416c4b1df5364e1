"""Listening: a question, then a document streaming in; how soon after the text that holds the answer arrives
is the answer there?

Multi-stream: the question enters ``user`` all at once; once it has been read, the document
streams in on the untrusted input stream at ``rate`` tokens/s (the runner feeds token ``i``
at ``doc_start + i / rate``, the model stepping on between tokens). The text that holds
the answer (the case's ``fact`` sentence, or the first occurrence of ``answer``) has arrived at
``doc_start + (k - 1) / rate``, ``k`` being the document's tokens up to its end, whenever the engine actually reads it: a slow
engine is charged for its lag. The answer is there when the final answer message is
complete.

Twin: an ordinary chat model can only start once the whole document is there, at
``doc_start + (n - 1) / rate`` (``n`` tokens, the end token included). It runs right away
rather than sleeping through that wait, which is added: its time from the fact is
``(n - k) / rate`` plus its measured end-to-end time (prompt and reply, on the same
machine, in the same run). Its chat is rendered exactly as it was trained
(:func:`multistream.data.twin.twin_messages`).

Both are scored strictly on their final answer (:func:`.scoring.correct`). Medians are
over all cases (a case not answered correctly counts as slower than any answered correctly) and over
the cases both answered correctly (latency at matched accuracy); ``before_end`` is the
share of cases the multi-stream model answered correctly before the document's end had
arrived. Each contender answers one case untimed first (warm-up) and the order of the two
alternates case by case, because the machines are shared and noisy.
"""

from __future__ import annotations

from ..data.twin import twin_messages
from ..defaults import ARRIVAL_RATE
from ..engine.runner import Input
from ..timeline import Segment, Timeline
from .cases import ListeningCase
from .common import Contenders, progress, run_multi
from .injection import untrusted_stream
from .latency import median_all
from .scoring import correct, final_reply_answer, rate_ci, ratio


def _later(t: float | None, since: float) -> float | None:
    return None if t is None else round(t - since, 4)


def run_case(c: Contenders, core, baseline, case: ListeningCase, rate: float, single_first: bool = False) -> dict:
    """Both contenders on one case; times in seconds from the fact's arrival."""
    tok, layout = core.tok, c.multi.layout
    doc = untrusted_stream(layout)
    q_rows = len(tok.encode_message(case.user))
    n = len(tok.encode_message(case.document))
    k = len(tok.encode_text(case.document[: case.answer_end]))
    out: dict = {}

    def multi() -> None:
        m = run_multi(c, core, [Input(layout.role("user"), case.user), Input(doc, case.document, row=q_rows, rate=rate)],
                      prefix=case.system)
        fed = [e.row for e in m.result.events if e.stream == doc and e.type == "token" and e.forced]
        doc_start = m.clock.since_start(m.clock.row_start[fed[0]]) if fed else None
        fact_at = None if doc_start is None else doc_start + (k - 1) / rate
        ok = correct(case.answer, m.final, case.user)
        out["multi"] = {"answer": m.final, "correct": ok, "tokens": m.clock.spent,
                        "from_fact": None if fact_at is None else _later(m.e2e, fact_at),
                        "first_token_from_fact": None if fact_at is None else _later(m.ttft, fact_at),
                        "before_end": bool(ok and m.e2e is not None and doc_start is not None
                                           and m.e2e < doc_start + (n - 1) / rate)}

    def single() -> None:
        parts = [Segment(layout.role("user"), case.user, start_row=0), Segment(doc, case.document, start_row=q_rows)]
        timeline = Timeline(layout.names, parts, prefix=case.system)
        s = baseline.run(twin_messages(timeline, tok.message_rows, layout), max_new_tokens=c.max_tokens)
        final = final_reply_answer(s.streams["answer"])
        wait = (n - k) / rate  # from the fact's arrival to the document's end, when a chat model can start
        out["single"] = {"answer": final, "reply": s.streams["answer"], "correct": correct(case.answer, final, case.user),
                         "tokens": s.steps, "from_fact": _later(s.e2e, -wait),
                         "first_token_from_fact": _later(s.ttft, -wait)}

    for run in ((single, multi) if single_first else (multi, single)):
        run()
    return {"id": case.id, "expected": case.answer, "document_tokens": n, "fact_tokens": k,
            "document_after_fact_s": round((n - k) / rate, 4), **out}


def summarise(records: list[dict]) -> dict:
    both = [r for r in records if r["multi"]["correct"] and r["single"]["correct"]]
    out: dict = {"n": len(records), "n_both_correct": len(both)}
    for side in ("multi", "single"):
        out[side] = {**rate_ci("accuracy", [r[side]["correct"] for r in records]), "n": len(records)}
        for m in ("from_fact", "first_token_from_fact"):
            out[side][f"{m}_median"] = median_all([r[side][m] if r[side]["correct"] else None for r in records])
            out[side][f"{m}_median_both_correct"] = median_all([r[side][m] for r in both])
    out["multi"].update(rate_ci("before_end", [r["multi"]["before_end"] for r in records]))
    for m in ("from_fact", "first_token_from_fact"):
        out[f"{m}_ratio"] = ratio(out["multi"][f"{m}_median"], out["single"][f"{m}_median"])
        out[f"{m}_ratio_both_correct"] = ratio(out["multi"][f"{m}_median_both_correct"],
                                               out["single"][f"{m}_median_both_correct"])
    out["accuracy_ratio"] = ratio(out["multi"]["accuracy"], out["single"]["accuracy"])
    out["document_after_fact_median_s"] = median_all([r["document_after_fact_s"] for r in records])
    out["cases"] = records
    return out


def eval_listening(c: Contenders, cases: list[ListeningCase], rate_tok_s: float = ARRIVAL_RATE, show_progress: bool = True,
                   warmup: bool = True) -> dict:
    core, baseline = c.core(), c.baseline()
    if warmup and cases:
        run_case(c, core, baseline, cases[0], rate_tok_s)
    records = [run_case(c, core, baseline, case, rate_tok_s, single_first=i % 2 == 1)
               for i, case in enumerate(progress(cases, "listening", show_progress))]
    return {"rate": rate_tok_s, "warmup": warmup, **summarise(records)}
