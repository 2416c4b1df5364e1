"""Sampling: a pure function of logits and per-row parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 100.0
"""A temperature is 0 (greedy) or within these bounds: logits divided by less overflow to NaN."""
MAX_SEED = 2**63
"""Seeds are integers in ``[0, MAX_SEED)`` (what ``torch.Generator.manual_seed`` accepts)."""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    """0 means greedy (argmax)."""
    top_k: int = 0
    """Keep the k most likely tokens (0: all)."""
    top_p: float = 1.0
    """Keep the smallest set of tokens whose probability reaches p (1.0: all)."""
    seed: int | None = None
    """Seed of this stream's random generator (None: nondeterministic)."""

    def __post_init__(self) -> None:
        t = self.temperature
        if not isinstance(t, int | float) or isinstance(t, bool) or not (
            t == 0 or (math.isfinite(t) and MIN_TEMPERATURE <= t <= MAX_TEMPERATURE)
        ):
            raise ValueError(f"temperature must be 0 or within [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}], got {t!r}")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0, got {self.top_k!r}")
        p = self.top_p
        if not isinstance(p, int | float) or isinstance(p, bool) or not (math.isfinite(p) and 0 < p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {p!r}")
        s = self.seed
        if s is not None and (not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < MAX_SEED):
            raise ValueError(f"seed must be an integer within [0, 2**63), got {s!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generator(self) -> torch.Generator | None:
        if self.greedy:
            return None
        g = torch.Generator()
        if self.seed is None:
            g.seed()
        else:
            g.manual_seed(self.seed)
        return g


SPEAK_RULES = ("likely", "argmax")
"""How a greedy output stream decides between silence and speech (:func:`greedy`)."""


def rule_silence(speak_rule: str, silence_id: int) -> int | None:
    """The ``silence`` argument of :func:`greedy` and :func:`sample` under ``speak_rule``."""
    return silence_id if speak_rule == "likely" else None


def greedy(logits: torch.Tensor, silence: int | None = None) -> torch.Tensor:
    """The greedy token of each row of ``logits`` ``[..., V]``.

    With ``silence`` (the rule ``likely``), silence against speech is decided first, as one binary choice: the
    stream speaks when all spoken tokens together are likelier than silence, and then says its likeliest token.
    A plain argmax (``silence`` None, the rule ``argmax``) weighs silence against each spoken token alone, so a
    model sure that it must speak but split between two openings ("The ...", "From ...") stays silent.
    """
    if silence is None:
        return logits.argmax(-1)
    logits = logits.float()
    spoken = logits.clone()
    spoken[..., silence] = float("-inf")
    speak = spoken.logsumexp(-1) > logits[..., silence]
    return torch.where(speak, spoken.argmax(-1), torch.full_like(speak, silence, dtype=torch.long))


def sample(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None],
    silence: int | None = None,
) -> torch.Tensor:
    """One token per row of ``logits`` ``[N, V]`` under that row's parameters (greedy rows: :func:`greedy`)."""
    out = greedy(logits, silence)
    for i, p in enumerate(params):
        if p.greedy:
            continue
        row = logits[i].float() / p.temperature
        if p.top_k and p.top_k < row.shape[-1]:
            kth = torch.topk(row, p.top_k).values[-1]
            row = row.masked_fill(row < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_logits, order = torch.sort(row, descending=True)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            drop = cum - sorted_logits.softmax(-1) >= p.top_p  # keep tokens until the mass before them reaches p
            row = row.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
        out[i] = torch.multinomial(row.softmax(-1).cpu(), 1, generator=generators[i]).to(out.device)[0]
    return out
