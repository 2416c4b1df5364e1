"""``multistream bench train``: the training step of several configurations (the silence rule, the base weights'
dtype) on the same data, round by round: tokens/s and timelines/s. The measurement is
:func:`multistream.train.throughput.bench_train`; this module shows it."""

from __future__ import annotations


def print_train(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"training step, recipe {r['recipe']}: {r['batch_size']} x {r['seq_len']} tokens, "
                        f"{r['mixed_precision']}, {r['threads']} threads, {r['device']}")
    for col in ("variant", "changes", "steps", "s/step", "tokens/s", "timelines/s", "tokens/timeline",
                f"tokens/s vs {r['reference']}", f"timelines/s vs {r['reference']}"):
        table.add_column(col)
    for name, v in r["variants"].items():
        table.add_row(name, ", ".join(f"{k}={x}" for k, x in v["changes"].items()) or "(the recipe)", str(v["steps"]),
                      f"{v['s_per_step_median']:.2f}", f"{v['tokens_per_s']:.0f}", f"{v['timelines_per_s']:.2f}",
                      f"{v['tokens_per_timeline']:.0f}", f"{v['tokens_per_s_ratio']}x", f"{v['timelines_per_s_ratio']}x")
    Console().print(table)
