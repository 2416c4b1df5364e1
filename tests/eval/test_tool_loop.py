"""The one single-stream tool loop (:func:`multistream.evals.twin.tool_loop`): one round limit and one budget for
every caller, the evaluations' and the demo's."""

from conftest import make_tokenizer

from eval.test_mechanics import FakeBaseline
from eval.test_skills import calculator_tools
from multistream.demo import SCENES, right, run_twin
from multistream.evals.twin import MAX_TOOL_ROUNDS, tool_loop

CALL = '<call>calculator({"expression": "6 * 7"})</call>'


def test_calls_are_answered_in_new_turns_up_to_the_round_limit_within_one_budget():
    base = FakeBaseline([CALL], steps=3)  # a twin that never stops calling
    r, added = tool_loop(base, [{"role": "user", "content": "6 times 7?"}], calculator_tools(), budget=20)
    assert len(base.calls) == 1 + MAX_TOOL_ROUNDS
    assert [m["role"] for m in added] == ["assistant", "user"] * MAX_TOOL_ROUNDS + ["assistant"]
    assert added[1] == {"role": "user", "content": "<tool>42</tool>"}
    assert base.budgets == [20, 17, 14] and r.steps == 9  # what is left of the one budget
    base = FakeBaseline([CALL], steps=3)
    r, added = tool_loop(base, [{"role": "user", "content": "6 times 7?"}], None, budget=20)
    assert len(base.calls) == 1 and len(added) == 1  # no tools: the call stands unanswered


def test_the_demos_twin_goes_through_the_loop():
    base = FakeBaseline([f"I will use the calculator for that.\n{CALL}", "The result is 42."], e2e=1.0)
    base.tokenizer, base.max_new_tokens = make_tokenizer(), 64
    twin = run_twin(base, SCENES[0], calculator_tools())
    assert base.calls[1][-1] == {"role": "user", "content": "<tool>42</tool>"} and twin["answer"] == "The result is 42."
    assert len(twin["lines"]) == 2 and twin["time"] >= 2.0
    # a correction is read once the reply it corrects is complete
    base = FakeBaseline(["2, 3, 4, 5,", "22, 23, 24, 25"], e2e=1.0)
    base.tokenizer, base.max_new_tokens = make_tokenizer(), 64
    twin = run_twin(base, SCENES[2], calculator_tools())
    assert base.calls[1][-2:] == [{"role": "assistant", "content": "2, 3, 4, 5,"},
                                  {"role": "user", "content": SCENES[2].correction}]
    assert right(SCENES[2], twin["answer"]) and twin["time"] == 2.0
