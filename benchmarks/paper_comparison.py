"""GCPO vs GRPO vs DAPO-style dynamic sampling from a base with partial skill: the paper's comparison, small.

    python benchmarks/paper_comparison.py [--seeds 3] [--steps 120] [--write-md docs/BENCHMARKS.md] \
        [--plot docs/paper_comparison.png] [section.key=value ...]

The paper (arXiv 2510.07790) trains R1-Distill-Qwen-1.5B, a base that already solves some problems, and finds
GCPO ahead of DAPO/GRPO because it keeps learning from problems where every rollout fails. Here the base is the
embedded demo's (`embedded-tiny-qwen2-addition`: partial skill, ~20% held-out), the task two-digit addition,
G = 4 and 256 prompts a step for every method:
  GCPO     gcpo.gold_injection=all_wrong (the default)
  GRPO     gcpo.gold_injection=never
  DAPO-DS  gcpo.gold_injection=never gcpo.dynamic_sampling=true: groups with all-equal rewards are dropped and
           refilled from new prompts (at most 3 extra rounds); its extra rollouts are counted
  GCPO-DS  gcpo.gold_injection=all_wrong gcpo.dynamic_sampling=true: gold rescues the all-wrong groups it can;
           only groups still without contrast (all correct, or all wrong without a usable gold) are refilled
The hard subset: held-out problems whose answer has three digits (a carry into the hundreds), where the base
fails most groups (the fraction of all-wrong groups of 4 at temperature 1 is measured and printed).
Each method runs --seeds seeds (train.seed = 0..n-1) for --steps steps, one run after another in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_md import write_section  # this folder (the script's own, first on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gcpo_lite.config import apply_overrides, from_dict  # noqa: E402
from gcpo_lite.demo.default_run import EMBEDDED_DEFAULT  # noqa: E402

SECTION = "## GCPO vs GRPO vs DAPO dynamic sampling from a base with partial skill (issue 10)"
METHODS = {
    "GCPO": ["gcpo.gold_injection=all_wrong"],
    "GRPO": ["gcpo.gold_injection=never"],
    "DAPO-DS": ["gcpo.gold_injection=never", "gcpo.dynamic_sampling=true"],
    "GCPO-DS": ["gcpo.gold_injection=all_wrong", "gcpo.dynamic_sampling=true"],
}


def hard_subset(examples):
    return [ex for ex in examples if len(ex.answer.strip()) >= 3]


def all_wrong_fraction(trainer, examples, G: int) -> float:
    """Fraction of groups of G samples (training temperature) with no correct sample."""
    prompts = [trainer._prompt(ex) for ex in examples for _ in range(G)]
    completions, _ = trainer.generate(
        prompts, trainer.cfg.gcpo.temperature, trainer.cfg.gcpo.max_completion_length
    )
    texts = trainer.tokenizer.batch_decode(completions, skip_special_tokens=True)
    ok = [trainer.rewards.correct(t, examples[i // G]) for i, t in enumerate(texts)]
    return sum(not any(ok[j * G : (j + 1) * G]) for j in range(len(examples))) / max(1, len(examples))


def run(method: str, seed: int, steps: int, extra: list[str], work: Path) -> dict:
    from gcpo_lite.train.trainer import Trainer

    out = work / f"{method}-{seed}"
    overrides = METHODS[method] + [
        f"train.seed={seed}",
        f"train.max_steps={steps}",
        "train.max_minutes=null",
        "train.eval_steps=20",
        f"train.output_dir={out}",
        *extra,
    ]
    trainer = Trainer(from_dict(apply_overrides(EMBEDDED_DEFAULT, overrides)), progress=False)
    hard = hard_subset(trainer.eval_examples)
    base_hard = trainer.evaluate(hard)
    base_all_wrong = (
        all_wrong_fraction(trainer, hard, trainer.cfg.gcpo.num_generations) if seed == 0 else None
    )
    t0 = time.time()
    trainer.train()
    wall = time.time() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve, rollouts, elapsed = [], 0, 0.0
    for r in rows:
        rollouts += r.get("rollouts", 0)
        elapsed = r.get("elapsed_s", elapsed)
        if "eval_accuracy" in r:
            curve.append((r["step"], rollouts, elapsed / 60, r["eval_accuracy"]))
    return {
        "method": method,
        "seed": seed,
        "curve": curve,
        "final": curve[-1][3],
        "hard_base": base_hard,
        "hard_final": trainer.evaluate(hard),
        "hard_n": len(hard),
        "base_all_wrong": base_all_wrong,
        "rollouts": rollouts,
        "wall": wall,
    }


def spread(values) -> str:
    return f"{statistics.mean(values):.1%} [{min(values):.1%}-{max(values):.1%}]"


def tables(runs: list[dict]) -> tuple[str, str]:
    summary = [
        "| method | held-out final | hard subset: base -> final | rollouts | wall time |",
        "|---|---|---|---|---|",
    ]
    curves = [
        "| method | step | rollouts (mean) | minutes (mean) | held-out acc mean [min-max] |",
        "|---|---|---|---|---|",
    ]
    for m in METHODS:
        rs = [r for r in runs if r["method"] == m]
        if not rs:
            continue
        summary.append(
            f"| {m} | {spread([r['final'] for r in rs])} | {spread([r['hard_base'] for r in rs])} -> "
            f"{spread([r['hard_final'] for r in rs])} | {statistics.mean(r['rollouts'] for r in rs):,.0f} | "
            f"{statistics.mean(r['wall'] for r in rs) / 60:.2f} min |"
        )
        for k in range(min(len(r["curve"]) for r in rs)):
            pts = [r["curve"][k] for r in rs]
            curves.append(
                f"| {m} | {pts[0][0]} | {statistics.mean(p[1] for p in pts):,.0f} | "
                f"{statistics.mean(p[2] for p in pts):.2f} | {spread([p[3] for p in pts])} |"
            )
    return "\n".join(summary), "\n".join(curves)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for m in METHODS:
        rs = [r for r in runs if r["method"] == m]
        if not rs:
            continue
        n = min(len(r["curve"]) for r in rs)
        for ax, xi, label in ((axes[0], 1, "rollouts"), (axes[1], 2, "minutes")):
            x = [statistics.mean(r["curve"][k][xi] for r in rs) for k in range(n)]
            ys = [[r["curve"][k][3] for r in rs] for k in range(n)]
            ax.plot(x, [statistics.mean(y) for y in ys], label=m)
            ax.fill_between(x, [min(y) for y in ys], [max(y) for y in ys], alpha=0.2)
            ax.set_xlabel(label)
            ax.set_ylabel("held-out accuracy (greedy)")
    axes[0].legend()
    fig.suptitle("embedded addition base (partial skill), G=4: mean and min-max over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--write-md", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="gcpo-paper-") as tmp:
        for seed in range(args.seeds):
            for m in args.methods.split(","):  # interleaved: machine drift hits every method alike
                r = run(m, seed, args.steps, args.overrides, Path(tmp))
                runs.append(r)
                print(
                    f"{m} seed {seed}: held-out {r['curve'][0][3]:.1%} -> {r['final']:.1%}; hard subset "
                    f"{r['hard_base']:.1%} -> {r['hard_final']:.1%} (n={r['hard_n']}); {r['rollouts']:,} rollouts, "
                    f"{r['wall'] / 60:.2f} min"
                    + (
                        f"; base all-wrong groups on hard: {r['base_all_wrong']:.0%}"
                        if r["base_all_wrong"] is not None
                        else ""
                    ),
                    flush=True,
                )
    summary, curves = tables(runs)
    print(summary + "\n\n" + curves)
    if args.plot:
        plot(runs, args.plot)
    if args.write_md:
        wrong = next(r["base_all_wrong"] for r in runs if r["base_all_wrong"] is not None)
        cmd = f"python benchmarks/paper_comparison.py --seeds {args.seeds} --steps {args.steps}"
        body = (
            f"{SECTION}\n\nCommand: `{cmd}{' --plot ' + str(args.plot) if args.plot else ''}` ({platform.machine()}, "
            f"{os.cpu_count()} cores). Base: `embedded-tiny-qwen2-addition`, G=4, 256 prompts a step, "
            f"{args.steps} steps, seeds 0-{args.seeds - 1}. Hard subset: {runs[0]['hard_n']} held-out problems with "
            f"a three-digit answer; at the base, {wrong:.0%} of their groups of 4 are all wrong.\n\n"
            f"{summary}\n\n{curves}\n" + (f"\n![curves]({args.plot.name})\n" if args.plot else "")
        )
        write_section(args.write_md, SECTION, body)
        print(f"wrote {SECTION!r} to {args.write_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
