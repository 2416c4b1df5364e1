"""The listening evaluation on a scripted mock model and a scripted baseline: placement, the clock, scoring."""

import pytest

from eval.test_mechanics import FakeBaseline, MockContenders, scripted
from multistream.data import skills
from multistream.evals import builtin
from multistream.evals.cases import ListeningCase, load_cases, parse_case
from multistream.evals.listening import eval_listening, summarise

DOC = "Omar works as a pilot. Nadia lives in Graz. Omar lives in Lyon. Nadia has a pet turtle."
CASE = ListeningCase("l", "In which city does Nadia live?", DOC, "Graz", system="", fact="Nadia lives in Graz.")


def test_the_document_streams_on_the_untrusted_stream_after_the_question_and_the_twin_reads_it_whole():
    model = scripted({"answer": "Nadia lives in Graz."}, {"answer": 30})
    base = FakeBaseline(["<think>Looking for Nadia.</think>Nadia lives in Graz."], ttft=0.5, e2e=2.0)
    c = MockContenders(model, base, spy=True)
    c.max_rows = 600  # the scripted model steps fast: room for the whole document to arrive
    rate = 2000.0
    r = eval_listening(c, [CASE], rate, show_progress=False, warmup=False)
    core = c.cores[0]
    assert sorted(core.sent[:1]) == [("user", CASE.user)]  # the question first, then the document in pieces
    assert "".join(text for stream, text in core.sent if stream == "tool") == DOC
    assert {stream for stream, _ in core.sent} == {"user", "tool"}
    assert base.calls == [[{"role": "user", "content": f"{CASE.user}\n<tool>{DOC}</tool>"}]]  # as the twin was trained
    rec = r["cases"][0]
    tok = model.tok
    n, k = len(tok.encode_message(DOC)), len(tok.encode_text(DOC[: DOC.index(CASE.fact) + len(CASE.fact)]))
    assert (rec["document_tokens"], rec["fact_tokens"]) == (n, k)
    # the twin starts when the document is complete: (n - k) / rate after the fact, then its own time
    assert rec["single"]["from_fact"] == pytest.approx((n - k) / rate + 2.0, abs=1e-4)
    assert rec["single"]["first_token_from_fact"] == pytest.approx((n - k) / rate + 0.5, abs=1e-4)
    assert rec["multi"]["correct"] and rec["single"]["correct"]
    assert rec["multi"]["from_fact"] is not None and rec["multi"]["first_token_from_fact"] <= rec["multi"]["from_fact"]
    assert r["multi"]["accuracy"] == r["single"]["accuracy"] == 1.0 and r["n_both_correct"] == 1


def test_a_wrong_answer_counts_as_slower_than_any_right_one():
    records = [{"id": str(i), "document_after_fact_s": 1.0,
                "multi": {"correct": i < 1, "from_fact": 0.5, "first_token_from_fact": 0.2, "before_end": i < 1},
                "single": {"correct": True, "from_fact": 3.0, "first_token_from_fact": 2.0}} for i in range(3)]
    r = summarise(records)
    assert r["multi"]["from_fact_median"] is None  # two of three wrong: the median is a wrong one
    assert r["single"]["from_fact_median"] == 3.0 and r["from_fact_ratio"] is None
    assert r["multi"]["from_fact_median_both_correct"] == 0.5 and r["from_fact_ratio_both_correct"] == pytest.approx(1 / 6,
                                                                                                                     abs=1e-3)
    assert r["multi"]["before_end"] == pytest.approx(1 / 3, abs=1e-3) and r["n_both_correct"] == 1


def test_the_answer_bearing_text_must_be_in_the_document():
    with pytest.raises(ValueError, match="fact"):
        parse_case({"id": "x", "user": "q?", "document": "Ann lives in Oslo.", "fact": "Ann lives in Rome.",
                    "answer": "Rome"}, "listening")
    with pytest.raises(ValueError, match="answer"):
        parse_case({"id": "x", "user": "q?", "document": "Ann lives in Oslo.", "answer": "Rome"}, "listening")
    case = parse_case({"id": "x", "user": "Where does Ann live?", "document": "Bo lives in Rome. Ann lives in Rome.",
                       "answer": "Rome"}, "listening")
    assert case.answer_end == len("Bo lives in Rome")  # without a fact: the answer's first occurrence


def test_the_builtin_listening_suite_has_100_held_out_cases():
    cases, errors = load_cases(None, "listening")
    assert errors == [] and len(cases) >= 100
    raw = builtin.suites()["listening"]
    assert all(skills.held_out_item(c["item"]) for c in raw)
    assert len({c["item"] for c in raw}) == len(raw)
    for c in cases:
        assert c.fact in c.document and c.answer in c.fact and c.document.count(c.fact) == 1
        assert c.document.index(c.answer) > c.document.index(c.fact)  # its first occurrence is the fact's
