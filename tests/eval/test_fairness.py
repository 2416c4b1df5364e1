"""Like for like: the same total budget, the same arrival clock, TTFT of the answer, e2e of the final answer,
warm-up and alternating order (scripted mock model and baseline; no wall-clock assertions)."""

from conftest import make_tokenizer

from eval.test_mechanics import FakeBaseline, MockContenders, scripted
from multistream.engine.runner import Input
from multistream.evals.cases import InterruptCase, PromptCase
from multistream.evals.common import run_multi
from multistream.evals.interrupts import eval_interrupts
from multistream.evals.latency import eval_latency, run_case
from multistream.evals.prompts import eval_prompts
from multistream.evals.twin import answer_start, last_token_at


def test_both_contenders_get_the_same_total_budget():
    text = " ".join(f"w{i}" for i in range(40))
    model = scripted({"answer": text, "think": text}, {"answer": 3, "think": 3})
    base = FakeBaseline(["x"])
    c = MockContenders(model, base)
    c.max_tokens = 12
    m = run_multi(c, c.core(), [Input("user", "hi")])
    outputs = len(list(model.layout.outputs))
    assert 12 <= m.clock.spent < 12 + outputs  # all output streams together, at most the crossing row over
    assert m.clock.cut and len(model.tok.encode_text(m.result.streams["answer"])) < 12
    eval_prompts(c, [PromptCase("a", "hi", "x", system="")], show_progress=False)
    assert base.budgets == [12]  # the twin: the same total, thinking and tags included
    eval_interrupts(c, [InterruptCase("t", "hi", "no", 1, "x", system="")], show_progress=False)
    assert base.budgets[1:] == [12, 12]  # two replies, as the multi-stream model gets twice the budget


def test_the_rate_clock_makes_the_last_input_token_available_at_the_same_instant():
    model = scripted({"answer": "Paris."}, {"answer": 30})
    base = FakeBaseline(["Paris."])
    c = MockContenders(model, base)
    case = PromptCase("a", "What is the capital of France?", "Paris", system="")
    n = len(model.tok.encode_message(case.prompt))
    run_case(c, c.core(), base, case, rate=40.0, single_first=False)
    assert base.arrivals == [(n - 1) / 40.0] == [last_token_at(n, 40.0)]  # token i at i / rate, as the engine reads
    run_case(c, c.core(), base, case, rate=None, single_first=False)
    assert base.arrivals[-1] == 0.0


def test_latency_warms_up_and_alternates_the_order():
    model = scripted({"answer": "Paris."}, {"answer": 6})
    order: list[str] = []

    class Recording(FakeBaseline):
        def run(self, *a, **k):
            order.append("single")
            return super().run(*a, **k)

    base = Recording(["Paris."])
    c = MockContenders(model, base)
    core_step = c.core

    def core(**config):
        core = core_step(**config)
        step = core.step

        def noted():
            if not order or order[-1] != "multi":
                order.append("multi")
            return step()

        core.step = noted
        return core

    c.core = core
    cases = [PromptCase(i, "capital of France?", "Paris", system="") for i in ("a", "b")]
    r = eval_latency(c, cases, 500.0, show_progress=False)
    assert r["warmup"] and order[:2] == ["multi", "single"]  # the untimed warm-up
    assert order[2:] == ["multi", "single", "multi", "single", "single", "multi", "single", "multi"]
    assert [rec["order"] for rec in r["modes"]["all_at_once"]["cases"]] == ["multi first", "single first"]


def test_the_twins_ttft_is_its_first_answer_token_not_its_thinking():
    tok = make_tokenizer()
    ids = tok("<think>it is Paris</think>Paris.", add_special_tokens=False)["input_ids"]
    times = [float(i) for i in range(len(ids))]
    first_answer = next(k for k in range(1, len(ids) + 1) if tok.decode(ids[:k]).partition("</think>")[2])
    assert answer_start(tok, ids, times) == times[first_answer - 1] > 0.0
    assert answer_start(tok, tok("<think>unfinished", add_special_tokens=False)["input_ids"], times) is None


def test_the_multi_stream_e2e_ends_with_the_final_answer_message_not_a_filler():
    model = scripted({"answer": "One moment."}, {"answer": 3})
    model.script[model.layout.index("answer")] += model.tok.encode_message("Paris.")
    c = MockContenders(model, FakeBaseline(["x"]))
    m = run_multi(c, c.core(), [Input("user", "hi")])
    spans = [e.row for e in m.result.events if e.stream == "answer" and e.type == "message_end"]
    assert len(spans) == 2 and m.final == "Paris."
    assert m.e2e == m.clock.since_start(m.clock.row_time[spans[-1]]) and m.e2e > m.clock.since_start(
        m.clock.row_time[spans[0]])


def test_the_latency_run_gives_both_contenders_the_same_tools():
    from multistream.engine.tools import demo_tools

    call = '<call>calculator({"expression": "17 - 5"})</call>'
    base = FakeBaseline([f"Let me check.\n{call}", "It is 12."], ttft=1.0, e2e=2.0)
    model = scripted({"call": 'calculator({"expression": "17 - 5"})'}, {"call": 3})
    c = MockContenders(model, base, spy=True)
    case = PromptCase("a", "What is 17 minus 5?", "12", system="")
    rec = run_case(c, c.core(), base, case, rate=40.0, single_first=False, tools=demo_tools())
    n = len(model.tok.encode_message(case.prompt))
    assert base.arrivals == [last_token_at(n, 40.0), None]  # the question's clock; the result turn follows at once
    assert base.calls[1][-1] == {"role": "user", "content": "<tool>12</tool>"}
    assert rec["single"]["correct"] and rec["single"]["e2e"] > 4.0
    assert [t for stream, t in c.cores[-1].sent if stream == "tool"] == ["12"]  # the engine ran the model's call too
