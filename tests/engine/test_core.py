"""The engine against the slow reference decoder, on tiny random models."""

import pytest
import torch
from conftest import FAMILIES

from multistream.engine.core import EngineConfig, EngineCore, EngineError
from multistream.engine.sampling import SamplingParams
from multistream.engine.session import StreamParams
from multistream.reference import reference_decode
from multistream.rows import RowGrid, pack_grid
from multistream.streams import Layout
from multistream.timeline import Segment, Timeline

INPUTS = [("user", "What is 2+3?", 0), ("tool", "the doc says 5", 3), ("system", "hurry", 9)]
PREFIX = "Be brief."


def talkative(model, bias=2.0):
    """Make a random tiny model speak now and then: lower the silence logit a bit."""
    with torch.no_grad():
        head = model.base.get_output_embeddings()
        if head.weight is model.base.get_input_embeddings().weight:
            return model
        head.weight[model.tok.silence_id] -= bias * head.weight[model.tok.silence_id].sign()
    return model


def run_engine(engine, inputs, rows, sid=None, prefix=PREFIX):
    """Send each input when the session reaches its row (a session starts at its first input, row 0)."""
    sid = engine.open(sid, prefix=prefix)
    sent = set()
    row = 0
    while row < rows - 1:
        for k, (stream, text, at) in enumerate(inputs):
            if at == row and k not in sent:
                engine.send(sid, stream, text)
                sent.add(k)
        engine.step()
        row = engine.sessions[sid].row
    return sid


def reference(model, inputs, rows, speak_rule="likely"):
    timeline = Timeline(model.layout.names, [Segment(s, t, start_row=r) for s, t, r in inputs], prefix=PREFIX)
    return reference_decode(model, timeline, rows=rows, speak_rule=speak_rule).tokens


RULES = ["invisible", "visible"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("rule", RULES)
def test_engine_equals_reference_decoder(wrap, family, rule):
    model = talkative(wrap(family, silence=rule))
    rows = 16
    expected = reference(model, INPUTS, rows)
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    sid = run_engine(engine, INPUTS, rows)
    got = engine.grid(sid)
    assert torch.equal(got, expected)
    outs = [i for i, s in enumerate(model.layout) if s.kind == "output"]
    assert (got[1:, outs] != model.tok.silence_id).any(), "the test model never spoke: the comparison would be weak"
    kept = int(engine.cache.lengths[engine.sessions[sid].slot])
    prefix = len(model.tok.encode_prefix(PREFIX))
    if rule == "invisible":  # the cache holds the prefix and the spoken tokens of the rows fed, no silence
        assert kept == prefix + int((got[:-1] != model.tok.silence_id).sum())
    else:
        assert kept == prefix + got[:-1].numel()


def test_engine_follows_the_reference_under_each_speak_rule(wrap):
    """A hesitant model: its silence logit is set to all speech together (log-sum-exp) plus or minus 0.3, so
    silence is every row's likeliest token, and likelier than all speech on about half of them: the argmax rule
    never speaks, the likely rule speaks on the other half; the engine does what the reference does under both."""
    model = wrap("llama")
    sil = model.tok.silence_id

    def hesitate(module, args, logits):
        speech = logits.float().clone()
        speech[..., sil] = float("-inf")
        margin = torch.where(logits[..., 0] > logits[..., 1], 0.3, -0.3)
        logits = logits.clone()
        logits[..., sil] = (speech.logsumexp(-1) + margin).to(logits.dtype)
        return logits

    model.base.get_output_embeddings().register_forward_hook(hesitate)
    rows, outs = 16, [i for i, s in enumerate(model.layout) if s.kind == "output"]
    grids = {}
    for speak_rule in ("likely", "argmax"):
        engine = EngineCore(model, EngineConfig(idle_rows=None, speak_rule=speak_rule))
        grids[speak_rule] = engine.grid(run_engine(engine, INPUTS, rows))
        assert torch.equal(grids[speak_rule], reference(model, INPUTS, rows, speak_rule))
    silent = {r: float((g[1:, outs] == model.tok.silence_id).float().mean()) for r, g in grids.items()}
    assert silent["argmax"] == 1.0 and 0.1 < silent["likely"] < 0.9, silent
    with pytest.raises(ValueError, match="speak_rule"):
        EngineConfig(speak_rule="loudest")


@pytest.mark.parametrize("rule", RULES)
def test_batched_sessions_equal_each_session_alone(wrap, rule):
    model = talkative(wrap("qwen2", silence=rule))
    rows = 12
    plans = {  # session -> (prefix, inputs, the step at which it opens)
        "a": (PREFIX, INPUTS, 0),
        "b": ("", [("user", "Tell me a story about a cat", 0)], 2),
        "c": ("Be kind and brief, please.", [("tool", "x", 0), ("user", "hi", 4)], 5),
    }
    alone = {}
    for sid, (prefix, inputs, _) in plans.items():
        e = EngineCore(model, EngineConfig(idle_rows=None))
        run_engine(e, inputs, rows, sid, prefix=prefix)
        alone[sid] = e.grid(sid)
    # all three in one engine, opened at different steps: different prefixes and lengths in one forward
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    together, sent = {}, set()
    for step in range(rows + 12):
        for sid, (prefix, inputs, opened) in plans.items():
            if step == opened:
                engine.open(sid, prefix=prefix)
            if step >= opened and sid not in together:
                row = engine.sessions[sid].row if sid in engine.sessions else 0
                for k, (stream, text, at) in enumerate(inputs):
                    if at == row and (sid, k) not in sent:
                        engine.send(sid, stream, text)
                        sent.add((sid, k))
        engine.step()
        for sid in plans:
            if sid in engine.sessions and engine.sessions[sid].row == rows - 1 and sid not in together:
                together[sid] = engine.grid(sid)
    assert set(together) == set(plans)
    for sid in plans:
        assert torch.equal(together[sid], alone[sid]), sid


def with_silence_bias(model, bias):
    """Add ``bias`` to the silence logit (a head bias), to make a random tiny model quieter."""
    head = model.base.get_output_embeddings()
    vec = torch.zeros(head.weight.shape[0])
    vec[model.tok.silence_id] = bias
    head.bias = torch.nn.Parameter(vec)
    return model


def speaks_first_at(model, inputs, rows, lo=6):
    """Tune the silence bias so that the model's first words come at a chosen row >= ``lo`` while it reads.

    Runs once held silent, measures per row how close the outputs came to speaking, and
    sets the bias between the record margin at a row >= ``lo`` and every earlier margin.
    """
    for seed in range(20):
        t = _record_row(model, inputs, rows, lo, seed)
        if t is not None:
            return t + 1  # logits at row t choose the token of row t + 1
    raise AssertionError("no random model came closer to speaking at a later row than before")


def _record_row(model, inputs, rows, lo, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        model.stream_embed.weight.normal_(0, 0.5)
        for q in model.base.parameters():  # a sharper random model: its choices depend on what it reads
            if q.dim() >= 2:
                q.normal_(0, 0.3)
    with_silence_bias(model, 1e4)
    quiet = EngineCore(model, EngineConfig(idle_rows=None))
    run_engine(quiet, inputs, rows, "q")
    grid = quiet.grid("q")
    prefix = torch.tensor(model.tok.encode_prefix(PREFIX))
    packed = pack_grid(RowGrid(prefix, grid, 0), model.row_format)
    with_silence_bias(model, 0.0)
    with torch.no_grad():
        logits = model(packed.input_ids[None], packed.stream_ids[None], packed.position_ids[None],
                       visible=packed.visible[None]).logits[0]
    outs = torch.tensor([i for i, s in enumerate(model.layout) if s.kind == "output"])
    is_out = torch.isin(packed.stream_ids, outs) & (packed.position_ids >= len(prefix))
    at = is_out.nonzero().squeeze(1)[: rows * len(outs)].view(rows, len(outs))  # outputs: every row, stream order
    sil = model.tok.silence_id
    other = logits[at].clone()
    other[..., sil] = float("-inf")
    # the speak rule `likely`: a stream speaks once all speech together outweighs silence
    margin = (other.float().logsumexp(-1) - logits[at][..., sil].float()).max(-1).values
    records = [t for t in range(lo, rows - 10) if margin[t] > margin[:t].max() + 1e-3]
    if not records:
        return None
    t = records[-1]
    with_silence_bias(model, float(margin[t] + margin[:t].max()) / 2)
    return t


@pytest.mark.parametrize("speculative", [4, 16])
@pytest.mark.parametrize("rule", RULES)
def test_speculative_ingest_equals_step_by_step(wrap, speculative, rule):
    model = wrap("qwen2", silence=rule)
    long_doc = "the quick brown fox jumps over the lazy dog " * 3
    inputs = [("user", "Summarise:", 0), ("tool", long_doc, 0)]  # both queued at once: spec jumps rows
    rows = 60
    first = speaks_first_at(model, inputs, rows)
    plain = EngineCore(model, EngineConfig(idle_rows=None))
    run_engine(plain, inputs, rows, "x")
    assert min(plain.sessions["x"].first_output_row.values()) == first  # it speaks mid-document: rollback needed
    spec = EngineCore(model, EngineConfig(idle_rows=None, speculative=speculative))
    run_engine(spec, inputs, rows, "x")
    assert spec.steps < plain.steps, "speculation fed no more than one row per forward"
    a, b = spec.grid("x"), plain.grid("x")  # spec may run past the last row: compare the rows both have
    outs = [i for i, s in enumerate(model.layout) if s.kind == "output"]
    assert a.shape[0] >= b.shape[0]
    assert torch.equal(a[: b.shape[0] - 1], b[:-1]) and torch.equal(a[b.shape[0] - 1, outs], b[-1, outs])
    if rule == "invisible":  # rolled-back rows leave nothing behind: the cache holds what was spoken and read
        prefix = len(model.tok.encode_prefix(PREFIX))
        assert int(spec.cache.lengths[0]) == prefix + int((a[:-1] != model.tok.silence_id).sum())


@pytest.mark.parametrize("rule", RULES)
def test_bulk_input_reads_many_rows_per_forward_with_outputs_silent(wrap, rule):
    model = talkative(wrap("llama", silence=rule))
    engine = EngineCore(model, EngineConfig(idle_rows=None, bulk_chunk=8))
    sid = engine.open(prefix=PREFIX)
    doc = "the quick brown fox jumps over the lazy dog " * 2
    n = len(model.tok.encode_message(doc))
    engine.send(sid, "tool", doc, bulk=True)
    engine.step()
    while engine.sessions[sid].inputs[2].queue:
        engine.step()
    assert engine.steps == -(-n // 8)
    grid = engine.grid(sid)
    outs = [i for i, s in enumerate(model.layout) if s.kind == "output"]
    assert (grid[: n, outs] == model.tok.silence_id).all()
    assert grid[:n, 2].tolist() == model.tok.encode_message(doc)
    prefix = len(model.tok.encode_prefix(PREFIX))
    assert int(engine.cache.lengths[0]) == prefix + (n if rule == "invisible" else n * len(model.layout))


def test_bulk_text_queued_behind_bulk_text_is_read_in_bulk_too(wrap):
    model = talkative(wrap("llama"))
    engine = EngineCore(model, EngineConfig(idle_rows=None, bulk_chunk=64))
    sid = engine.open(prefix=PREFIX)
    docs = ["the quick brown fox jumps over the lazy dog", "and then it ran away into the woods"]
    for doc in docs:
        engine.send(sid, "tool", doc, bulk=True)
    n = sum(len(model.tok.encode_message(d)) for d in docs)
    engine.step()  # both messages (and the row past them) in one forward, outputs silent
    assert not engine.sessions[sid].inputs[2].queue and engine.steps == 1
    outs = [i for i, s in enumerate(model.layout) if s.kind == "output"]
    assert (engine.grid(sid)[:n, outs] == model.tok.silence_id).all()
    engine = EngineCore(model, EngineConfig(idle_rows=None, bulk_chunk=64))
    sid = engine.open(prefix=PREFIX)
    engine.send(sid, "tool", docs[0], bulk=True)
    engine.send(sid, "tool", docs[1])  # not bulk: the first message in bulk, then this one row by row
    engine.step()
    assert len(engine.sessions[sid].inputs[2].queue) == len(model.tok.encode_message(docs[1]))


@pytest.mark.parametrize("rule", RULES)
def test_bulk_reading_equals_step_by_step_afterwards(wrap, rule):
    """What a session says after a bulk document is what it says after reading it row by row, held silent."""
    model = talkative(wrap("qwen2", silence=rule))
    doc = "the quick brown fox jumps over the lazy dog"
    n = len(model.tok.encode_message(doc))
    grids = []
    for bulk in (True, False):
        engine = EngineCore(model, EngineConfig(idle_rows=None, bulk_chunk=5))
        sid = engine.open(prefix=PREFIX)
        if not bulk:
            for o in ("think", "answer", "call"):
                engine.mute(sid, o)
        engine.send(sid, "tool", doc, bulk=bulk)
        while engine.sessions.get(sid) is None or engine.sessions[sid].row < n - (not bulk):
            engine.step()
        for o in ("think", "answer", "call"):  # free from the last document row on, as after bulk reading
            engine.mute(sid, o, False)
        while engine.sessions[sid].row < n:
            engine.step()
        engine.send(sid, "user", "What does it say?")
        while engine.sessions[sid].row < n + 14:
            engine.step()
        grids.append(engine.grid(sid))
    assert torch.equal(grids[0], grids[1])
    outs = [i for i, s in enumerate(model.layout) if s.kind == "output"]
    assert (grids[0][n:, outs] != model.tok.silence_id).any(), "the model never spoke after the document"


def test_interrupt_enters_user_stream_at_the_next_row(wrap):
    model = talkative(wrap("llama"))
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    sid = engine.open(prefix=PREFIX)
    engine.send(sid, "user", "Tell me about cats")
    engine.step()
    while engine.sessions[sid].pending_input:
        engine.step()
    engine.step()
    row = engine.sessions[sid].row
    engine.send(sid, "user", "No, dogs!")  # arrives between steps: fed at the very next row
    events = engine.step()
    user = [e for e in events if e.stream == "user" and e.type == "token"]
    assert user and user[0].row == row and user[0].forced
    assert engine.grid(sid)[row, 1].item() == model.tok.encode_text("No, dogs!")[0]


def test_abort_stops_one_stream_only_and_budget_and_stop_strings_hold(wrap):
    model = wrap("llama")
    # a one-layer toy: force answers by making every output stream very likely to speak
    with torch.no_grad():
        model.base.get_input_embeddings().weight[model.tok.silence_id] *= 0  # silence is no more likely than anything
    sampled = SamplingParams(temperature=1.0, seed=1)
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    sid = engine.open(params={
        "think": StreamParams(sampled),
        "answer": StreamParams(sampled, max_tokens=3),
        "call": StreamParams(sampled),
    })
    engine.send(sid, "user", "go")
    events = []
    for _ in range(6):
        events += engine.step()
    call_before = [e for e in events if e.stream == "call" and e.type == "token"]
    assert call_before, "call never spoke before the abort: the check below would be empty"
    engine.abort(sid, "call")
    for _ in range(20):
        events += engine.step()
    answer = [e for e in events if e.stream == "answer" and e.type == "token"]
    assert len(answer) == 3  # it spoke, and its budget of 3 tokens stopped it
    call_after = [e for e in events if e.stream == "call" and e.type == "token" and e.row > 7]
    assert call_after == []
    think_rows = {e.row for e in events if e.stream == "think" and e.type == "token"}
    assert any(r > 8 for r in think_rows), "think kept going after call was aborted"


def test_stop_string_ends_the_message(wrap):
    model = wrap("llama")
    with torch.no_grad():
        model.base.get_input_embeddings().weight[model.tok.silence_id] *= 0
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    params = StreamParams(SamplingParams(temperature=1.0, seed=3))
    sid = engine.open(params={"think": params, "answer": params, "call": params})
    engine.send(sid, "user", "go")
    events = []
    for _ in range(12):
        events += engine.step()
    first = next(e for e in events if e.type == "token" and not e.forced and e.text)  # (a byte piece has no text yet)
    # rerun with that token's text as a stop string: the message ends right after it
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    stop = StreamParams(params.sampling, stop=(first.text,))
    sid = engine.open(params={"think": params, "answer": params, "call": params} | {first.stream: stop})
    engine.send(sid, "user", "go")
    ev2 = []
    for _ in range(12):
        ev2 += engine.step()
    ends = [e for e in ev2 if e.stream == first.stream and e.type == "message_end"]
    assert ends and ends[0].row == first.row + 1 and ends[0].forced and first.text not in ends[0].text


def test_bad_requests_are_refused_without_side_effects(wrap):
    engine = EngineCore(wrap("llama"), EngineConfig(max_sessions=1))
    sid = engine.open("a")
    with pytest.raises(EngineError, match="unknown input stream"):
        engine.send(sid, "answer", "hi")
    with pytest.raises(EngineError, match="unknown session"):
        engine.send("nope", "user", "hi")
    with pytest.raises(EngineError, match="already open"):
        engine.open("a")
    with pytest.raises(EngineError, match="sessions are open"):
        engine.open("b")
    engine.send(sid, "user", "still fine")
    assert any(e.type == "token" for e in engine.step())


@pytest.mark.parametrize("rule", RULES)
def test_sessions_free_their_cache_and_slots_on_close(wrap, rule):
    model = talkative(wrap("qwen2", silence=rule))
    rows = 14
    alone = EngineCore(model, EngineConfig(idle_rows=None))
    run_engine(alone, [("user", "hello there", 0)], rows, "b", prefix="")
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    a, b = engine.open("a", prefix=PREFIX), engine.open("b")  # a holds slot 0, b slot 1
    engine.send(a, "user", "something else entirely")
    engine.send(b, "user", "hello there")
    for _ in range(3):
        engine.step()
    assert engine.sessions["b"].slot == 1
    engine.close(a)
    events = engine.step()
    assert any(e.type == "closed" and e.session == "a" for e in events)
    assert set(engine.sessions) == {"b"} and engine.sessions["b"].slot == 0  # b's cache moved into slot 0
    while engine.sessions["b"].row < rows - 1:
        engine.step()
    # what b says after the move comes from its moved cache: it must be what b says alone, from the same cache
    assert torch.equal(engine.grid(b), alone.grid("b"))
    n = int(alone.cache.lengths[0])
    assert int(engine.cache.lengths[0]) == n
    for mine, ref in zip(engine.cache.keys + engine.cache.values, alone.cache.keys + alone.cache.values):
        torch.testing.assert_close(mine[0, :, :n], ref[0, :, :n], rtol=1e-4, atol=1e-5)
    outs = [i for i, st in enumerate(model.layout) if st.kind == "output"]
    assert (alone.grid("b")[4:, outs] != model.tok.silence_id).any(), "b never spoke after the move: a weak check"


@pytest.mark.parametrize("rule", RULES)
def test_any_layout_works(tokenizer, rule):
    from conftest import make_base

    from multistream.model import MultiStreamModel

    layout = Layout.parse("user:input,answer:output")
    model = talkative(MultiStreamModel.wrap(make_base("qwen2", len(tokenizer) + 8), tokenizer, layout, silence=rule).eval())
    rows = 10
    inputs = [("user", "What is 2+3?", 0)]
    expected = reference(model, inputs, rows)
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    assert torch.equal(engine.grid(run_engine(engine, inputs, rows)), expected)


def test_token_pieces_add_up_to_each_message(wrap):
    """Every token event carries the new text it completes; a message's pieces add up to its message_end text."""
    model = wrap("llama")
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    params = StreamParams(SamplingParams(temperature=1.0, seed=5), max_tokens=6)  # budgets end the messages
    sid = engine.open(params={"think": params, "answer": params, "call": params})
    engine.send(sid, "user", "Zoë's café 🍮, then a longer question about it")
    events = []
    for _ in range(40):
        events += engine.step()
    ended, pending = 0, {}
    for e in events:
        if e.type == "token":
            pending[e.stream] = pending.get(e.stream, "") + e.text
        elif e.type == "message_end":
            text = pending.pop(e.stream, "")
            assert e.text.startswith(text) and (e.text == text or e.text.endswith("\ufffd"))
            ended += 1
    assert ended >= 2 and "user" not in pending


@pytest.mark.parametrize("question", ["hi there", ""])  # ("": one token queued, the end)
def test_speculation_reads_one_row_past_the_input_so_a_reply_starts_in_the_same_forward(question):
    from .test_scheduler import ScriptedModel

    n = len(ScriptedModel({}, {}).tok.encode_message(question))  # rows of the question, its end token last
    events = {}
    for spec in (0, 16):
        model = ScriptedModel({"answer": "hello"}, {"answer": n + 1})  # the first row that can see the end token
        engine = EngineCore(model, EngineConfig(idle_rows=None, speculative=spec))
        sid = engine.open("s")
        engine.send(sid, "user", question)
        got = []
        while not any(e.stream == "answer" and e.type == "message_end" for e in got):
            got += engine.step()
            if spec and not any(e.stream == "answer" for e in got):
                raise AssertionError(f"no answer token after the first forward (rows {engine.sessions[sid].row})")
        events[spec] = [(e.row, e.stream, e.type, e.token_id) for e in got]
    assert events[16] == events[0]  # the same rows and tokens as step by step


@pytest.mark.parametrize("speaks_at", [0, 1])  # rows after the end row: the end row's outputs speak, or not
def test_a_bulk_question_is_read_with_the_row_past_it_so_a_reply_starts_in_the_same_forward(speaks_at):
    """Bulk reading of a complete message costs one forward up to the reply, as a prefill does; the row past the end
    is kept only when the end row's outputs stay silent, so the events are those of reading it row by row."""
    from .test_scheduler import ScriptedModel

    question = "a question of a few words, complete"
    n = len(ScriptedModel({}, {}).tok.encode_message(question))  # rows 0 .. n-1, the end token at row n-1
    events, forwards = {}, {}
    for bulk in (False, True):
        model = ScriptedModel({"answer": "hello"}, {"answer": n + speaks_at})
        engine = EngineCore(model, EngineConfig(idle_rows=None, speculative=0, bulk_chunk=64))
        sid = engine.open("s")
        engine.send(sid, "user", question, bulk=bulk)
        got = []
        while not any(e.stream == "answer" and e.type == "message_end" for e in got):
            got += engine.step()
            if bulk and engine.steps == 1:
                first = [e.row for e in got if e.stream == "answer"]
                assert first == [n + speaks_at], first  # (speaking on the row past the end row: that row rolled back)
        events[bulk] = [(e.row, e.stream, e.type, e.token_id) for e in got]
        forwards[bulk] = model.forwards
    assert events[True] == events[False]
    assert forwards[True] == forwards[False] - (n - 1 + speaks_at)  # the rows up to the reply in one forward


def test_speculation_leaves_a_message_arriving_piece_by_piece_on_the_rows_it_would_take_step_by_step():
    from .test_scheduler import ScriptedModel

    rows = {}
    for spec in (0, 16):
        model = ScriptedModel({"answer": "ok"}, {"answer": 40})
        engine = EngineCore(model, EngineConfig(idle_rows=None, speculative=spec))
        sid = engine.open("s")
        ids = model.tok.encode_message("one piece at a time, as a client types")
        got = []
        for k in range(len(ids)):  # a token per step: the message ends with the last one
            engine.send_tokens(sid, "user", ids[k : k + 1])
            got += engine.step()
        for _ in range(12):
            got += engine.step()
        rows[spec] = [(e.row, e.type, e.token_id) for e in got if e.stream == "user"]
        assert len(rows[spec]) == len(ids)
    assert rows[16] == rows[0]


def test_speculation_reads_past_a_held_input_and_the_row_after_it():
    from .test_scheduler import ScriptedModel

    events = {}
    for spec in (0, 16):
        model = ScriptedModel({"answer": "ok"}, {"answer": 9})  # the earliest row after the held result ends
        engine = EngineCore(model, EngineConfig(idle_rows=None, speculative=spec))
        sid = engine.open("s")
        engine.send(sid, "user", "")  # row 0: the session starts
        engine.step()
        engine.send(sid, "tool", "42", not_before=5)  # enters at row 5, not before
        got, steps = [], 0
        while not any(e.stream == "answer" for e in got):
            got += engine.step()
            steps += 1
        events[spec] = ([(e.row, e.stream, e.token_id) for e in got], steps)
    assert events[16][0] == events[0][0] and events[16][1] == 1 < events[0][1]
