"""Train an example task (examples/<task>/) over N seeds through the CLI and tabulate held-out accuracy.

    python benchmarks/example_task.py                       # examples/smaller_number, seeds 0 1 2
    python benchmarks/example_task.py --seeds 5 --max-steps 600 --json runs/example-task/summary.json

Each seed is one `gcpo-lite train` in a fresh subprocess, one after another (they would only share the cores),
into OUT_ROOT/seedN (a previous run there is deleted first). The table has, per seed, from metrics.jsonl:
held-out accuracy at step 0 (the base) and at the end, the policy's mean reward (gold rows excluded) over the
first and the last 10 steps, the fraction of groups that got gold at the start and the end, the steps done
and the wall time of the whole process (model load and evals included). "last 3 evals" is the mean of the last
three held-out evals, less noisy than the final one alone.

Each run is `gcpo-lite train --dataset TASK/train.jsonl --reward-fn TASK/rewards.py:correct
--reward-fn TASK/rewards.py:format_reward reward.weights=[1.0,0.2] reward.correct_fn=correct` with the demo's
settings (SETTINGS); its held-out rows are data.eval_size rows carved off train.jsonl by train.seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The embedded demo's settings (configs/tiny_addition_cpu.yaml) where they apply; answers are 2 tokens + EOS.
SETTINGS = [
    "lora.r=64",
    "lora.alpha=128",
    "gcpo.num_generations=4",
    "gcpo.temperature=1.0",
    "gcpo.max_completion_length=4",
    "train.batch_size=1024",
    "train.learning_rate=3e-3",
    "train.eval_steps=25",
    "train.kernels=reference",
    "train.save_minutes=1.0",
    "model.gradient_checkpointing=false",
    "data.eval_size=500",
]


def train_command(a: argparse.Namespace, seed: int, out_dir: Path) -> list[str]:
    task = a.task_dir
    fns = [f"{task}/rewards.py:correct", f"{task}/rewards.py:format_reward"]
    run = ["--output-dir", str(out_dir), "--no-progress", "--max-steps", str(a.max_steps)]
    run += [f"train.seed={seed}", f"train.max_minutes={a.max_minutes}", *SETTINGS, *a.override]
    if a.model:
        run += ["--model", a.model]
    cmd = [sys.executable, "-m", "gcpo_lite", "train", "--dataset", f"{task}/train.jsonl"]
    for f in fns:
        cmd += ["--reward-fn", f]
    return cmd + ["reward.weights=[1.0,0.2]", "reward.correct_fn=correct", *run]


def summarize(metrics_path: Path) -> dict:
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    evals = [(r["step"], r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]
    steps = [r for r in rows if "reward_mean" in r]

    def mean(key: str, part: list) -> float:
        vals = [r[key] for r in part if r.get(key) is not None]
        return statistics.fmean(vals) if vals else float("nan")

    return {
        "eval_step0": evals[0][1] if evals and evals[0][0] == 0 else None,
        "eval_final": evals[-1][1] if evals else None,
        "eval_last3": statistics.fmean(acc for _, acc in evals[-3:]) if evals else None,
        "evals": evals,
        "reward_first10": mean("reward_mean", steps[:10]),
        "reward_last10": mean("reward_mean", steps[-10:]),
        "gold_first10": mean("gold_injected_frac", steps[:10]),
        "gold_last10": mean("gold_injected_frac", steps[-10:]),
        "steps": steps[-1]["step"] if steps else 0,
        "train_s": steps[-1].get("elapsed_s") if steps else None,
    }


def run_seed(a: argparse.Namespace, seed: int) -> dict:
    out_dir = a.out_root / f"seed{seed}"
    if out_dir.exists() and ((out_dir / "config.yaml").exists() or (out_dir / "metrics.jsonl").exists()):
        shutil.rmtree(out_dir)  # an earlier run of this benchmark
    cmd = train_command(a, seed, out_dir)
    print("$ " + " ".join(cmd), flush=True)
    a.out_root.mkdir(parents=True, exist_ok=True)
    log = a.out_root / f"seed{seed}.log"
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    wall, load1 = time.perf_counter() - t0, os.getloadavg()[0]
    if proc.returncode != 0 or not (out_dir / "metrics.jsonl").is_file():
        tail = log.read_text().splitlines()[-5:]
        raise SystemExit(f"seed {seed}: exit {proc.returncode}; {log} ends:\n  " + "\n  ".join(tail))
    # the 1-minute load average before and after: other work on the cores slows a run (the machine has
    # os.cpu_count() cores; a load above that means the run did not have them to itself)
    loads = {"load_before": load0, "load_after": load1}
    return {"seed": seed, "wall_s": wall, **loads, **summarize(out_dir / "metrics.jsonl")}


def pct(x) -> str:
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def print_table(results: list[dict]) -> None:
    print(
        "\nseed | eval step 0 | eval final | last 3 evals | reward first10 -> last10 | gold first10 -> last10 "
        "| steps | wall | load"
    )
    for r in results:
        print(
            f"{r['seed']:4d} | {pct(r['eval_step0']):>11} | {pct(r['eval_final']):>10} | {pct(r['eval_last3']):>12} | "
            f"{r['reward_first10']:14.3f} -> {r['reward_last10']:6.3f} | "
            f"{r['gold_first10']:12.2f} -> {r['gold_last10']:6.2f} | {r['steps']:5d} | {r['wall_s']:5.0f} s | "
            f"{r['load_before']:.1f}->{r['load_after']:.1f}"
        )
    finals = [r["eval_final"] for r in results if r["eval_final"] is not None]
    if finals:
        print(
            f"final held-out accuracy: mean {100 * statistics.fmean(finals):.1f}%, "
            f"min {100 * min(finals):.1f}%, max {100 * max(finals):.1f}% over {len(finals)} seeds"
        )
    for r in results:
        print(f"seed {r['seed']} evals (step, accuracy): {r['evals']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task-dir", default="examples/smaller_number", help="relative to the repository root")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--max-minutes", type=float, default=4.0, help="train.max_minutes, a cap per seed")
    p.add_argument("--model", default=None, help="--model (default: none, the embedded tiny model)")
    p.add_argument("--out-root", type=Path, default=ROOT / "runs/example-task")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("override", nargs="*", help="extra section.key=value overrides for every seed")
    a = p.parse_args()
    print(f"task: {a.task_dir}; seeds {a.seed_start}..{a.seed_start + a.seeds - 1}; {os.cpu_count()} cores")
    results = [run_seed(a, s) for s in range(a.seed_start, a.seed_start + a.seeds)]
    print_table(results)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"settings": SETTINGS, "results": results}, indent=1))


if __name__ == "__main__":
    main()
