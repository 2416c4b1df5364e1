import pytest
import torch

from multistream.engine.sampling import greedy
from multistream.reference import reference_decode
from multistream.rows import RowGrid, pack_grid
from multistream.timeline import Segment, Timeline


@pytest.mark.parametrize("speak_rule", ["likely", "argmax"])
@pytest.mark.parametrize("rule", ["invisible", "visible"])
def test_reference_decoder_feeds_inputs_and_follows_its_own_greedy_choice(wrap, rule, speak_rule):
    model = wrap("llama", silence=rule)
    layout = model.layout
    timeline = Timeline(
        layout.names,
        [Segment("user", "What is 2+3?", start_row=0), Segment("tool", "doc text", start_row=4)],
        prefix="Be brief.",
    )
    out = reference_decode(model, timeline, rows=12, speak_rule=speak_rule)
    tok = model.tok
    user = tok.encode_message("What is 2+3?")
    assert out.tokens[: len(user), layout.index("user")].tolist() == user
    assert out.tokens[4 : 4 + len(tok.encode_message("doc text")), layout.index("tool")].tolist() == tok.encode_message("doc text")
    outs = [i for i, s in enumerate(layout) if s.kind == "output"]
    assert (out.tokens[0, outs] == tok.silence_id).all()  # nothing is sampled before row 0
    # one full forward over the final grid agrees with every per-row greedy choice
    packed = pack_grid(RowGrid(out.prefix_ids, out.tokens, layout.index("system")), model.row_format)
    with torch.no_grad():
        logits = model(packed.input_ids[None], packed.stream_ids[None], packed.position_ids[None],
                       visible=packed.visible[None]).logits[0]
    p = len(out.prefix_ids)
    for t in range(out.tokens.shape[0] - 1):
        at = (packed.position_ids == p + t) & torch.isin(packed.stream_ids, torch.tensor(outs))
        silence = tok.silence_id if speak_rule == "likely" else None
        assert greedy(logits[at], silence).tolist() == out.tokens[t + 1, outs].tolist()
    assert set(out.texts) == {"think", "answer", "call"}
