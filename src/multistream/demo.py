"""``multistream demo``: what the default model does that its single-stream twin cannot, on three scenes.

1. *tool*: an arithmetic question; the ``call`` stream asks the calculator while the
   ``answer`` stream says so, and the answer uses the result as soon as it arrives;
2. *listening*: a question, then a document arriving at 10 tokens/s on the untrusted
   ``tool`` stream; the answer comes as soon as the fact has been read, while the twin,
   an ordinary chat model, can only start once the whole document is there;
3. *interrupt*: a correction typed while the answer is being written; the answer
   changes at once, while the twin must finish its reply before it can read it.

Both models run greedily on this machine, one after the other; every answer is checked
against the expected one and the times are wall-clock seconds. ``multistream demo`` exits
with status 1 when a multi-stream answer is wrong (the twin's answers are shown, not judged).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .defaults import ARRIVAL_RATE, SPECULATIVE_ROWS, SYSTEM_PROMPT


@dataclass
class Scene:
    title: str
    question: str
    expected: str
    document: str = ""
    fact: str = ""
    """The sentence of ``document`` that holds the answer."""
    correction: str = ""
    correction_after_tokens: int = 3


# held-out items only (multistream.data.skills.held_out_item): no scene is a training example
SCENES = [
    Scene("tool", "What is 16 plus 25?", "41"),
    Scene(
        "listening",
        "In which city does Nadia live?",
        "Graz",
        document="Nadia works as a nurse. Nadia lives in Graz. Omar has a pet hamster. Omar works as a pilot. "
        "Nadia's favourite color is green. Omar lives in Lyon. Nadia has a pet turtle.",
        fact="Nadia lives in Graz.",
    ),
    Scene("interrupt", "Count from 2 to 11.", "22, 23, 24, 25", correction="Actually, count from 22 to 25 instead."),
]


def right(scene: Scene, answer: str) -> bool:
    """The final answer claims the scene's expected value, scored as every evaluation scores
    (:func:`multistream.evals.scoring.correct`)."""
    from .evals.scoring import correct

    return correct(scene.expected, answer, scene.question)


def mark(ok: bool) -> str:
    return "right" if ok else "WRONG"


# -- the multi-stream model through the engine -----------------------------------------------------------------------------


def run_multi(core, scene: Scene, tools, rate: float = ARRIVAL_RATE) -> dict:
    """One scripted session (``run_session``); returns the answer, its messages and times (seconds from the first input)."""
    from .engine.runner import Input, run_session
    from .evals.common import StepClock

    tok, role = core.tok, core.layout.role
    inputs = [Input(role("user"), scene.question, bulk=True)]
    if scene.document:  # it starts streaming once the question has been read
        inputs.append(Input(role("tool"), scene.document, row=len(tok.encode_message(scene.question)), rate=rate))
    said, corrected = [0], []

    def correct_mid_answer(clock, events) -> None:
        said[0] += sum(e.stream == role("answer") and e.type == "token" for e in events)
        if scene.correction and not corrected and said[0] >= scene.correction_after_tokens:
            clock.core.send("demo", role("user"), scene.correction)
            corrected.append(time.perf_counter())

    clock = StepClock(core, correct_mid_answer)
    t0 = time.perf_counter()
    result = run_session(clock, inputs, prefix=SYSTEM_PROMPT, max_rows=300, tools=tools, session_id="demo")
    at = {row: t - t0 for row, t in clock.row_time.items()}
    lines, answers = [], []
    outputs = {s.name for s in core.layout.outputs}
    for ev in result.events:
        if ev.type == "message_end" and ev.stream in outputs:
            lines.append(f"  {ev.stream:>6} row {ev.row:3d}, {at[ev.row]:5.2f} s: {ev.text}")
            if ev.stream == role("answer"):
                answers.append((ev.text, at[ev.row]))
        elif ev.type == "tool_result":
            lines.append(f"  {ev.stream:>6} row {ev.row:3d}, {at[ev.row]:5.2f} s: {ev.text}   (the calculator's result)")
    doc_rows = [ev.row for ev in result.events if ev.stream == role("tool") and ev.type == "token" and ev.forced]
    fact_time = doc_end = None
    if scene.fact and doc_rows:
        fact_tokens = len(tok.encode_text(scene.document[: scene.document.index(scene.fact) + len(scene.fact)]))
        fact_time = clock.row_start[doc_rows[min(fact_tokens, len(doc_rows)) - 1]] - t0  # the fact's last token fed
        doc_end = clock.row_start[doc_rows[-1]] - t0
    final, final_t = answers[-1] if answers else ("", None)
    return {"answer": final, "time": final_t, "lines": lines, "fact_time": fact_time, "doc_end": doc_end,
            "correction_time": corrected[0] - t0 if corrected else None}


# -- the single-stream twin ------------------------------------------------------------------------------------------------


def run_twin(baseline, scene: Scene, tools, rate: float = ARRIVAL_RATE, doc_end: float | None = None) -> dict:
    """The twin as an ordinary chat (the single-stream tool loop, :func:`multistream.evals.twin.tool_loop`, each
    exchange within the baseline's ``max_new_tokens``): it reads whole messages and answers one at a time; a
    correction is read once its reply is complete. A document must have arrived whole first: at ``doc_end``
    seconds, when the multi-stream session got its last token (on a slow machine its rows, not ``rate``, set the
    pace: the same clock for both), else after its tokens at ``rate``."""
    from .evals.scoring import reply_answer
    from .evals.twin import tool_loop

    convo = [{"role": "system", "content": SYSTEM_PROMPT}]
    content = scene.question + (f"\n<tool>{scene.document}</tool>" if scene.document else "")
    convo.append({"role": "user", "content": content})
    waited = 0.0
    if scene.document:  # a chat model starts once the whole document has arrived
        waited = doc_end if doc_end is not None else (
            len(baseline.tokenizer(scene.document, add_special_tokens=False)["input_ids"]) / rate)
    lines, replies, offset = [], [], waited

    def note(reply: str, seconds: float) -> None:  # seconds into the exchange; it started at `offset`
        lines.append(f"  reply, {offset + seconds:5.2f} s: {reply}")
        replies.append(reply)

    first, added = tool_loop(baseline, convo, tools, on_reply=note)
    spent = first.e2e
    if scene.correction:
        offset += first.e2e
        second, _ = tool_loop(baseline, convo + added + [{"role": "user", "content": scene.correction}], tools,
                              on_reply=note)
        spent += second.e2e
    return {"answer": reply_answer(replies[-1]), "time": waited + spent, "lines": lines}


def run_demo(model_name: str = "default", single_name: str = "default-single", rate: float = ARRIVAL_RATE,
             dtype: str = "auto") -> bool:
    """Print the three scenes (both models in ``dtype``, see :func:`multistream.hardware.resolve_dtype`); returns
    whether every multi-stream answer was right (``multistream demo`` turns False into exit status 1)."""
    from .engine.baseline import SingleStreamBaseline
    from .engine.build import build_engine
    from .engine.core import EngineConfig
    from .engine.tools import demo_tools
    from .hardware import resolve_dtype
    from .zoo import load_model, load_single

    t0 = time.perf_counter()
    t = resolve_dtype(dtype)
    model = load_model(model_name, dtype=t)
    baseline = SingleStreamBaseline(*load_single(single_name, dtype=t), max_new_tokens=64)
    print(f"loaded {model_name!r} and its twin {single_name!r} ({str(t).removeprefix('torch.')}) in "
          f"{time.perf_counter() - t0:.1f} s; streams: "
          + ", ".join(f"{s.name} ({s.kind}{', untrusted' if s.trust == 'untrusted' else ''})" for s in model.layout))
    core, tools = build_engine(model, EngineConfig(speculative=SPECULATIVE_ROWS)), demo_tools()
    wrong = []
    for scene in SCENES:
        multi = run_multi(core, scene, tools, rate)
        twin = run_twin(baseline, scene, tools, rate, doc_end=multi["doc_end"])
        ok_m, ok_t = right(scene, multi["answer"]), right(scene, twin["answer"])
        if not ok_m:
            wrong.append(scene.title)
        print(f"\n== {scene.title}: user: {scene.question}")
        if scene.document:
            print(f"   then on the untrusted tool stream, at {rate:g} tokens/s: {scene.document}")
        if scene.correction:
            print(f"   then, after {scene.correction_after_tokens} answer tokens: {scene.correction}")
        print(f"multi-stream ({mark(ok_m)}):")
        print("\n".join(multi["lines"]))
        print(f"twin ({mark(ok_t)}):")
        print("\n".join(twin["lines"]))
        if scene.document and multi["fact_time"] is not None and multi["time"] is not None:
            print(f"-> answer complete {multi['time'] - multi['fact_time']:.2f} s after the fact arrived "
                  f"(the document ended {multi['doc_end'] - multi['fact_time']:.2f} s after it); "
                  f"the twin: {twin['time'] - multi['fact_time']:.2f} s")
        elif scene.correction and multi["correction_time"] is not None and multi["time"] is not None:
            print(f"-> corrected answer complete {multi['time'] - multi['correction_time']:.2f} s after the correction; "
                  f"the twin finishes its first reply before it can read it: {twin['time']:.2f} s in all")
        elif multi["time"] is not None:
            print(f"-> final answer after {multi['time']:.2f} s; the twin: {twin['time']:.2f} s")
    if wrong:
        print(f"\nWRONG: the multi-stream model answered {', '.join(wrong)} wrong (exit status 1)")
    else:
        print("\nevery multi-stream answer is right")
    print("next: `multistream chat` to talk to it live, `multistream serve` for the web page and API")
    return not wrong
