"""What a process of the toolkit sets for itself, applied by entry points only.

The command line (``multistream.cli.main``), the processes the library starts itself (the
two one-thread workers of ``eval skills`` and ``train --compare-silence``, the server process of
``bench serve``) and the modules run to regenerate shipped data (``python -m
multistream.data.everyday``, ``python -m multistream.data.retention``) call :func:`configure`;
importing a library module changes nothing of the process, so that a program using the library
keeps its own environment, warnings filters and torch threads. Another entry point (a module run
with ``python -m``) calls it too if it wants the command line's set-up.
"""

from __future__ import annotations

import os
import warnings


def configure(threads: int | None = None) -> None:
    """Set this process up as the command line runs it.

    - ``HF_HUB_OFFLINE=1`` unless set: the toolkit never fetches weights, and without it transformers
      and peft retry a hub for tens of seconds (set before they are imported; children inherit it);
    - peft's adapter loading trips a transformers deprecation warning on every load that says nothing
      to our users: it is not shown;
    - ``threads``: ``torch.set_num_threads`` (None: torch's default).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    if threads:
        import torch

        torch.set_num_threads(threads)


def one_thread_worker() -> None:
    """The initializer of the library's worker processes: set up as the command line, one torch thread each
    (two one-thread workers use a 2-core CPU best)."""
    configure(threads=1)
