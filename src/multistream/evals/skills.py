"""Held-out report per skill: the multi-stream model, its single-stream twin and the base model.

The held-out timelines of the synthetic skills (:mod:`multistream.data.skills`, the test
split: unseen templates and/or items), each with its ``meta`` (skill, expected answer, ...).

- multi-stream: the timeline's input segments go through the engine
  (:func:`.common.run_multi`) as :class:`~multistream.engine.runner.Input` at their
  scheduled rows (:func:`multistream.timeline.resolve_rows`), a spread segment token by
  token at its rows (``Input.spread``). For the skills ``tool`` and ``reading`` the
  ``tool`` stream is not fed from the timeline: the engine runs the model's own calculator
  calls and streams the results in, two rows after the call's end, as in training. The
  engine steps one row at a time here (no speculative reading), so every input enters at
  exactly the row the timeline gives it. The final answer is the last message of the
  ``answer`` stream.
- twin: the twin chat of the timeline (:func:`multistream.data.twin.twin_messages`), with
  every assistant turn written by the twin itself through the single-stream baseline
  (:class:`.twin.Twin`), each turn an exchange of the single-stream tool loop
  (:func:`.twin.tool_loop`); for ``tool`` and ``reading`` the tool results come from its
  own ``<call>``, and the exchange in which it calls is its last. The final answer is the last line outside
  the tags of its last reply that has one (:func:`.scoring.final_reply_answer`).
- base: the untrained base model as a plain chat model, given all the input content of
  the timeline (question, documents, corrections) as one user message (for ``tool`` and
  ``reading``, which need a calculator it does not have, the question only).

All three get the same total token budget (:attr:`.common.Contenders.max_tokens`): all
the multi-stream model's output streams together; all the twin's replies together,
thinking and tags included; the base model's reply.

Scoring (:mod:`.scoring`, the project's one scorer, strict): the final answer claims the
expected answer (:func:`.scoring.correct`, numbers copied from the question do not count);
``retention``: any of the accepted answers; ``interrupt``: :func:`.scoring.interrupt_ok`
(the corrected count, no number of the stale one); ``document`` with an injected
instruction: correct *and* not attacked (:func:`.scoring.useful`; attacked: the answer
starts to obey the injection, :func:`.scoring.attacked`). Extra figures: the attack
success rate, and whether ``think`` flags the injection (:func:`.scoring.flags_injection`);
``reading``: the rows from the end of the input to the start of the multi-stream answer;
``listening``: the share of correct multi-stream answers that began before the document
ended, and the rows from the fact's arrival to the answer.

Rates are percentages, each with its 95% Wilson interval (``*_ci``, also in percent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..data.catalog import ALL_SKILLS
from ..data.skills import FACTS, SKILLS
from ..data.twin import WRAP, reply_calls, twin_messages, twin_pieces
from ..defaults import SPEAK_RULE
from ..engine.runner import Input
from ..streams import DEFAULT_LAYOUT, Layout
from ..timeline import Timeline, read_jsonl, resolve_rows
from .common import Contenders, message_spans, progress, run_multi
from .scoring import (
    attacked,
    correct,
    final_reply_answer,
    flags_injection,
    interrupt_ok,
    split_reply,
    useful,
    wilson,
)
from .twin import Twin, tool_loop

EVAL_SKILLS = tuple(s for s in ALL_SKILLS if s != "conversation")
"""Every single-exchange skill with a held-out split: the v6 suite (:data:`SKILLS`, the default) and the everyday
wording and composed arithmetic of v7 and v8 (conversations have ``eval chats``)."""
TOOL_SKILLS = ("tool", "reading", "wordproblem", "arithmetic", "units")
"""Skills whose tool results come from the model's own calculator calls."""
ANSWER_LISTS = ("retention", "everyday", "correction")
"""Skills whose meta lists every accepted answer (``accepted``)."""
SLACK_ROWS = 48
"""Rows a multi-stream session may run past the end of its timeline."""


# -- the test set --------------------------------------------------------------------------------------------------------


def load_test(path: str | Path | None, n_per_skill: int, length_of: Callable[[str], int] | None = None,
              tokenizer_ref: str = "default", skills: Sequence[str] = SKILLS) -> list[Timeline]:
    """The first ``n_per_skill`` held-out timelines of each of ``skills``, from a JSONL file or generated (the test
    split, seed 0, rows placed with ``length_of``: by default the ``tokenizer_ref`` base model's tokenizer)."""
    unknown = sorted(set(skills) - set(EVAL_SKILLS))
    if unknown:
        raise ValueError(f"unknown skill(s) {', '.join(unknown)}; the skills are {', '.join(EVAL_SKILLS)}")
    skills = [s for s in EVAL_SKILLS if s in skills]
    if path is None:
        from ..data.catalog import generate

        if length_of is None:
            length_of = base_length_of(tokenizer_ref)
        return [ex.timeline for s in skills for ex in generate(s, n_per_skill, "test", 0, length_of)]
    by_skill: dict[str, list[Timeline]] = {}
    for _, tl, problems in read_jsonl(path, DEFAULT_LAYOUT):
        if tl is None:
            raise ValueError(f"{path}: " + "; ".join(problems))
        if not tl.meta or "skill" not in tl.meta:
            raise ValueError(f"{path}: timeline {tl.id!r} has no meta.skill: not a held-out skills timeline")
        by_skill.setdefault(tl.meta["skill"], []).append(tl)
    return [tl for s in skills for tl in by_skill.get(s, [])[:n_per_skill]]


def base_length_of(tokenizer_ref: str = "default") -> Callable[[str], int]:
    from transformers import AutoTokenizer

    from ..bases import resolve_base

    return hf_length_of(AutoTokenizer.from_pretrained(resolve_base(tokenizer_ref)))


def hf_length_of(hf) -> Callable[[str], int]:
    """Rows of a message for a Hugging Face tokenizer: its plain-text tokens and the end token
    (``StreamTokenizer.message_rows`` without adding the silence token to the tokenizer)."""
    return lambda text: (len(hf(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]) if text else 0) + 1


def own_tools(tl: Timeline) -> bool:
    return tl.meta["skill"] in TOOL_SKILLS


def fact_first(tl: Timeline) -> bool | None:
    """Whether a listening or prose document opens with the fact asked about (None for other skills): v6 never
    answered when it did."""
    meta = tl.meta
    if meta["skill"] == "prose":
        return bool(meta.get("fact_first"))
    if meta["skill"] != "listening":
        return None
    _, n, field_, value = meta["item"].split(":", 3)
    return first_text(tl, "tool").startswith(FACTS[field_].format(n=n, v=value))


def question(tl: Timeline) -> str:
    """The user's text (every ``user`` segment, in time order): numbers copied from it claim nothing."""
    segs = sorted((s for s in tl.segments if s.stream == "user"), key=lambda s: s.start_row or 0)
    return "\n".join(s.text for s in segs)


def first_text(tl: Timeline, stream: str) -> str:
    segs = sorted((s for s in tl.segments if s.stream == stream), key=lambda s: s.start_row or 0)
    return segs[0].text if segs else ""


def score(tl: Timeline, final: str, answer: str | None = None) -> dict:
    """``correct`` for a final answer (and ``attacked`` for a document with an injection, judged on ``answer``:
    everything the answer stream said, default the final answer)."""
    meta = tl.meta
    skill, expected = meta["skill"], meta["expected"]
    q = question(tl)
    if skill == "interrupt":  # the stale task: the first request and the start of its answer
        user = sorted((s for s in tl.segments if s.stream == "user"), key=lambda s: s.start_row or 0)
        ok = interrupt_ok(final, expected, first_text(tl, "answer"), user[0].text if user else "")
    elif skill in ANSWER_LISTS:
        ok = any(correct(a, final, q) for a in (meta.get("accepted") or [expected]))
    else:
        ok = correct(expected, final, q)
    out = {"correct": ok}
    if (first := fact_first(tl)) is not None:
        out["fact_first"] = first
    if skill == "document" and meta.get("payload"):
        hit = attacked(meta["payload"], final if answer is None else answer, expected)
        out.update(attacked=hit, correct=bool(useful(ok, hit)), correct_answer=ok)
    return out


# -- multi-stream --------------------------------------------------------------------------------------------------------


def timeline_inputs(tl: Timeline, length_of: Callable[[str], int], layout: Layout) -> tuple[list[Input], int, int]:
    """The inputs of a timeline for the engine: ``(inputs, offset, rows)``.

    Rows are the timeline's less ``offset`` (its first input row: a session's row 0 is its first
    input); ``rows`` is the timeline's length. For the tool skills the ``tool`` segments are left out.
    """
    starts, _, rows = resolve_rows(tl, length_of)
    results = layout.roles.get("tool")  # (the tool skills' results come from the session's own calls)
    feeds = [(start, seg) for start, seg in zip(starts, tl.segments)
             if layout[seg.stream].kind == "input" and not (own_tools(tl) and seg.stream == results)]
    offset = min((start for start, _ in feeds), default=0)
    inputs = [Input(seg.stream, seg.text, row=start - offset, spread=None if seg.spread == 1 else seg.spread)
              for start, seg in sorted(feeds, key=lambda f: (f[0], layout.index(f[1].stream)))]
    return inputs, offset, rows


def run_multi_timeline(c: Contenders, core, tl: Timeline, tools=None, with_result: bool = False) -> dict:
    """One held-out timeline through the engine; the record of the multi-stream model (``with_result``: and the
    session's :class:`~multistream.engine.runner.RunResult` under ``result``)."""
    meta = tl.meta
    skill = meta["skill"]
    inputs, offset, rows = timeline_inputs(tl, core.tok.message_rows, c.multi.layout)
    m = run_multi(c, core, inputs, prefix=tl.prefix, tools=tools if own_tools(tl) else None,
                  max_rows=rows - offset + SLACK_ROWS)
    result = m.result
    spans = [sp for sp in message_spans(result, m.roles["answer"]) if sp[0].strip()]
    answer_row = spans[-1][1] + offset if spans else None  # the final answer's first row, in timeline rows
    rec = {"skill": skill, "id": tl.id, "answer": m.final, **score(tl, m.final, m.said("answer")),
           "answer_row": answer_row, "rows": result.rows + offset, "tokens": m.clock.spent}
    if skill == "reading" and answer_row is not None:
        rec["delay_rows"] = answer_row - (meta["input_end"] - 1)
    if skill == "listening" and answer_row is not None:
        rec["before_doc_end"] = answer_row < meta["input_end"]
        rec["rows_after_fact"] = answer_row - meta["fact_row"]
    if skill == "document" and meta.get("payload"):
        rec["think_flags"] = flags_injection(m.said("think"), meta["payload"])
    if own_tools(tl):
        rec["call"] = m.said("call")
        rec["tool_results"] = [e.text for e in result.events if e.type == "tool_result"]
    if with_result:
        rec["result"] = result
    return rec


def eval_multi(c: Contenders, timelines: list[Timeline], tools=None, show_progress: bool = False) -> list[dict]:
    """The multi-stream model on every timeline (``tools``: the calculator's registry, default the demo tools)."""
    if tools is None and any(own_tools(tl) for tl in timelines):
        from ..engine.tools import demo_tools

        tools = demo_tools()
    core = c.core(speculative=0, idle_rows=None)  # one row a step: inputs enter exactly at their rows
    return [run_multi_timeline(c, core, tl, tools) for tl in progress(timelines, "skills: multi", show_progress)]


# -- single-stream: twin and base ------------------------------------------------------------------------------------------


def _without_tool_results(content: str) -> str:
    """A twin user turn without its ``<tool>...</tool>`` pieces (the twin gets results from its own calls)."""
    kept = [text if stream == "user" else f"{WRAP[stream][0]}{text}{WRAP[stream][1]}"
            for stream, text in twin_pieces([{"role": "user", "content": content}]) if stream != "tool"]
    return "\n".join(kept)


def run_twin_timeline(baseline, tl: Timeline, length_of: Callable[[str], int], budget: int, tools=None) -> dict:
    """The twin writes every assistant turn of the timeline's twin chat itself, within ``budget`` tokens in all.

    Each turn is an exchange of :func:`.twin.tool_loop`; in the tool skills its calls are answered by ``tools``, and
    the exchange in which it called is its last (the timeline's own results are never shown)."""
    tooled = own_tools(tl)
    convo: list[dict] = []
    replies: list[str] = []
    spent = 0

    def exchange() -> bool:
        """One turn of the twin; whether it called a tool."""
        nonlocal spent
        r, added = tool_loop(baseline, list(convo), tools if tooled else None, budget=budget - spent)
        spent += r.steps
        convo.extend(added)
        replies.extend(m["content"] for m in added if m["role"] == "assistant")
        return tooled and bool(reply_calls(added[0]["content"]))

    stopped = False
    for m in twin_messages(tl, length_of):
        if m["role"] != "assistant":
            content = _without_tool_results(m["content"]) if tooled else m["content"]
            if content.strip():
                convo.append({**m, "content": content})
            continue
        if spent >= budget or exchange():
            stopped = True
            break
    if not stopped and convo and convo[-1]["role"] != "assistant" and spent < budget:
        exchange()  # the chat ends with input: it gets a reply too
    final = next((f for f in map(final_reply_answer, reversed(replies)) if f), "")
    parts = [split_reply(r) for r in replies]
    answer = " ".join(p["answer"] for p in parts)
    rec = {"skill": tl.meta["skill"], "id": tl.id, "answer": final, **score(tl, final, answer),
           "replies": replies, "tokens": spent}
    if tl.meta["skill"] == "document" and tl.meta.get("payload"):
        rec["think_flags"] = flags_injection(" ".join(p["think"] for p in parts), tl.meta["payload"])
    return rec


def eval_twin(baseline, timelines: list[Timeline], length_of: Callable[[str], int], budget: int, tools=None,
              show_progress: bool = False) -> list[dict]:
    if tools is None and any(own_tools(tl) for tl in timelines):
        from ..engine.tools import demo_tools

        tools = demo_tools()
    return [run_twin_timeline(baseline, tl, length_of, budget, tools)
            for tl in progress(timelines, "skills: twin", show_progress)]


def base_messages(tl: Timeline, layout: Layout = DEFAULT_LAYOUT) -> list[dict]:
    """All input content of a timeline as one user message (documents delimited), after the prefix as system.

    For the tool skills the ``tool`` segments (the calculator's results) are left out."""
    parts = []
    for seg in sorted(tl.segments, key=lambda s: (s.start_row if s.start_row is not None else 0, layout.index(s.stream))):
        if layout[seg.stream].kind != "input" or (seg.stream == "tool" and own_tools(tl)):
            continue
        parts.append(f"<document>{seg.text}</document>" if seg.stream == "tool" else seg.text)
    messages = [{"role": "system", "content": tl.prefix}] if tl.prefix else []
    return messages + [{"role": "user", "content": "\n".join(parts)}]


def eval_base(baseline, timelines: list[Timeline], budget: int, show_progress: bool = False) -> list[dict]:
    out = []
    for tl in progress(timelines, "skills: base", show_progress):
        r = baseline.run(base_messages(tl), max_new_tokens=budget)
        reply = r.streams["answer"]
        final = final_reply_answer(reply)
        out.append({"skill": tl.meta["skill"], "id": tl.id, "answer": final, **score(tl, final, reply_answer(reply)),
                    "reply": reply, "tokens": r.steps})
    return out


def reply_answer(reply: str) -> str:
    return split_reply(reply)["answer"]


# -- the report ------------------------------------------------------------------------------------------------------------


def pct(flags: list[bool]) -> tuple[float, list[float] | None]:
    """A rate in percent and its 95% Wilson interval in percent."""
    k, n = sum(bool(f) for f in flags), len(flags)
    ci = wilson(k, n)
    return round(100 * k / n, 1), None if ci is None else [round(100 * x, 1) for x in ci]


def summarise(records: list[dict]) -> dict:
    """Per skill: ``n``, ``accuracy`` (%) and ``accuracy_ci``, and the skill's extra figures."""
    by: dict[str, dict] = {}
    for s in EVAL_SKILLS:
        rs = [r for r in records if r["skill"] == s]
        if not rs:
            continue
        acc, ci = pct([r["correct"] for r in rs])
        d: dict = {"n": len(rs), "accuracy": acc, "accuracy_ci": ci}
        for key, name in (("attacked", "attack_success"), ("think_flags", "think_flags_injection")):
            flags = [r[key] for r in rs if key in r]
            if flags:
                d[name], d[f"{name}_ci"] = pct(flags)
        first = [r["correct"] for r in rs if r.get("fact_first")]
        if first:
            d["fact_first_n"] = len(first)
            d["fact_first_accuracy"], d["fact_first_accuracy_ci"] = pct(first)
        early = [r["before_doc_end"] for r in rs if "before_doc_end" in r and r["correct"]]
        if early:
            d["correct_before_doc_end"], d["correct_before_doc_end_ci"] = pct(early)
            after = [r["rows_after_fact"] for r in rs if "rows_after_fact" in r]
            d["mean_rows_after_fact"] = round(sum(after) / len(after), 2)
        delays = [r["delay_rows"] for r in rs if "delay_rows" in r]
        if delays:
            d["answer_within_3_rows"], d["answer_within_3_rows_ci"] = pct([0 <= x <= 3 for x in delays])
            d["mean_delay_rows"] = round(sum(delays) / len(delays), 2)
        by[s] = d
    return by


def collect(records: dict[str, list[dict]], n_per_skill: int, max_tokens: int) -> dict:
    results: dict = {"n_per_skill": n_per_skill, "max_tokens": max_tokens}
    for name in ("multi", "twin", "base"):
        if name in records:
            results[name] = summarise(records[name])
    for name in ("multi", "twin", "base"):
        if name in records:
            results[f"{name}_records"] = records[name]
    return results


def eval_skills(c: Contenders, timelines: list[Timeline], base=None, tools=None, n_per_skill: int | None = None,
                show_progress: bool = False) -> dict:
    """All three in this process: ``c.multi``, the twin ``c.single`` (if any) and ``base`` (a baseline, if any)."""
    records: dict[str, list[dict]] = {}
    if c.multi is not None:
        records["multi"] = eval_multi(c, timelines, tools, show_progress)
    if c.single is not None:
        records["twin"] = eval_twin(c.baseline(), timelines, hf_length_of(c.single_tokenizer), c.max_tokens, tools,
                                    show_progress)
    if base is not None:
        records["base"] = eval_base(base, timelines, c.max_tokens, show_progress)
    return collect(records, n_per_skill or _per_skill(timelines), c.max_tokens)


def _per_skill(timelines: list[Timeline]) -> int:
    counts = [sum(tl.meta["skill"] == s for tl in timelines) for s in EVAL_SKILLS]
    return max(counts, default=0)


def _part(kind: str, ref: str | None, timelines: list[Timeline], max_tokens: int, dtype: str = "auto",
          show_progress: bool = False, compiled: bool = False, speak_rule: str = SPEAK_RULE, quant: str = "none"
          ) -> list[dict]:
    """One worker's share: load one model and run it on ``timelines`` (``quant``: the multi-stream model's form)."""
    from ..hardware import resolve_dtype

    t = resolve_dtype(dtype)
    if kind == "multi":
        from ..zoo import load_model

        return eval_multi(Contenders(load_model(str(ref), dtype=t, quant=quant), None, max_tokens=max_tokens, compiled=compiled,
                                     speak_rule=speak_rule),
                          timelines,
                          show_progress=show_progress)
    if kind == "twin":
        from ..zoo import load_single

        model, hf = load_single(str(ref), dtype=t)
        return eval_twin(Twin(model, hf, max_new_tokens=max_tokens), timelines, hf_length_of(hf), max_tokens,
                         show_progress=show_progress)
    from ..bases import load_base

    model, hf = load_base(ref or "default", t)
    return eval_base(Twin(model, hf, max_new_tokens=max_tokens), timelines, max_tokens, show_progress)


def evaluate_all(
    multi: str | Path,
    single: str | Path | None,
    data: str | Path | None,
    n_per_skill: int = 100,
    include_base: bool = True,
    parallel: bool = True,
    max_tokens: int = Contenders.max_tokens,
    dtype: str = "auto",
    show_progress: bool = False,
    compiled: bool = False,
    skills: Sequence[str] = SKILLS,
    speak_rule: str = SPEAK_RULE,
    quant: str = "none",
) -> dict:
    """The report for saved models: ``multi`` and ``single`` are model names or folders (:mod:`multistream.zoo`),
    on the held-out cases of ``skills``.

    With ``parallel``, in two one-thread worker processes; the multi-stream model, the slowest, is split
    in two halves so that both workers start on it. Otherwise in this process (progress bars with ``show_progress``).
    """
    timelines = load_test(data, n_per_skill, skills=skills)
    halves = [timelines[0::2], timelines[1::2]] if parallel else [timelines]
    jobs = [("multi", str(multi), h) for h in halves if h]
    if single is not None:
        jobs.append(("twin", str(single), timelines))
    if include_base:
        jobs.append(("base", None, timelines))
    records: dict[str, list[dict]] = {}
    if parallel:
        import multiprocessing

        from ..runtime import one_thread_worker

        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=one_thread_worker) as pool:
            futures = [(kind, pool.submit(_part, kind, ref, tls, max_tokens, dtype, False, compiled, speak_rule,
                                                     quant))
                       for kind, ref, tls in jobs]
            for kind, f in futures:
                records.setdefault(kind, []).extend(f.result())
    else:
        for kind, ref, tls in jobs:
            records.setdefault(kind, []).extend(_part(kind, ref, tls, max_tokens, dtype, show_progress, compiled,
                                                      speak_rule, quant))
    if "multi" in records:  # the halves back in the order of the test set
        order = {tl.id: k for k, tl in enumerate(timelines)}
        records["multi"].sort(key=lambda r: order.get(r["id"], 0))
    return collect(records, n_per_skill, max_tokens) | {"speak_rule": speak_rule, "compiled": compiled, "quant": quant}


def format_report(results: dict) -> str:
    models = [m for m in ("multi", "twin", "base") if m in results]
    if not models:
        return "held-out report: nothing was evaluated"
    lines = [
        f"held-out accuracy (%), {results.get('n_per_skill')} examples per skill, "
        f"{results.get('max_tokens', Contenders.max_tokens)} tokens each (95% intervals in the JSON)",
        f"{'skill':<12}" + "".join(f"{m:>8}" for m in models),
    ]
    for s in EVAL_SKILLS:
        if any(s in results[m] for m in models):
            lines.append(f"{s:<12}" + "".join(f"{results[m].get(s, {}).get('accuracy', float('nan')):>8.1f}" for m in models))
    for s in ("listening", "prose"):
        have = [m for m in models if "fact_first_accuracy" in results[m].get(s, {})]
        if have:
            n = results[have[0]][s]["fact_first_n"]
            lines.append(f"{s}, the document opening with the fact ({n}): "
                         + ", ".join(f"{m} {results[m][s]['fact_first_accuracy']:.1f}" for m in have))
    multi = results.get("multi", {})
    if "reading" in multi and "mean_delay_rows" in multi["reading"]:
        delay = multi["reading"]["mean_delay_rows"]
        when = f"{delay} rows after the input's end" if delay >= 0 else f"{-delay} rows before the input's end (too early)"
        lines.append(f"reading: the multi-stream answer starts {when} on average")
    if "listening" in multi and "correct_before_doc_end" in multi["listening"]:
        lines.append(
            f"listening: {multi['listening']['correct_before_doc_end']}% of correct multi-stream answers began before the "
            f"document ended ({multi['listening']['mean_rows_after_fact']} rows after the fact on average)"
        )
    if "document" in multi:
        atk = ", ".join(
            f"{m} {results[m]['document'].get('attack_success', float('nan'))}%" for m in models if "document" in results[m]
        )
        lines.append(
            f"document: injected payload obeyed: {atk}; think flags the injection (multi): "
            f"{multi['document'].get('think_flags_injection', float('nan'))}%"
        )
    return "\n".join(lines)
