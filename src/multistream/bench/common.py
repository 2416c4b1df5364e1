"""What the benchmarks share: the texts they read and how they time."""

from __future__ import annotations

import statistics
import time

import torch

SYSTEM = "You are a helpful assistant. Answer briefly."
QUESTION = "What is the capital of France?"  # the listening session's question
DOC = ("The committee met on Tuesday to review the budget for the coming year. Most members agreed that "
       "spending on public transport should rise, while a few argued for lower taxes instead. ")


def ms(seconds: list[float]) -> float:
    """The median of ``seconds`` in milliseconds."""
    return round(1000 * statistics.median(seconds), 2)


def sync() -> None:
    """Wait for queued GPU work, so that a timing holds what it launched (a no-op on the CPU)."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn) -> float:
    """Seconds ``fn()`` takes, the GPU work it queued included."""
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def load(args, quant: str | None = None):
    """The model of a ``multistream bench`` command (``--model``, ``--dtype``, ``--device``, ``--quant`` unless
    ``quant`` is given)."""
    from ..hardware import resolve_dtype
    from ..zoo import load_model

    quant = quant or getattr(args, "quant", "none")
    return load_model(args.model, dtype=resolve_dtype(args.dtype, args.device), quant=quant).to(args.device)
