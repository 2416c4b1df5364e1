"""One bad session never hurts another: per-session transactions, validation at the edge, a bounded cache."""

import math

import pytest
import torch

import multistream.engine.core as core_module
from multistream.engine.core import EngineConfig, EngineCore, EngineError
from multistream.engine.sampling import SamplingParams
from multistream.engine.session import StreamParams

from .test_core import talkative

ROWS = 12
PLANS = {"a": ("Be brief.", "What is 2+3?"), "bad": ("", "poison pill"), "c": ("Be kind.", "Tell me a story")}
BAD_SEED = 666  # the failing session's marker in the sampling-failure test


def drive(engine, sids, rows=ROWS):
    """Open ``sids`` in one step, send each its question, step ``rows`` times; returns every event."""
    for sid in sids:
        prefix, question = PLANS[sid]
        params = {"answer": StreamParams(SamplingParams(temperature=1.0, seed=BAD_SEED))} if sid == "bad" else None
        engine.open(sid, prefix=prefix, params=params)
        engine.send(sid, "user", question)
    events = []
    for _ in range(rows):
        events += engine.step()
    return events


def good_grids_alone(model):
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    drive(engine, ["a", "c"])
    return {sid: engine.grid(sid) for sid in ("a", "c")}


def assert_failed_alone(engine, events, alone, code="session_failed"):
    bad = [e for e in events if e.session == "bad"]
    assert [e.type for e in bad[-2:]] == ["error", "closed"], bad[-3:]
    assert bad[-2].code == code and bad[-1].code == code and bad[-2].text
    assert "bad" not in engine.sessions and "bad" not in engine._live
    for sid in ("a", "c"):  # the others advanced exactly as if "bad" had never been there
        assert torch.equal(engine.grid(sid), alone[sid]), sid


def test_a_failure_in_one_sessions_sampling_fails_that_session_alone(wrap, monkeypatch):
    model = talkative(wrap("llama"))
    alone = good_grids_alone(model)
    real_sample = core_module.sample
    calls = {"bad": 0}

    def flaky(logits, params, generators, silence=None):
        if any(p.seed == BAD_SEED for p in params):
            calls["bad"] += 1
            if calls["bad"] == 3:  # fail mid-session, after it has advanced a few rows
                raise RuntimeError("probability tensor contains either inf, nan or element < 0")
        return real_sample(logits, params, generators, silence)

    monkeypatch.setattr(core_module, "sample", flaky)
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    events = drive(engine, ["a", "bad", "c"])  # "bad" sits between the two in the batch
    assert calls["bad"] == 3
    assert_failed_alone(engine, events, alone)
    assert engine.cache.in_use == 2 and int(engine.cache.lengths[2:].sum()) == 0


def test_a_failing_forward_is_narrowed_down_to_its_session(wrap):
    model = talkative(wrap("llama"))
    alone = good_grids_alone(model)
    others = {t for sid in ("a", "c") for text in PLANS[sid] for t in model.tok.encode_text(text)}
    poison = torch.tensor(sorted(set(model.tok.encode_text("poison pill")) - others))
    user = model.layout.index("user")

    class Fussy(torch.nn.Module):  # the same model, but a forward that holds the poison raises
        def __init__(self):
            super().__init__()
            self.inner, self.layout, self.tok, self.base, self.row_format = model, model.layout, model.tok, model.base, model.row_format
            self.device = model.device

        def forward(self, ids, streams, *args, **kw):
            if torch.isin(ids[streams == user], poison).any():  # only the bad session's question holds these
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return self.inner(ids, streams, *args, **kw)

    engine = EngineCore(Fussy(), EngineConfig(idle_rows=None))
    events = drive(engine, ["a", "bad", "c"])
    assert_failed_alone(engine, events, alone)


def test_a_session_that_cannot_open_gets_an_error_and_the_others_open(wrap, monkeypatch):
    engine = EngineCore(wrap("llama"), EngineConfig(idle_rows=None))
    real = SamplingParams.generator

    def generator(self):
        if self.seed == BAD_SEED:
            raise RuntimeError("no generator for you")
        return real(self)

    monkeypatch.setattr(SamplingParams, "generator", generator)
    events = drive(engine, ["a", "bad", "c"], rows=3)
    bad = [e for e in events if e.session == "bad"]
    assert [(e.type, e.code) for e in bad] == [("error", "session_failed"), ("closed", "session_failed")]
    assert set(engine.sessions) == {"a", "c"} and engine._live == {"a", "c"}
    assert all(engine.sessions[s].row == 3 for s in ("a", "c"))
    engine.open("bad")  # its id is free again


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"temperature": 1e-39}, "temperature"),  # divides logits into inf, then NaN
        ({"temperature": 5e-4}, "temperature"),
        ({"temperature": 101.0}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"seed": 2**64}, "seed"),  # torch.Generator.manual_seed refuses it
        ({"seed": 2**63}, "seed"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": math.nan}, "top_p"),
        ({"top_k": -3}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
    ],
)
def test_sampling_parameters_are_checked_when_made(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{"temperature": 1.0, **kwargs})


def test_sampling_parameters_at_their_bounds_are_accepted():
    for p in (SamplingParams(0.0), SamplingParams(1e-3, seed=0), SamplingParams(100.0, seed=2**63 - 1, top_p=1e-9)):
        assert p.greedy or p.generator() is not None


@pytest.mark.parametrize(
    "kwargs, field",
    [({"max_tokens": 0}, "max_tokens"), ({"stop": ("",)}, "stop"), ({"stop": ("x" * 257,)}, "stop"),
     ({"stop": tuple("abcdefghijklmnopq")}, "stop"), ({"stop": "end"}, "stop"), ({"stop": (3,)}, "stop")],
)
def test_stream_parameters_are_checked_when_made(kwargs, field):
    with pytest.raises(ValueError, match=field):
        StreamParams(**kwargs)


def test_engine_errors_carry_a_code(wrap):
    engine = EngineCore(wrap("llama"), EngineConfig(max_sessions=1, max_rows=50))
    sid = engine.open("a")
    cases = [
        (lambda: engine.send("nope", "user", "hi"), "unknown_session"),
        (lambda: engine.send(sid, "answer", "hi"), "unknown_stream"),
        (lambda: engine.abort(sid, "user"), "unknown_stream"),
        (lambda: engine.open("a"), "session_exists"),
        (lambda: engine.open("b"), "too_many_sessions"),
    ]
    for call, code in cases:
        with pytest.raises(EngineError) as err:
            call()
        assert err.value.code == code
    engine.close(sid)
    engine.step()
    for kw in ({"params": {"answer": "hot"}}, {"max_rows": 51}, {"max_rows": 1}):
        with pytest.raises(EngineError) as err:
            engine.open("b", **kw)
        assert err.value.code == "invalid_params"
    with pytest.raises(EngineError) as err:
        EngineCore(wrap("llama"), EngineConfig(max_prefix_tokens=3)).open(prefix="a long system prompt indeed")
    assert err.value.code == "prefix_too_long"


def test_a_session_row_limit_is_its_own(wrap):
    engine = EngineCore(wrap("llama"), EngineConfig(idle_rows=None, max_rows=100))
    engine.open("short", max_rows=5)
    engine.open("long")
    for sid in ("short", "long"):
        engine.send(sid, "user", "hello")
    events = []
    for _ in range(8):
        events += engine.step()
    closed = [e for e in events if e.type == "closed"]
    assert [(e.session, e.code, e.row) for e in closed] == [("short", "row_limit", 4)]
    assert engine.sessions["long"].row == 8


def test_the_cache_gives_memory_back_when_sessions_close(wrap):
    engine = EngineCore(wrap("llama"), EngineConfig(idle_rows=None, capacity=16))
    start = engine.cache.allocated_tokens
    sids = [engine.open(prefix="A system prompt that takes a few tokens. " * 3) for _ in range(9)]
    for sid in sids:
        engine.send(sid, "user", "a question that is long enough to fill a few rows " * 2, bulk=True)
    for _ in range(4):
        engine.step()
    during = engine.cache.allocated_tokens
    assert during >= 9 * 64 > 4 * start
    for sid in sids[1:]:
        engine.close(sid)
    engine.step()
    one = engine.cache.allocated_tokens
    assert one < during // 4 and one >= int(engine.cache.lengths[0])
    engine.close(sids[0])
    engine.step()
    assert engine.cache.allocated_tokens == start and engine.cache.slots == 1


def test_the_cache_has_a_ceiling_and_a_session_past_it_fails_alone(wrap):
    model = wrap("llama")
    prefix = "A system prompt of some length, to fill the cache."
    p = len(model.tok.encode_prefix(prefix))
    ceiling = 4 * (p + 40)
    engine = EngineCore(model, EngineConfig(idle_rows=None, capacity=16, max_kv_tokens=ceiling))
    for sid in ("a", "b", "c"):
        engine.open(sid, prefix=prefix)
        engine.send(sid, "user", "hi")
    engine.send("c", "tool", "a long document " * 40, bulk=True)  # c's cache grows past its share
    events = []
    for _ in range(12):
        events += engine.step()
        assert engine.cache.allocated_tokens <= ceiling
    c = [e for e in events if e.session == "c" and e.type in ("error", "closed")]
    assert [(e.type, e.code) for e in c] == [("error", "out_of_memory"), ("closed", "out_of_memory")]
    assert "max_kv_tokens" in c[0].text
    assert set(engine.sessions) == {"a", "b"} and all(engine.sessions[s].row == 12 for s in ("a", "b"))
    # a new session that would not fit is refused at the door, with a code
    big = EngineCore(model, EngineConfig(capacity=16, max_kv_tokens=2 * (p + 8)))
    big.open("x", prefix=prefix)
    big.open("y", prefix=prefix)
    with pytest.raises(EngineError) as err:
        big.open("z", prefix=prefix)
    assert err.value.code == "out_of_memory"


def test_the_ceiling_must_hold_the_first_slot():
    with pytest.raises(ValueError, match="max_kv_tokens"):
        EngineConfig(capacity=256, max_kv_tokens=100)
