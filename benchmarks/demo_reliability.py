"""Does `gcpo-lite train` (no arguments) learn on every run? Runs the default N times and tabulates it (issue 10).

    python benchmarks/demo_reliability.py --seeds 10 [--write-md docs/BENCHMARKS.md] [section.key=value ...]

Each run is the README's first command as a new user runs it: `gcpo-lite train` in a fresh process with a fresh
GCPO_LITE_CACHE, so the first-run work (creating the embedded model and pretraining its base) is inside the
measured time; runs go one after the other so that none slows another. Seed k sets train.seed=k. Per run: the
final held-out accuracy, the wall time (from process start) at which held-out accuracy first reached 50% and
80% (eval every train.eval_steps), and the whole command's wall time.
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
import time
from pathlib import Path

from bench_md import write_section  # this folder (the script's own, first on sys.path)

SECTION = "## Demo reliability: `gcpo-lite train` over seeds (issue 10)"
THRESHOLDS = (0.5, 0.8)


def run_seed(seed: int, extra: list[str], work: Path) -> dict:
    out, cache = work / f"seed-{seed}", work / f"cache-{seed}"
    env = {**os.environ, "GCPO_LITE_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "gcpo_lite.cli", "train", "--output-dir", str(out), "--no-progress"]
    cmd += [f"train.seed={seed}", *extra]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics, train_start = out / "metrics.jsonl", None
    while proc.poll() is None:  # the training clock (elapsed_s) starts when metrics.jsonl first appears
        if train_start is None and metrics.exists():
            train_start = time.time() - t0
        time.sleep(0.2)
    wall = time.time() - t0
    log = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed} failed (exit {proc.returncode}):\n{log[-3000:]}")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    evals = [(r.get("elapsed_s", 0.0), r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]
    start = train_start or 0.0
    reach = {t: next((start + s for s, a in evals if a >= t), None) for t in THRESHOLDS}
    steps = max((r["step"] for r in rows), default=0)
    return {
        "seed": seed,
        "final": evals[-1][1],
        "first": evals[0][1],
        "reach": reach,
        "wall": wall,
        "steps": steps,
    }


def fmt_t(t) -> str:
    return "not reached" if t is None else f"{t / 60:.2f} min"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--write-md", type=Path)
    ap.add_argument(
        "overrides", nargs="*", help="extra section.key=value overrides (the default run has none)"
    )
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="gcpo-demo-") as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            r = run_seed(seed, args.overrides, Path(tmp))
            runs.append(r)
            print(
                f"seed {seed}: start {r['first']:.1%} -> final {r['final']:.1%} after {r['steps']} steps; "
                f"50% at {fmt_t(r['reach'][0.5])}, 80% at {fmt_t(r['reach'][0.8])}; wall {r['wall'] / 60:.2f} min",
                flush=True,
            )
    finals = [r["final"] for r in runs]
    hit50 = sum(r["reach"][0.5] is not None for r in runs)
    summary = (
        f"{hit50} of {len(runs)} runs reached 50% held-out accuracy; final accuracy median "
        f"{statistics.median(finals):.1%}, worst {min(finals):.1%}, best {max(finals):.1%}; wall time per run "
        f"{min(r['wall'] for r in runs) / 60:.2f}-{max(r['wall'] for r in runs) / 60:.2f} min."
    )
    print(summary)
    if args.write_md:
        cmd = (
            "python benchmarks/demo_reliability.py --seeds "
            + str(args.seeds)
            + "".join(" " + o for o in args.overrides)
        )
        table = ["| seed | start (step 0) | final held-out | steps | time to 50% | time to 80% | wall time |"]
        table.append("|---|---|---|---|---|---|---|")
        for r in runs:
            table.append(
                f"| {r['seed']} | {r['first']:.1%} | {r['final']:.1%} | {r['steps']} | {fmt_t(r['reach'][0.5])} | "
                f"{fmt_t(r['reach'][0.8])} | {r['wall'] / 60:.2f} min |"
            )
        body = (
            f"{SECTION}\n\nCommand: `{cmd}` ({platform.machine()}, {os.cpu_count()} cores; each run a fresh "
            f"process and a fresh model cache, so first-run setup is included; times from process start).\n\n"
            + "\n".join(table)
            + f"\n\n{summary}\n"
        )
        write_section(args.write_md, SECTION, body)
        print(f"wrote {SECTION!r} to {args.write_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
