"""The update's forward + backward with and without shared prompts and least-padding length buckets.

    python benchmarks/bench_update.py [--sizes h256,h1024] [--repeats 4] [--threads 2] [--work-dir DIR]
        [--write-md docs/BENCHMARKS.md]

One process per size loads a random 4-bit + LoRA Qwen2 of bench_vs_trl.py's sizes (written once to
--work-dir) as `gcpo-lite train` does with bench_vs_trl.py's settings (64 rows = 16 prompts x 4, up to 48
completion tokens, fp32 compute, no gradient checkpointing, 4 length buckets). It samples one batch, then
runs the same rows' forward + backward (`Trainer._micro_step` over the whole batch, no optimizer step) in four
variants, alternating, --repeats times:

  plain     train.share_prompts=false, buckets of equal row counts (the update before this change)
  buckets   least-padding bucket cuts (length_buckets.bucket_bounds)
  prompts   shared prompts, equal-count buckets
  both      shared prompts and least-padding cuts (the default now)

Equal-count cuts are put back by replacing trainer.bucket_bounds for those variants. Every variant's LoRA
gradient is compared with plain's (relative difference of the flattened gradients), and the table gives the
median time, the ratio to plain, and the tokens each runs (prompt tokens through the decoder, completion
tokens with padding).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_md import report  # noqa: E402  (this folder)

SECTION = "## Update: shared prompts and least-padding buckets (issue 12)"
VARIANTS = {"plain": (False, False), "buckets": (False, True), "prompts": (True, False), "both": (True, True)}


def equal_bounds(lengths, parts: int) -> list[int]:
    """The cuts before least-padding buckets: min(parts, n) parts of equal row counts."""
    n = len(lengths)
    parts = max(1, min(parts, n))
    return [n * k // parts for k in range(parts + 1)]


def trainer_for(size: str, work: Path, threads: int):
    import bench_vs_trl as vs

    from gcpo_lite.cli import build_parser
    from gcpo_lite.commands.train import config_from_args
    from gcpo_lite.train.trainer import Trainer

    model_dir = work / size / "model"
    if not (model_dir / "config.json").is_file():
        vs.make_model(model_dir, size)
    a = argparse.Namespace(warmup_steps=1, steps=1, completions=64, num_generations=4, max_completion_length=48,
                           learning_rate=1e-5, threads=threads)  # fmt: skip
    cmd = vs.gcpo_command(model_dir, work / size / "run", a)
    args = build_parser().parse_args(cmd[cmd.index("train") :])
    cfg, _ = config_from_args(args)
    return Trainer(cfg, progress=False)


def measure(size: str, a: argparse.Namespace) -> list[str]:
    import torch

    from gcpo_lite.algorithm.update_rows import UpdateRows
    from gcpo_lite.policy import length_buckets
    from gcpo_lite.train import trainer

    tr = trainer_for(size, a.work_dir, a.threads)
    batch = tr.rollout(tr.next_examples(16))
    rows, _ = tr._rows_to_train(batch)
    work = UpdateRows(batch, rows, tr.cfg.gcpo.loss_type)
    params = [p for p in tr.model.parameters() if p.requires_grad]

    def run(name: str):
        share, least = VARIANTS[name]
        tr._share_prompts = share
        trainer.bucket_bounds = length_buckets.bucket_bounds if least else equal_bounds
        for p in params:
            p.grad = None
        tr.model.train()
        start = time.perf_counter()
        tr._micro_step(work, None, None, 0, len(rows))
        return time.perf_counter() - start, torch.cat([p.grad.flatten() for p in params])

    times = {name: [] for name in VARIANTS}
    grads = {name: run(name)[1] for name in VARIANTS}  # also the warm-up
    for r in range(a.repeats):
        for name in VARIANTS if r % 2 == 0 else reversed(VARIANTS):
            times[name].append(run(name)[0])
    trainer.bucket_bounds = length_buckets.bucket_bounds
    lengths = work.lengths
    n_prompts = len({tuple(batch.prompts[i]) for i in rows})
    prompt_width = max(len(batch.prompts[i]) for i in rows)
    out, base = [], statistics.median(times["plain"])
    for name, (share, least) in VARIANTS.items():
        bounds = (length_buckets.bucket_bounds if least else equal_bounds)(lengths, tr._length_buckets())
        completion = length_buckets.padded_tokens(lengths, bounds)
        prompt = (n_prompts if share else len(rows)) * prompt_width
        diff = float((grads[name] - grads["plain"]).norm() / grads["plain"].norm())
        med = statistics.median(times[name])
        out.append(
            f"| {size} | {name} | {med:.3f} | {med / base:.2f} | {prompt} | {completion} | {diff:.1e} |"
        )
        print(out[-1], flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="h256,h1024")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/gcpo_bench_update"))
    p.add_argument("--write-md", type=Path)
    a = p.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    rows = [line for size in a.sizes.split(",") for line in measure(size, a)]
    text = "\n".join(
        [
            SECTION,
            "",
            f"Command: `python benchmarks/bench_update.py {' '.join(sys.argv[1:])}`",
            "",
            f"Machine: {platform.machine()}, {platform.platform()}, {a.threads} torch threads. One sampled batch "
            "of 64 rows (16 prompts x 4, up to 48 completion tokens) of bench_vs_trl.py's settings; the forward + "
            f"backward of all of them in 4 length buckets, each variant {a.repeats} times, alternating. Grad diff: "
            "|g - g_plain| / |g_plain| over all LoRA gradients.",
            "",
            "| size | variant | forward + backward (s, median) | vs plain | prompt tokens run | completion tokens "
            "run (padding included) | grad diff |",
            "|---|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    return report(text, a.write_md, SECTION)


if __name__ == "__main__":
    sys.exit(main())
