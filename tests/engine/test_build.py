"""The one engine assembly (:func:`multistream.engine.build.build_engine`): a name or a model, one warm-up that
leaves nothing behind."""

from multistream.engine.build import WARM_UP_ROWS, build_engine, warm_up
from multistream.engine.core import EngineConfig, EngineCore
from multistream.engine.runner import Input, run_session
from multistream.zoo import tiny_model


def answer(core: EngineCore) -> dict:
    return run_session(core, [Input("user", "What is 6 times 7?")], prefix="Be brief.", max_rows=24).streams


def test_a_name_is_loaded_and_a_model_taken_as_it_is():
    core = build_engine("tiny", EngineConfig(idle_rows=None, max_sessions=3), dtype="float32", warm=False)
    assert isinstance(core, EngineCore) and core.config.max_sessions == 3
    model = tiny_model()
    assert build_engine(model, warm=False).model is model


def test_the_warm_up_leaves_nothing_a_session_could_see():
    model = tiny_model()
    cold = build_engine(model, EngineConfig(idle_rows=None), warm=False)
    warm = build_engine(model, EngineConfig(idle_rows=None))
    assert not warm.sessions and not warm.has_work()  # the throwaway session is closed
    assert answer(warm) == answer(cold)  # greedy: the same tokens


def test_the_warm_up_fits_an_engine_with_fewer_rows_than_it_runs():
    core = build_engine(tiny_model(), EngineConfig(idle_rows=None, max_rows=2), warm=False)
    assert 2 < WARM_UP_ROWS and warm_up(core) >= 0.0 and not core.sessions
