"""One process vs `torchrun --nproc-per-node 2` on the same machine: steps per second at the same global batch.

    python benchmarks/bench_data_parallel.py [--steps 8] [--batch-size 32] [--max-completion-length 24]
        [--threads 2] [--repeats 2]
        [--model DIR] [--write-md docs/BENCHMARKS.md]

Both runs train the embedded model (4-bit NF4 + LoRA) on the built-in addition task with the same global batch
and settings. The single process gets --threads torch threads; under torchrun each of the 2 processes gets
--threads / 2, so both use the same cores. A step's time is rank 0's rollout_s + update_s from metrics.jsonl
(under torchrun it includes waiting for the other rank at the step's collectives). The first step of each run
(one-time costs) is dropped; the table gives the median step, steps per second and completions per second.
The runs alternate (1, 2, 1, 2, ...) so both see the same machine state. Run it on an otherwise idle machine.

On a 2-core machine this measures the communication and duplication overhead, not a speed-up: two processes
share the same two cores that one process with two threads uses. More GPUs (or more machines) is where data
parallelism pays; this is the honest figure a CPU-only machine can give.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from bench_md import report  # noqa: E402  (this folder)

SECTION = "## Data parallel: 1 process vs torchrun with 2 (issue 11)"


def train_args(model: str, run: Path, a: argparse.Namespace, threads: int) -> list[str]:
    return ["train", "--model", model, "--dataset", "addition", "--output-dir", str(run), "--no-progress",
            f"train.max_steps={a.steps + 1}", f"train.batch_size={a.batch_size}", "gcpo.num_generations=4",
            f"gcpo.max_completion_length={a.max_completion_length}", "train.eval_steps=0", "data.eval_size=4",
            f"train.num_threads={threads}", "train.save_steps=0"]  # fmt: skip


def run_once(processes: int, model: str, work: Path, a: argparse.Namespace) -> dict:
    run = work / f"p{processes}-{time.time_ns()}"
    threads = max(1, a.threads // processes)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(threads))
    if processes == 1:
        cmd = [sys.executable, "-m", "gcpo_lite", *train_args(model, run, a, threads)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "-m", "gcpo_lite", *train_args(model, run, a, threads)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = [r for r in rows if "rollout_s" in r][1:]  # the first step pays one-time costs
    times = [r["rollout_s"] + r["update_s"] for r in steps]
    return {"times": times, "rollouts": [r["rollouts"] for r in steps], "wall": wall}


def markdown(results: dict, a: argparse.Namespace, command: str) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {os.cpu_count()} cores ({platform.machine()}), {platform.platform()}, python "
        f"{platform.python_version()}; {a.threads} threads in all (1 process x {a.threads}, or 2 x "
        f"{max(1, a.threads // 2)}).",
        "",
        f"Setup: the embedded model (4-bit NF4 + LoRA), built-in addition task, global batch {a.batch_size} "
        f"completions (G=4), up to "
        f"{a.max_completion_length} tokens, {a.steps} measured steps after one warm-up, {a.repeats} "
        "alternating repeat(s). Step time: rank 0's rollout_s + update_s.",
        "",
        "| processes | median step (s) | steps / s | completions / s | whole command (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for p, runs in results.items():
        times = [t for r in runs for t in r["times"]]
        med = statistics.median(times)
        wall = statistics.median(r["wall"] for r in runs)
        lines.append(f"| {p} | {med:.3f} | {1 / med:.2f} | {a.batch_size / med:.1f} | {wall:.1f} |")
    one = statistics.median(t for r in results[1] for t in r["times"])
    two = statistics.median(t for r in results[2] for t in r["times"])
    lines += ["", f"2 processes / 1 process, median step time: {two / one:.2f}", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-completion-length", type=int, default=24)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--model", help="model directory (default: the embedded model, built on first use)")
    p.add_argument("--write-md", type=Path)
    a = p.parse_args()
    if a.model is None:
        from gcpo_lite.demo.embedded_model import ensure_embedded_model

        a.model = str(ensure_embedded_model())
    results: dict[int, list] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.repeats):
            for processes in (1, 2):
                results[processes].append(run_once(processes, a.model, Path(tmp), a))
                print(processes, [round(t, 3) for t in results[processes][-1]["times"]], flush=True)
    command = "python benchmarks/bench_data_parallel.py " + " ".join(sys.argv[1:])
    text = markdown(results, a, command.strip())
    return report(text, a.write_md, SECTION)


if __name__ == "__main__":
    sys.exit(main())
