"""``multistream bench``: speed measured side by side in one run, reported as ratios; one module per benchmark.

- ``step``: one row of C streams (C = 1, 2, 4, 8) through the engine against one decode
  step of the bare model with one new token, and the engine's step against the raw
  forward of the same row (the engine's own overhead); and the KV-cache tokens per token read
  in a listening session (a question, then a 1,000-token document) under each silence rule.
- ``latency``: the evaluation's latency benchmark (``multistream eval latency``: the
  same arrival clock, warm-up, alternating order) on the first ``--limit`` built-in
  accuracy cases, the input all at once and at ``--rate`` tokens/s.
- ``ingest``: a long document read step by step, in bulk and speculatively, against the
  bare model's prefill of the same tokens.
- ``serve``: the real server (a child process on a loopback port; ``--model tiny`` by
  default, a random model built in-process) under load: sessions one at a time, then N
  WebSocket sessions at once, then N HTTP completions at once: sessions/s, generated
  tokens/s, whether every session answered and answered as it does alone, and the server
  process's RSS before, at its peak and after; then a soak of sessions dropped abruptly.
- ``train``: the training step of several configurations (the silence rule, the base weights' dtype) on
  the same data, round by round: tokens/s and timelines/s (:mod:`multistream.train.throughput`).

Measurements alternate between the contenders, round by round, and report medians,
because the machines are shared and noisy.
"""

from .cli import cmd_bench, register
from .ingest import bench_ingest
from .latency import bench_latency
from .serve import bench_serve
from .step import bench_step, detokenize_cost, listening_cache

__all__ = ["bench_ingest", "bench_latency", "bench_serve", "bench_step", "cmd_bench", "detokenize_cost",
           "listening_cache", "register"]
