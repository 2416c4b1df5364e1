"""The scheduler on a scripted mock model: no transformer, fake logits chosen by (row, stream)."""

from types import SimpleNamespace

import torch
from conftest import make_tokenizer
from torch import nn

from multistream.engine.core import EngineConfig, EngineCore
from multistream.engine.sampling import SamplingParams
from multistream.engine.session import StreamParams
from multistream.rows import RowFormat
from multistream.streams import DEFAULT_LAYOUT
from multistream.text import StreamTokenizer


class ScriptedModel(nn.Module):
    """Says ``script[stream]`` (token ids) starting at row ``start[stream]``; silence otherwise."""

    def __init__(self, script: dict[str, str], start: dict[str, int], layout=DEFAULT_LAYOUT):
        super().__init__()
        self.layout = layout
        self.tok = StreamTokenizer.wrap(make_tokenizer())
        self.vocab = len(self.tok)
        cfg = SimpleNamespace(num_hidden_layers=1, num_key_value_heads=1, head_dim=2, hidden_size=2, num_attention_heads=1)
        self.base = SimpleNamespace(config=cfg, get_input_embeddings=lambda: nn.Embedding(self.vocab, 2))
        self.script = {self.layout.index(k): self.tok.encode_message(v) for k, v in script.items()}
        self.start = {self.layout.index(k): v for k, v in start.items()}
        self.forwards = 0
        self.prefix_len = 0
        self.row_format = RowFormat(tuple(self.layout.output_mask), self.tok.silence_id, "invisible")

    @property
    def device(self):
        return torch.device("cpu")

    def forward(self, ids, streams, pos, attention_mask, past_key_values, use_cache, logits_to_keep):
        self.forwards += 1
        b, n = ids.shape
        logits = torch.zeros(b, n, self.vocab)
        logits[..., self.tok.silence_id] = 20.0  # sure: silence outweighs all speech together
        for j in range(b):
            for q in range(n):
                s = int(streams[j, q])
                row = int(pos[j, q]) - self.prefix_len  # logits at row t choose row t + 1
                if s in self.script:
                    k = row + 1 - self.start[s]
                    if 0 <= k < len(self.script[s]):
                        logits[j, q, self.script[s][k]] = 40.0
        return SimpleNamespace(logits=logits[logits_to_keep])


def run(model, steps, params=None, config=None, actions=None):
    engine = EngineCore(model, config or EngineConfig(idle_rows=None))
    sid = engine.open("s", params=params or {})
    engine.send(sid, "user", "hi")
    events = []
    for k in range(steps):
        for act in (actions or {}).get(k, []):
            act(engine, sid)
        events += engine.step()
    return engine, events


def texts(events, stream):
    return "".join(e.text for e in events if e.stream == stream and e.type == "token")


def test_scripted_message_events_rows_and_end():
    model = ScriptedModel({"answer": "hello world"}, {"answer": 3})
    engine, events = run(model, 20)
    tokens = [e for e in events if e.stream == "answer" and e.type == "token"]
    n = len(model.script[4]) - 1
    assert [e.row for e in tokens] == list(range(3, 3 + n)) and not any(e.forced for e in tokens)
    assert texts(events, "answer") == "hello world"
    end = [e for e in events if e.stream == "answer" and e.type == "message_end"]
    assert len(end) == 1 and end[0].row == 3 + n and end[0].text == "hello world" and not end[0].forced
    assert engine.sessions["s"].first_output_row == {"answer": 3}
    user_end = [e for e in events if e.stream == "user" and e.type == "message_end"]
    assert user_end[0].text == "hi" and user_end[0].forced


def test_budget_forces_the_end_and_then_silence():
    model = ScriptedModel({"answer": "hello world again"}, {"answer": 2})
    _, events = run(model, 25, params={"answer": StreamParams(max_tokens=2)})
    tokens = [e for e in events if e.stream == "answer" and e.type == "token"]
    assert len(tokens) == 2
    end = [e for e in events if e.stream == "answer" and e.type == "message_end"]
    assert len(end) == 1 and end[0].forced and end[0].row == tokens[-1].row + 1


def test_stop_string_ends_the_message_and_is_cut_from_its_text():
    model = ScriptedModel({"answer": "hello world again"}, {"answer": 2})
    _, events = run(model, 25, params={"answer": StreamParams(stop=("world",))})
    end = [e for e in events if e.stream == "answer" and e.type == "message_end"]
    assert end[0].forced and end[0].text.strip() == "hello"
    before_end = "".join(e.text for e in events if e.stream == "answer" and e.type == "token" and e.row < end[0].row)
    assert "again" not in before_end  # the script goes on talking, in a new message


def test_abort_one_stream_leaves_the_others_and_mute_pauses():
    model = ScriptedModel({"answer": "one two three four five six", "think": "a b c d e f g h"}, {"answer": 2, "think": 2})
    actions = {4: [lambda e, s: e.abort(s, "answer"), lambda e, s: e.mute(s, "think")],
               7: [lambda e, s: e.mute(s, "think", False)]}
    _, events = run(model, 30, actions=actions)
    answer = [e for e in events if e.stream == "answer"]
    # commands before step k act on the row that step chooses, k + 1
    assert answer[-1].type == "message_end" and answer[-1].forced and answer[-1].row == 5
    think_rows = [e.row for e in events if e.stream == "think" and e.type == "token"]
    assert {2, 3, 4, 8} <= set(think_rows) and not {5, 6, 7} & set(think_rows)  # paused, then went on


def test_idle_sessions_pause_until_input():
    model = ScriptedModel({}, {})
    engine, _ = run(model, 50, config=EngineConfig(idle_rows=5))
    assert engine.sessions["s"].row < 15 and not engine.has_work() and engine.idle("s")
    engine.send("s", "user", "again")
    assert engine.has_work()
    events = engine.step()
    assert [e.text for e in events if e.stream == "user"][:1] == [model.tok.decode(model.tok.encode_text("again")[:1])]


def test_row_limit_closes_the_session():
    model = ScriptedModel({}, {})
    engine, events = run(model, 20, config=EngineConfig(idle_rows=None, max_rows=8))
    closed = [e for e in events if e.type == "closed"]
    assert closed and "row limit" in closed[0].text and "s" not in engine.sessions


def test_sampling_settings_are_per_stream():
    model = ScriptedModel({"answer": "hello world"}, {"answer": 2})
    hot = StreamParams(SamplingParams(temperature=50.0, seed=0))
    _, events = run(model, 15, params={"think": hot})
    assert texts(events, "answer") == "hello world"  # greedy stream follows the script
    assert texts(events, "think")  # the hot stream babbles
