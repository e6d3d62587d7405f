"""GCPO vs GRPO on the embedded default task (issue 2, "Proof that it learns").

    python benchmarks/gcpo_vs_grpo.py [--minutes 4.5] [--threads N] [--write-md docs/BENCHMARKS.md] \
        [section.key=value ...]

Trains the embedded default (presets.EMBEDDED_DEFAULT: tiny random Qwen2, 4-bit NF4 + LoRA, two-digit addition)
twice from the same random initialisation and seed: GCPO (gcpo.gold_injection=all_wrong) and plain GRPO
(gcpo.gold_injection=never). Records greedy held-out accuracy at every eval step, prints both curves, the
step and minute each run first reaches 50% and 80% held-out accuracy (or that it did not within the budget),
and the accuracy of the best constant answer on the same held-out prompts (must be <= 10%).
The two runs go one after the other so that neither slows the other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench_md import write_section  # this folder (the script's own, first on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gcpo_lite.config import apply_overrides, from_dict  # noqa: E402
from gcpo_lite.demo.default_run import EMBEDDED_DEFAULT  # noqa: E402

THRESHOLDS = (0.5, 0.8)
SECTION = "## GCPO vs GRPO on the embedded task (issue 2)"


def best_constant(eval_examples, verify) -> tuple[str, float]:
    """(answer, accuracy) of the constant completion that passes the most held-out prompts."""
    candidates = sorted({ex.answer for ex in eval_examples})
    best = max(candidates, key=lambda c: sum(verify(c, ex) for ex in eval_examples))
    return best, sum(verify(best, ex) for ex in eval_examples) / len(eval_examples)


def read_run(label: str, out: Path, wall_s: float | None = None) -> dict:
    """Curve and summary of a finished run from its metrics.jsonl."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    curve, last_elapsed = [], 0.0
    for r in rows:
        last_elapsed = r.get("elapsed_s", last_elapsed)
        if "eval_accuracy" in r:
            curve.append((r["step"], last_elapsed / 60, r["eval_accuracy"]))
    step_rows = [r for r in rows if "rollout_s" in r]
    steps = max((r["step"] for r in rows), default=0)
    step_s = sum(r["rollout_s"] + r["update_s"] for r in step_rows) / max(1, len(step_rows))
    reach = {thr: next(((s, m) for s, m, a in curve if a >= thr), None) for thr in THRESHOLDS}
    return {
        "label": label,
        "curve": curve,
        "steps": steps,
        "step_s": step_s,
        "reach": reach,
        "wall_s": wall_s if wall_s is not None else last_elapsed,
    }


def run_one(label: str, overrides: list[str]) -> dict:
    from gcpo_lite.train.trainer import Trainer

    cfg = from_dict(apply_overrides(EMBEDDED_DEFAULT, overrides))
    out = Path(cfg.train.output_dir)
    if (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()  # metrics.jsonl is appended to; start this run's curve afresh
    print(
        f"== {label}: {cfg.prompts_per_step} prompts x {cfg.gcpo.num_generations} per step, "
        f"gold_injection={cfg.gcpo.gold_injection}, max_minutes={cfg.train.max_minutes} -> {out}",
        flush=True,
    )
    trainer = Trainer(cfg, progress=False)
    t0 = time.time()
    trainer.train()
    return read_run(label, out, time.time() - t0)


def fmt_reach(hit, budget_steps: int, budget_min: float) -> str:
    if hit is None:
        return f"not reached in {budget_steps} steps / {budget_min:.1f} min"
    return f"step {hit[0]}, {hit[1]:.2f} min"


def machine(threads) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__}, "
        f"{threads or torch.get_num_threads()} torch threads (train.num_threads), python {platform.python_version()}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="budget per run (train.max_minutes; default: the preset's)",
    )
    p.add_argument("--max-steps", type=int, default=None, help="train.max_steps (default: the preset's)")
    p.add_argument("--threads", type=int, default=None, help="train.num_threads (default: the preset's)")
    p.add_argument("--out", default="runs/gcpo-vs-grpo", help="parent of the two run directories")
    p.add_argument("--only", choices=("gcpo", "grpo"), help="run just one of the two")
    p.add_argument("--report-only", action="store_true", help="no training: report the runs already in --out")
    p.add_argument(
        "--write-md", metavar="PATH", help="replace this script's section of PATH (docs/BENCHMARKS.md)"
    )
    p.add_argument("overrides", nargs="*", help="extra section.key=value overrides for both runs")
    args = p.parse_args()
    common = list(args.overrides)
    if args.minutes is not None:
        common.append(f"train.max_minutes={args.minutes}")
    if args.max_steps is not None:
        common.append(f"train.max_steps={args.max_steps}")
    if args.threads is not None:
        common.append(f"train.num_threads={args.threads}")
    cfg = from_dict(apply_overrides(EMBEDDED_DEFAULT, common))
    runs = []
    for label, inj in (("GCPO", "all_wrong"), ("GRPO", "never")):
        if args.only and args.only != label.lower():
            continue
        out = Path(args.out) / label.lower()
        runs.append(
            read_run(label, out)
            if args.report_only
            else run_one(label, common + [f"gcpo.gold_injection={inj}", f"train.output_dir={out}"])
        )

    from gcpo_lite.data.datasets import load_examples
    from gcpo_lite.data.tasks import TASKS

    _, held_out = load_examples(cfg.data, cfg.train.seed)
    const, const_acc = best_constant(held_out, TASKS["addition"].verify)
    lines = [
        f"held-out prompts: {len(held_out)}; best constant answer {const!r}: {const_acc:.1%} "
        f"({'ok' if const_acc <= 0.10 else 'FAILS'} <= 10%)"
    ]
    for r in runs:
        lines.append(
            f"{r['label']}: {r['steps']} steps in {r['wall_s'] / 60:.2f} min "
            f"({r['steps'] / max(1e-9, r['wall_s']):.2f} steps/s with evals, "
            f"{r['step_s'] * 1000:.0f} ms per step without); "
            + "; ".join(
                f"{int(t * 100)}%: {fmt_reach(r['reach'][t], r['steps'], r['wall_s'] / 60)}"
                for t in THRESHOLDS
            )
        )
    print("\n".join(lines))
    by_step: dict = {}
    for r in runs:
        for s, m, a in r["curve"]:
            by_step.setdefault(s, {})[r["label"]] = (m, a)
    header = "| step | " + " | ".join(f"{r['label']} min | {r['label']} held-out acc" for r in runs) + " |"
    table = [header, "|---|" + "---|---|" * len(runs)]
    for s in sorted(by_step):
        cells = [by_step[s].get(r["label"]) for r in runs]
        table.append(
            f"| {s} | " + " | ".join(f"{c[0]:.2f} | {c[1]:.1%}" if c else "- | -" for c in cells) + " |"
        )
    print("\n".join(table))

    if args.write_md:
        cmd = "python benchmarks/gcpo_vs_grpo.py " + " ".join(a for a in sys.argv[1:] if a != "--report-only")
        md = [
            SECTION,
            "",
            f"Machine: {machine(cfg.train.num_threads)}.",
            f"Command: `{cmd.strip()}`",
            f"Preset: presets.EMBEDDED_DEFAULT ({cfg.prompts_per_step} prompts x {cfg.gcpo.num_generations} "
            f"completions per step, LoRA r={cfg.lora.r} alpha={cfg.lora.alpha}, lr {cfg.train.learning_rate}); "
            "same random initialisation and seed for both runs; greedy eval.",
            "",
        ]
        md += [f"- {line}" for line in lines] + [""] + table
        write_section(Path(args.write_md), SECTION, "\n".join(md) + "\n")
        print(f"wrote {SECTION!r} to {args.write_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
