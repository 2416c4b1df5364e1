"""Figures with matplotlib (Agg, no display): session timelines, latency per case, summary bars.

Every function draws on its own :class:`matplotlib.figure.Figure` (no global pyplot
state) and writes the file named by ``path``; the suffix picks the format (``.png``,
``.svg``, ``.pdf``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

INPUT_COLOR, OUTPUT_COLOR = "#9ecae1", "#fdae6b"
MULTI_COLOR, SINGLE_COLOR = "#3182bd", "#e6550d"


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _event_fields(e) -> dict:
    return e if isinstance(e, dict) else e.to_dict()


def plot_timeline(events, streams: list[tuple[str, str]], path: str | Path, title: str = "", max_rows: int = 240) -> Path:
    """One session as a rows x streams chart: a cell per token written, silence blank.

    ``events``: the session's events (``Event`` objects or their dicts); ``streams``:
    ``(name, kind)`` pairs in layout order. Inputs are blue, outputs orange, a thick bar
    ends a message, a star marks a tool call (on ``call``) and its result (on ``tool``).
    """
    evs = [_event_fields(e) for e in events]
    names = [n for n, _ in streams]
    for e in evs:  # streams the layout did not name (a file from another model)
        if e.get("stream") and e["stream"] not in names and e["type"] in ("token", "message_end"):
            names.append(e["stream"])
            streams = [*streams, (e["stream"], "input")]
    kind = dict(streams)
    rows = [e["row"] for e in evs if e["type"] in ("token", "message_end")]
    n_rows = min(max(rows, default=0) + 1, max_rows)
    width = min(48.0, max(6.0, 0.16 * n_rows + 1.5))
    fig = Figure(figsize=(width, 0.55 * len(names) + 1.4))
    ax = fig.add_subplot()
    y = {n: len(names) - 1 - i for i, n in enumerate(names)}
    for e in evs:
        s, r = e.get("stream"), e["row"]
        if r >= n_rows:
            continue
        if e["type"] == "token" and s in y:
            ax.add_patch(Rectangle((r + 0.04, y[s] - 0.4), 0.92, 0.8, color=INPUT_COLOR if kind[s] == "input" else OUTPUT_COLOR,
                                   alpha=0.55 if e.get("forced") and kind[s] == "output" else 1.0, linewidth=0))
            label = (e.get("text") or "").replace("\n", "\u21b5").strip() or "\u2423"
            ax.text(r + 0.5, y[s], label[:8], ha="center", va="center", rotation=90, fontsize=5.5, clip_on=True)
        elif e["type"] == "message_end" and s in y:
            ax.add_patch(Rectangle((r + 0.35, y[s] - 0.45), 0.3, 0.9, color="#333333", linewidth=0))
        elif e["type"] in ("tool_call", "tool_result"):
            lane = s  # (a tool call's event is on the call stream, its result's on the tool stream)
            if lane in y:
                ax.plot([r + 0.5], [y[lane]], marker="*", markersize=11, color="#d62728", zorder=5)
    ax.set_xlim(0, max(n_rows, 1))
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_yticks([y[n] for n in names], [f"{n} ({kind[n][:2]})" for n in names])
    ax.set_xlabel("row")
    ax.grid(axis="x", linewidth=0.3, alpha=0.5)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_latency(result: dict, path: str | Path, mode: str | None = None) -> Path:
    """Time to first token and end-to-end time per case, multi vs single (a ``bench_latency`` result)."""
    modes = result["modes"]
    mode = mode or next(iter(modes))
    cases = modes[mode]["cases"]
    labels = [c.get("id") or f"#{i}" for i, c in enumerate(cases)]
    fig = Figure(figsize=(max(6.0, 0.5 * len(cases) + 2), 5.5))
    axes = fig.subplots(2, 1, sharex=True)
    x = range(len(cases))
    for ax, key in zip(axes, ("ttft", "e2e")):
        m = [c["multi"][key] if c["multi"][key] is not None else 0.0 for c in cases]
        s = [c["single"][key] if c["single"][key] is not None else 0.0 for c in cases]
        ax.bar([i - 0.2 for i in x], m, width=0.4, color=MULTI_COLOR, label="multi-stream")
        ax.bar([i + 0.2 for i in x], s, width=0.4, color=SINGLE_COLOR, label="single-stream")
        ratio = modes[mode].get(f"{key}_ratio")
        ax.set_ylabel(f"{key} (s)")
        ax.set_title(f"{key}: median ratio multi/single = {ratio}", fontsize=9)
        ax.grid(axis="y", linewidth=0.3)
    axes[0].legend(fontsize=8)
    axes[1].set_xticks(list(x), labels, rotation=60, ha="right", fontsize=7)
    fig.suptitle(f"latency per case ({mode.replace('_', ' ')})", fontsize=10)
    return _save(fig, path)


def plot_cases(labels: list[str], multi: list[float | None], single: list[float | None], path: str | Path,
               title: str = "", ylabel: str = "seconds") -> Path:
    """One value per case for each contender, side by side (None drawn as a gap)."""
    fig = Figure(figsize=(max(6.0, 0.5 * len(labels) + 2), 3.6))
    ax = fig.add_subplot()
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], [v or 0.0 for v in multi], width=0.4, color=MULTI_COLOR, label="multi-stream")
    ax.bar([i + 0.2 for i in x], [v or 0.0 for v in single], width=0.4, color=SINGLE_COLOR, label="single-stream")
    ax.set_xticks(list(x), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", linewidth=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_bars(groups: dict[str, dict[str, float | None]], path: str | Path, title: str = "", ylabel: str = "rate") -> Path:
    """Grouped bars: ``{group: {series: value}}`` (None drawn as 0 and labelled n/a)."""
    series = list(dict.fromkeys(k for g in groups.values() for k in g))
    colors = {"multi": MULTI_COLOR, "single": SINGLE_COLOR}
    fig = Figure(figsize=(max(5.0, 1.6 * len(groups) + 1), 3.6))
    ax = fig.add_subplot()
    w = 0.8 / max(1, len(series))
    for j, name in enumerate(series):
        xs = [i - 0.4 + w * (j + 0.5) for i in range(len(groups))]
        vals = [g.get(name) for g in groups.values()]
        bars = ax.bar(xs, [v or 0.0 for v in vals], width=w, label=name, color=colors.get(name))
        for b, v in zip(bars, vals):
            ax.annotate("n/a" if v is None else f"{v:.2f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_ylabel(ylabel)
    top = max([v for g in groups.values() for v in g.values() if v is not None], default=1.0)
    ax.set_ylim(0, max(1.05, top * 1.15))
    ax.legend(fontsize=8)
    ax.grid(axis="y", linewidth=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)
