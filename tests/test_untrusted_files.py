"""Files a user may be handed (a checkpoint, a saved model) cannot run code or reach outside their folder."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from multistream.model import MultiStreamModel
from multistream.train.loop import _resume


class _Planted:
    """Unpickling this creates a file: what a malicious checkpoint could do instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_state_cannot_run_code_when_resumed(tmp_path):
    raw = nn.Linear(2, 2)
    save_file({n: p.detach().contiguous() for n, p in raw.named_parameters()}, tmp_path / "trainable.safetensors")
    (tmp_path / "progress.json").write_text(json.dumps({"step": 1, "history": []}))
    marker = tmp_path / "pwned"
    with open(tmp_path / "state.pt", "wb") as f:
        pickle.dump({"optimizer": _Planted(marker), "scheduler": {}, "rng": torch.get_rng_state()}, f)
    optimizer = torch.optim.AdamW(raw.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    with pytest.raises(pickle.UnpicklingError):
        _resume(tmp_path, raw, optimizer, scheduler)
    assert not marker.exists()


@pytest.mark.parametrize("ref", ["./../..", "../outside", "./base/../../outside"])
def test_a_saved_models_base_cannot_point_outside_its_folder(wrap, tmp_path, ref):
    folder = wrap("llama").save(tmp_path / "model")
    cfg = json.loads((folder / "multistream_config.json").read_text())
    cfg["base_model"] = ref
    (folder / "multistream_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="outside the model folder"):
        MultiStreamModel.load(folder)
