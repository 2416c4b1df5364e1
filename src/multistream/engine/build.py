"""The one place an engine is put together: :func:`build_engine` loads the model (or takes a loaded one), makes the
:class:`~.core.EngineCore` and warms it up (:func:`warm_up`). Every command that runs the multi-stream model
(``generate``, ``chat``, ``serve``, ``demo``, the evaluations, the benchmarks) gets its engine here."""

from __future__ import annotations

import contextlib
import sys
import time

import torch

from .core import EngineConfig, EngineCore, EngineError

WARM_UP_ROWS = 4
"""Rows of the throwaway session :func:`warm_up` runs."""


def build_engine(model, config: EngineConfig | None = None, dtype: str | torch.dtype = "auto", warm: bool = True,
                 capacities: tuple[int, ...] = ()) -> EngineCore:
    """An engine core of ``config`` (default ``EngineConfig()``) over ``model``: a loaded multi-stream model, or a
    name :func:`multistream.zoo.load_model` takes (``default``, ``base[:REF]``, ``tiny``, a saved model folder),
    loaded in ``dtype`` (:func:`multistream.hardware.resolve_dtype`) and in ``config.quant``'s form.

    ``warm``: warm it up before returning it (:func:`warm_up`, compiling also for ``capacities``)."""
    config = config or EngineConfig()
    if isinstance(model, str):
        from ..hardware import resolve_dtype
        from ..zoo import load_model

        model = load_model(model, dtype=resolve_dtype(dtype), quant=config.quant)
    core = EngineCore(model, config)
    if warm:
        warm_up(core, capacities)
    return core


def warm_up(core: EngineCore, capacities: tuple[int, ...] = (), rows: int = WARM_UP_ROWS) -> float:
    """Make the first real session as fast as the next ones; returns the seconds it took.

    A compiled engine (``EngineConfig.compiled``) compiles its row forward for the present cache shape and for each
    of ``capacities`` first, saying so on stderr (20-50 s on an AMX CPU the first time, seconds from torch's compile
    cache later; about a minute on a 2-core AVX2 CPU each time). Then a throwaway session runs ``rows`` rows and is closed, so
    that first-call set-up is paid here; it leaves nothing behind that another session could see."""
    t = time.perf_counter()
    if core.compiled is not None:
        print("multistream: compiling the row forward (up to a few minutes, by the CPU; --no-compile skips)",
              file=sys.stderr, flush=True)
        print(f"multistream: compiled in {core.warm_up(capacities):.1f} s", file=sys.stderr, flush=True)
    if rows:
        sid = core.open("warm-up", prefix="warm up")
        core.send(sid, core.layout.inputs[0].name, "hello")
        for _ in range(rows):
            core.step()
        with contextlib.suppress(EngineError):  # (closed already when the engine's row limit is below ``rows``)
            core.close(sid)
        core.step()
    return time.perf_counter() - t
