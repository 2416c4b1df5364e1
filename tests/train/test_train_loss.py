"""The training objective: hand-computed cross-entropy, and gradient accumulation = one batch."""

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from multistream.rows import IGNORE, collate, pack_grid, timeline_to_grid
from multistream.streams import DEFAULT_LAYOUT
from multistream.timeline import Segment, Timeline
from multistream.train.loop import backward_step, token_loss_sum
from multistream.train.token_rows import TrainableRows


def _timeline(q="What is 2+3?", a="5"):
    return Timeline(
        DEFAULT_LAYOUT.names,
        [Segment("user", q, start_row=0), Segment("think", "add", start_row=2), Segment("answer", a, start_row=4)],
        prefix="Be brief.",
    )


@pytest.mark.parametrize("rule", ["invisible", "visible"])
def test_loss_is_hand_computed_cross_entropy_on_output_streams(wrap, rule):
    model = wrap("llama", silence=rule)
    grid = timeline_to_grid(_timeline(), model.tok, model.layout)
    packed = pack_grid(grid, model.row_format)
    batch = collate([packed], model.tok.silence_id)
    loss, n = token_loss_sum(model, batch)

    with torch.no_grad():
        logits = model(batch["input_ids"], batch["stream_ids"], batch["position_ids"], visible=batch["visible"]).logits[0]
    p = grid.prefix_ids.shape[0]
    at = {(int(q), int(s)): i for i, (q, s) in enumerate(zip(packed.position_ids, packed.stream_ids)) if i >= p}
    total, count, silence_targets = 0.0, 0, 0
    for t in range(grid.rows - 1):  # by hand: every output cell predicts its own stream's next row
        for s, stream in enumerate(model.layout):
            if stream.kind != "output":
                continue
            target = int(grid.tokens[t + 1, s])
            row_logits = logits[at[(p + t, s)]]
            total += -(row_logits.log_softmax(-1)[target]).item()
            count += 1
            silence_targets += target == model.tok.silence_id
    assert n == count == (grid.rows - 1) * 3
    assert silence_targets > 0  # silence is a target like any other
    assert abs(loss.item() - total) < 1e-3 * max(1.0, abs(total))


def test_input_streams_carry_no_loss(wrap):
    model = wrap("llama")
    packed = pack_grid(timeline_to_grid(_timeline(), model.tok, model.layout), model.row_format)
    batch = collate([packed], model.tok.silence_id)
    base, n = token_loss_sum(model, batch)
    inputs = batch["stream_ids"] < 3
    assert inputs.any() and (batch["labels"][inputs] == IGNORE).all()  # the packer gives input cells no target
    # so the loss comes from the output cells alone: without their labels nothing is left
    no_outputs = dict(batch, labels=batch["labels"].clone())
    no_outputs["labels"][~inputs] = IGNORE
    zero, n_zero = token_loss_sum(model, no_outputs)
    assert n_zero == 0 and zero.item() == 0.0 and base.item() > 0


def test_labels_are_the_next_rows_tokens_of_output_streams(wrap):
    model = wrap("llama")
    grid = timeline_to_grid(_timeline(), model.tok, model.layout)
    packed = pack_grid(grid, model.row_format)
    p = grid.prefix_ids.shape[0]
    rows = packed.position_ids[p:] - p
    streams = packed.stream_ids[p:]
    labels = packed.labels[p:]
    out = torch.tensor(model.layout.output_mask)[streams]
    last = rows == grid.rows - 1
    assert (labels[~out | last] == IGNORE).all()  # inputs and the last row carry no target
    expect = grid.tokens[(rows + 1).clamp(max=grid.rows - 1), streams]
    assert torch.equal(labels[out & ~last], expect[out & ~last])


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def test_accumulation_of_4_equals_one_batch_of_4(wrap):
    model = wrap("llama").train()
    for p in model.parameters():
        p.requires_grad_(True)
    model.token_rows = TrainableRows(model.base, model.new_token_ids)
    model.base.get_input_embeddings().weight.requires_grad_(False)
    qs = [("What is 2+3?", "5"), ("Capital of France?", "Paris is the capital"), ("hello", "world"), ("start with 4, add 3", "7")]
    packs = [pack_grid(timeline_to_grid(_timeline(q, a), model.tok, model.layout), model.row_format) for q, a in qs]
    assert len({len(p) for p in packs}) > 1  # different lengths: per-micro-batch means would weigh tokens unequally
    acc = Accelerator(cpu=True)

    one = backward_step(model, [collate(packs, model.tok.silence_id)], acc)
    g_one = _grads(model)
    model.zero_grad()
    four = backward_step(model, [collate([p], model.tok.silence_id) for p in packs], acc)
    g_four = _grads(model)

    assert abs(one - four) < 1e-5
    assert g_one.keys() == g_four.keys() and "token_rows.input" in g_one and "stream_embed.weight" in g_one
    for name in g_one:
        torch.testing.assert_close(g_four[name], g_one[name], rtol=1e-4, atol=1e-6, msg=name)
    # and the loss is the token-weighted mean, not the mean of per-sequence means
    sums = [token_loss_sum(model, collate([p], model.tok.silence_id)) for p in packs]
    assert abs(four - sum(s.item() for s, _ in sums) / sum(n for _, n in sums)) < 1e-5


def test_trainable_rows_substitute_and_merge(wrap):
    model = wrap("llama")
    rows = TrainableRows(model.base, model.new_token_ids)
    with torch.no_grad():
        rows.input.normal_()
    packed = pack_grid(timeline_to_grid(_timeline(), model.tok, model.layout), model.row_format)
    b = collate([packed], model.tok.silence_id)
    hooked = model(b["input_ids"], b["stream_ids"], b["position_ids"]).logits
    rows.merge()
    rows.remove()
    merged = model(b["input_ids"], b["stream_ids"], b["position_ids"]).logits
    torch.testing.assert_close(hooked, merged, rtol=1e-4, atol=1e-5)
    loss = F.cross_entropy(hooked[0], b["input_ids"][0])
    assert torch.isfinite(loss)


def test_spoken_targets_weigh_spoken_weight_times_a_silence(wrap):
    """Weighted by hand: a target other than silence counts ``spoken_weight`` times; the sum of weights with it."""
    model = wrap("llama")
    grid = timeline_to_grid(_timeline(), model.tok, model.layout)
    batch = collate([pack_grid(grid, model.row_format)], model.tok.silence_id)
    silence = model.tok.silence_id
    labels = batch["labels"]
    with torch.no_grad():
        logits = model(batch["input_ids"], batch["stream_ids"], batch["position_ids"], visible=batch["visible"]).logits
    per = F.cross_entropy(logits[0], labels[0].clamp(min=0), reduction="none")
    spoken, quiet = (labels[0] != IGNORE) & (labels[0] != silence), labels[0] == silence
    assert spoken.any() and quiet.any()
    loss, weight = token_loss_sum(model, batch, silence, 3.0)
    assert weight == quiet.sum().item() + 3 * spoken.sum().item()
    assert abs(loss.item() - (per[quiet].sum() + 3 * per[spoken].sum()).item()) < 1e-3 * loss.item()
    plain, n = token_loss_sum(model, batch, silence, 1.0)
    assert n == quiet.sum().item() + spoken.sum().item() and plain.item() < loss.item()


def test_accumulation_equals_one_batch_with_spoken_weight(wrap):
    model = wrap("llama").train()
    for p in model.parameters():
        p.requires_grad_(True)
    qs = [("What is 2+3?", "5"), ("Capital of France?", "Paris is the capital"), ("hello", "world")]
    packs = [pack_grid(timeline_to_grid(_timeline(q, a), model.tok, model.layout), model.row_format) for q, a in qs]
    acc, silence = Accelerator(cpu=True), model.tok.silence_id
    one = backward_step(model, [collate(packs, silence)], acc, silence, 4.0)
    g_one = _grads(model)
    model.zero_grad()
    three = backward_step(model, [collate([p], silence) for p in packs], acc, silence, 4.0)
    g_three = _grads(model)
    assert abs(one - three) < 1e-5
    for name in g_one:
        torch.testing.assert_close(g_three[name], g_one[name], rtol=1e-4, atol=1e-6, msg=name)
    sums = [token_loss_sum(model, collate([p], silence), silence, 4.0) for p in packs]
    assert abs(three - sum(s.item() for s, _ in sums) / sum(w for _, w in sums)) < 1e-5
