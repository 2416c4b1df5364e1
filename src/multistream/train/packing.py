"""The data order: packed sequences per optimizer step, a pure function of (lengths, seed, step).

Every epoch shuffles the examples with a generator seeded by ``(seed, epoch)`` and packs
them greedily, in that order, into sequences of at most ``seq_len`` tokens. Step ``s``
takes sequences ``s*B .. s*B+B-1`` of the concatenated epochs. Because nothing depends on
earlier steps having run, a resumed run sees exactly the batches the uninterrupted run
would have seen, and any number of processes split the same global batch.
"""

from __future__ import annotations

import torch

from ..rows import Packed, pack_many


def pack_order(lengths: list[int], seq_len: int, seed: int, epoch: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    seqs: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in order:
        if current and used + lengths[i] > seq_len:
            seqs.append(current)
            current, used = [], 0
        current.append(i)
        used += lengths[i]
    if current:
        seqs.append(current)
    return seqs


class StepPlan:
    def __init__(self, lengths: list[int], seq_len: int, batch_size: int, seed: int):
        if not lengths:
            raise ValueError("no training examples")
        too_long = [n for n in lengths if n > seq_len]
        if too_long:
            raise ValueError(f"{len(too_long)} example(s) longer than seq_len={seq_len} (longest {max(too_long)}); raise seq_len")
        self.lengths, self.seq_len, self.batch_size, self.seed = lengths, seq_len, batch_size, seed
        self._seqs: list[list[int]] = []
        self._epochs = 0
        self._per_epoch: int | None = None

    def step(self, s: int) -> list[list[int]]:
        """The ``batch_size`` packed sequences (lists of example indices) of optimizer step ``s``."""
        need = (s + 1) * self.batch_size
        while len(self._seqs) < need:
            self._seqs += pack_order(self.lengths, self.seq_len, self.seed, self._epochs)
            self._epochs += 1
        return self._seqs[s * self.batch_size : need]

    def epoch_of(self, s: int) -> float:
        if self._per_epoch is None:  # packed once: the log asks at every step
            self._per_epoch = len(pack_order(self.lengths, self.seq_len, self.seed, 0))
        return s * self.batch_size / self._per_epoch


def build_sequences(examples: list[Packed], seqs: list[list[int]]) -> list[Packed]:
    return [pack_many([examples[i] for i in seq]) for seq in seqs]
