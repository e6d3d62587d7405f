"""A run's curves as one PNG from its metrics.jsonl: reward, accuracy (+ held-out), gold rate, loss, lengths.

`plot(run_dir)` writes RUN_DIR/curves.png, a panel per quantity (`output` may name another file, whose
extension picks the format, or a directory). matplotlib is an optional extra, imported only when a plot is
drawn; without it the ConfigError says what to install.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from gcpo_lite.config import ConfigError

log = logging.getLogger(__name__)
DEFAULT_NAME = "curves.png"

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
    """The rows of RUN_DIR/metrics.jsonl. A line cut short by a kill is skipped; a line that is JSON but not
    an object (`5`, `[1, 2]`: not a row this program wrote) is skipped with a note naming it."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise ConfigError(f"{path} not found; pass the directory `gcpo-lite train` wrote")
    try:
        text = path.read_text()
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        raise ConfigError(
            f"{path} cannot be read ({getattr(e, 'strerror', None) or e}); pass the directory `gcpo-lite "
            "train` wrote"
        ) from None
    rows, foreign = [], []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):  # a line cut short by a kill
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            foreign.append(n)
    if foreign:
        shown = ", ".join(map(str, foreign[:10])) + (
            f" and {len(foreign) - 10} more" if len(foreign) > 10 else ""
        )
        log.warning("%s: skipped line%s %s (not JSON objects)", path, "s" if len(foreign) > 1 else "", shown)
    return rows


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the rows that have `key` (eval_accuracy only exists on eval steps) and a numeric
    step."""
    pts = {}
    for r in rows:
        v, step = r.get(key), r.get("step", 0)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and _number(step):
            pts[int(step)] = float(v)  # a later row of the same step wins
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


def output_path(run_dir: Path, output: str | Path | None, formats) -> Path:
    """Where the figure goes: RUN_DIR/curves.png by default, DIR/curves.png for an existing directory,
    NAME.png for a name without an extension; a ConfigError for an extension matplotlib cannot write."""
    if not output:
        return run_dir / DEFAULT_NAME
    path = Path(output)
    if path.is_dir():
        return path / DEFAULT_NAME
    if not path.suffix:
        return path.with_name(path.name + ".png")  # what matplotlib writes for it: say so
    if path.suffix[1:].lower() not in formats:
        raise ConfigError(
            f"--output {output}: matplotlib cannot write {path.suffix!r} files; end the name in one of "
            f"{', '.join('.' + f for f in sorted(formats))} (or pass a directory: DIR/{DEFAULT_NAME})"
        )
    return path


def _save(fig, output: Path) -> None:
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, dpi=100)
    except OSError as e:
        raise ConfigError(
            f"cannot write {output} ({e.strerror or e}); pass --output with a file in a writable place"
        ) from None


def plot(run_dir: str | Path, output: str | Path | None = None, smooth: int = 1) -> Path:
    """Write the run's curves (default RUN_DIR/curves.png); returns the path of the file written."""
    plt = _pyplot()
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not any("loss" in r for r in rows):
        raise ConfigError(f"{run_dir}/metrics.jsonl has no training steps yet")
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(8, 2.6 * len(PANELS)), sharex=True)
    try:
        output = output_path(run_dir, output, fig.canvas.get_supported_filetypes())
        for ax, (title, keys) in zip(axes, PANELS):
            _draw_panel(ax, title, keys, rows, smooth)
        axes[-1].set_xlabel("step")
        fig.suptitle(f"gcpo-lite run: {run_dir.name}", fontsize=11)
        fig.tight_layout()
        _save(fig, output)
    finally:
        plt.close(fig)
    return output
