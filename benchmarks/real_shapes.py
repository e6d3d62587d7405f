"""Real-size shapes on this machine: a random Qwen2.5-0.5B (exact architecture, 151,936-wide vocabulary, tied
embeddings) with a synthetic tokenizer of the full size, through train -> eval -> export (issue 10).

    python benchmarks/real_shapes.py [--layers 24] [--steps 2] [--allocators caching,system] [--write-md FILE]

Runs, each as its own process: `gcpo-lite train` for --steps steps in 4-bit NF4 with LoRA (2 prompts x G=4,
completions of up to 32 tokens), `gcpo-lite eval` of the adapter, `gcpo-lite export`. Reports each command's
wall time and peak RSS (os.wait4), the training steps' measured peak RSS (metrics.jsonl: peak_memory_bytes)
against the memory plan's prediction (plan_predicted_peak_bytes), and the time per step. With more than one
--allocators value, `train` runs once per CPU allocator (memory.cpu_allocator), side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench_md import write_section  # noqa: E402
from synthetic_model import QWEN25_05B  # noqa: E402  (a dict: imports nothing heavy)

SECTION = "## Real-size shapes: Qwen2.5-0.5B architecture on this machine (issue 10)"
GiB = 2**30


def timed(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, output) of one command in its own process."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}")
    return time.time() - t0, usage.ru_maxrss * 1024, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=QWEN25_05B["num_hidden_layers"])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--allocators", default="caching", help="comma-separated memory.cpu_allocator values")
    ap.add_argument("--write-md", type=Path)
    args = ap.parse_args()
    cli = [sys.executable, "-m", "gcpo_lite.cli"]
    with tempfile.TemporaryDirectory(prefix="gcpo-real-") as tmp:
        model, run, export = Path(tmp) / "model", Path(tmp) / "run", Path(tmp) / "export"
        # Made in a child process: Linux keeps a process's peak RSS across fork + exec, so a model built in
        # this process would show up as every later command's peak.
        here = Path(__file__).resolve().parent
        make = (
            f"import sys; sys.path.insert(0, {str(here)!r}); from synthetic_model import QWEN25_05B, save_model; "
            f"from pathlib import Path; "
            f"save_model(Path({str(model)!r}), {{**QWEN25_05B, 'num_hidden_layers': {args.layers}}})"
        )
        make_s, _, _ = timed([sys.executable, "-c", make])
        allocators = args.allocators.split(",")
        results, steps_by = {}, {}
        for alloc in allocators:
            run = Path(tmp) / f"run-{alloc}"
            train = [
                *cli, "train", "--model", str(model), "--dataset", "addition", "--output-dir", str(run),
                "--no-progress", f"train.max_steps={args.steps}", "train.batch_size=8", "gcpo.num_generations=4",
                "gcpo.max_completion_length=32", "train.eval_steps=0", "data.eval_size=8",
                f"memory.cpu_allocator={alloc}",
            ]  # fmt: skip
            results[f"train ({alloc} allocator)"] = timed(train)
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            steps_by[alloc] = [r for r in rows if "rollout_s" in r]
        run = Path(tmp) / f"run-{allocators[0]}"
        evaluate = [
            *cli, "eval", "--model", str(model), "--adapter", str(run / "adapter"), "--dataset", "addition",
            "--limit", "8", "--max-new-tokens", "32", "--no-progress",
        ]  # fmt: skip
        results["eval"] = timed(evaluate)
        results["export"] = timed([*cli, "export", str(run), "--output-dir", str(export)])
    step_lines = []
    for alloc, steps in steps_by.items():
        measured = max(r["peak_memory_bytes"] for r in steps)
        predicted = steps[-1]["plan_predicted_peak_bytes"]
        times = ", ".join(f"{r['rollout_s'] + r['update_s']:.1f} s" for r in steps)
        step_lines.append(
            f"- {alloc} allocator: steps {times} (rollout + update, 8 rollouts of up to 32 tokens); steps' peak RSS "
            f"{measured / GiB:.2f} GiB vs the plan's {predicted / GiB:.2f} GiB: {measured / predicted - 1:+.0%}"
        )
    lines = [
        f"model: random Qwen2.5-0.5B architecture ({args.layers} layers, hidden 896, 14/2 heads, vocab 151,936, "
        f"tied), synthetic 151,665-token tokenizer; made and saved in {make_s:.0f} s",
        "",
        "| command | wall time | peak RSS |",
        "|---|---|---|",
        *(f"| gcpo-lite {k} | {v[0]:.0f} s | {v[1] / GiB:.2f} GiB |" for k, v in results.items()),
        "",
        *step_lines,
    ]
    print("\n".join(lines))
    if args.write_md:
        body = (
            f"{SECTION}\n\nCommand: `python benchmarks/real_shapes.py --layers {args.layers} --steps {args.steps} "
            f"--allocators {args.allocators}` "
            f"({platform.machine()}, {os.cpu_count()} cores, torch CPU).\n\n" + "\n".join(lines) + "\n"
        )
        write_section(args.write_md, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
