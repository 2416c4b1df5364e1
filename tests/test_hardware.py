import pytest
import torch

from multistream import hardware
from multistream.engine.cli import add_dtype_arg


def test_explicit_dtypes_are_what_they_say():
    assert hardware.resolve_dtype("float32") is torch.float32
    assert hardware.resolve_dtype("bfloat16") is torch.bfloat16
    assert hardware.resolve_dtype(torch.float16) is torch.float16


def test_auto_is_bf16_exactly_where_it_is_native(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    assert hardware.resolve_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    assert hardware.resolve_dtype("auto", "cpu") is torch.float32
    assert hardware.resolve_dtype("auto", "meta") is torch.float32  # neither a CPU nor a GPU


def test_unknown_dtype_is_named():
    with pytest.raises(ValueError, match="float8"):
        hardware.resolve_dtype("float8")


def test_cli_dtype_defaults_to_auto_and_refuses_others():
    import argparse

    p = argparse.ArgumentParser()
    add_dtype_arg(p)
    assert p.parse_args([]).dtype == "auto"
    assert p.parse_args(["--dtype", "float32"]).dtype == "float32"
    assert p.parse_args(["--dtype", "bfloat16"]).dtype == "bfloat16"
    with pytest.raises(SystemExit):
        p.parse_args(["--dtype", "half"])
