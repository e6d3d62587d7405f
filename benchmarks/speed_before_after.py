"""Held-out learning on the embedded task with issue 12's speed work on and off, side by side (issue 12).

    python benchmarks/speed_before_after.py [--seeds 2] [--minutes 2] [--plot docs/speed_before_after.png]
        [--write-md docs/BENCHMARKS.md]

"after" is `gcpo-lite train` as shipped. "before" turns off the speed changes:
    rollout.share_prompts=false rollout.drop_finished=false memory.dequantized_base=false train.length_buckets=1
    train.share_prompts=false
(the caching CPU allocator stays on in both: it is issue 10's memory fix, not a speed change). Runs alternate
(before, after per seed) in fresh processes with train.max_minutes=--minutes. Per run: steps done, median step
time (rollout + update), held-out accuracy at the end, and the eval curve against wall time (the PNG).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_md import write_section  # this folder (the script's own, first on sys.path)

SECTION = "## Speed work and learning: the embedded demo before / after (issue 12)"
BEFORE = [
    "rollout.share_prompts=false",
    "rollout.drop_finished=false",
    "memory.dequantized_base=false",
    "train.length_buckets=1",
    "train.share_prompts=false",
]


def run(variant: str, seed: int, minutes: float, work: Path) -> dict:
    out = work / f"{variant}-{seed}"
    cmd = [sys.executable, "-m", "gcpo_lite.cli", "train", "--output-dir", str(out), "--no-progress"]
    cmd += [f"train.seed={seed}", f"train.max_minutes={minutes}", *(BEFORE if variant == "before" else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} seed {seed} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "rollout_s" in r]
    curve, elapsed = [], 0.0
    for r in rows:  # the closing eval row (after max_minutes) has no elapsed_s: it comes after the last step
        elapsed = r.get("elapsed_s", elapsed)
        if "eval_accuracy" in r:
            curve.append((elapsed, r["eval_accuracy"]))
    return {
        "variant": variant,
        "seed": seed,
        "steps": len(steps),
        "step_s": statistics.median(r["rollout_s"] + r["update_s"] for r in steps),
        "rollout_s": statistics.median(r["rollout_s"] for r in steps),
        "update_s": statistics.median(r["update_s"] for r in steps),
        "final": curve[-1][1],
        "curve": curve,
    }


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in runs:
        xs, ys = zip(*r["curve"])
        style = "-" if r["variant"] == "after" else "--"
        ax.plot([x / 60 for x in xs], ys, style, label=f"{r['variant']} (seed {r['seed']})")
    ax.set_xlabel("wall time (min)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("embedded demo: issue 12's speed work off (before) and on (after)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--write-md", type=Path)
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="gcpo-speed-") as tmp:
        for seed in range(args.seeds):
            for variant in ("before", "after"):
                r = run(variant, seed, args.minutes, Path(tmp))
                runs.append(r)
                print(
                    f"{variant} seed {seed}: {r['steps']} steps, step {r['step_s']:.2f} s (rollout {r['rollout_s']:.2f}"
                    f" + update {r['update_s']:.2f}), final held-out {r['final']:.1%}",
                    flush=True,
                )
    table = [
        "| seed | variant | steps in budget | median step | rollout | update | final held-out |",
        "|---|---|---|---|---|---|---|",
    ]
    table += [
        f"| {r['seed']} | {r['variant']} | {r['steps']} | {r['step_s']:.2f} s | {r['rollout_s']:.2f} s | "
        f"{r['update_s']:.2f} s | {r['final']:.1%} |"
        for r in runs
    ]
    ratios = [a["step_s"] / b["step_s"] for b, a in zip(runs[::2], runs[1::2])]
    summary = "after / before median step time per seed: " + ", ".join(f"{x:.2f}" for x in ratios)
    print("\n".join(table) + "\n" + summary)
    if args.plot:
        plot(runs, args.plot)
    if args.write_md:
        cmd = f"python benchmarks/speed_before_after.py --seeds {args.seeds} --minutes {args.minutes}"
        body = (
            f"{SECTION}\n\nCommand: `{cmd}` ({platform.machine()}, {os.cpu_count()} cores; runs one after the "
            f"other). Before = `{' '.join(BEFORE)}`.\n\n"
            + "\n".join(table)
            + f"\n\n{summary}\n"
            + (f"\n![before/after]({args.plot.name})\n" if args.plot else "")
        )
        write_section(args.write_md, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
