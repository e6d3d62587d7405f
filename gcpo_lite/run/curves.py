"""A run's curves as one PNG from its metrics.jsonl: reward, accuracy (+ held-out), gold rate, loss, lengths.

`plot(run_dir)` writes RUN_DIR/curves.png, a panel per quantity. matplotlib is an optional extra, imported
only when a plot is drawn; without it the ConfigError says what to install.
"""

from __future__ import annotations

import json
from pathlib import Path

from gcpo_lite.config import ConfigError

# panel title -> [(metric key, label)]
PANELS: list[tuple[str, list[tuple[str, str]]]] = [
    ("reward", [("reward_mean", "mean reward"), ("reward_std", "reward std")]),
    ("accuracy", [("accuracy", "sampled (train)"), ("eval_accuracy", "held-out")]),
    (
        "gold injection",
        [
            ("gold_injected_frac", "groups given gold"),
            ("all_wrong_frac", "all-wrong groups"),
            ("all_correct_frac", "all-correct groups"),
        ],
    ),
    ("loss", [("loss", "loss")]),
    ("completion length (tokens)", [("completion_length_mean", "mean"), ("completion_length_max", "max")]),
]


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise ConfigError(f"{path} not found; pass the directory `gcpo-lite train` wrote")
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut short by a kill
            continue
    return rows


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the rows that have `key` (eval_accuracy only exists on eval steps)."""
    pts = {}
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            pts[int(r.get("step", 0))] = float(v)  # a later row of the same step wins
    steps = sorted(pts)
    return steps, [pts[s] for s in steps]


def moving_average(values: list[float], n: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= n:
            acc -= values[i - n]
        out.append(acc / min(i + 1, n))
    return out


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("gcpo-lite plot needs matplotlib: pip install matplotlib") from None
    return plt


def _draw_panel(ax, title: str, keys: list[tuple[str, str]], rows: list[dict], smooth: int) -> None:
    """One panel: a line per metric the rows have; with smooth > 1 the training curves are drawn faint with
    their moving average on top (held-out accuracy, a few points, is never smoothed)."""
    for key, label in keys:
        steps, values = series(rows, key)
        if not steps:
            continue
        marker = "o" if key == "eval_accuracy" or len(steps) < 30 else None
        if smooth > 1 and key != "eval_accuracy":
            (line,) = ax.plot(steps, values, alpha=0.3, marker=marker, markersize=3)
            ax.plot(
                steps,
                moving_average(values, smooth),
                color=line.get_color(),
                label=f"{label} ({smooth}-step avg)",
            )
        else:
            ax.plot(steps, values, label=label, marker=marker, markersize=3)
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8, loc="best")


def plot(run_dir: str | Path, output: str | Path | None = None, smooth: int = 1) -> Path:
    """Write the run's curves (default RUN_DIR/curves.png); returns the PNG's path."""
    plt = _pyplot()
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not any("loss" in r for r in rows):
        raise ConfigError(f"{run_dir}/metrics.jsonl has no training steps yet")
    output = Path(output) if output else run_dir / "curves.png"
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(8, 2.6 * len(PANELS)), sharex=True)
    for ax, (title, keys) in zip(axes, PANELS):
        _draw_panel(ax, title, keys, rows, smooth)
    axes[-1].set_xlabel("step")
    fig.suptitle(f"gcpo-lite run: {run_dir.name}", fontsize=11)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
