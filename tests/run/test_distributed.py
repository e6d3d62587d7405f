"""Data parallelism under torchrun (gcpo_lite/distributed.py), tested with 2 gloo processes on the CPU.

- a 2-process update of a fixed global batch gives the LoRA gradients and weights of a 1-process update;
- a 3-step `torchrun --nproc-per-node 2 -m gcpo_lite train` writes one metrics.jsonl, one row per step,
  covering the global batch, an adapter and a checkpoint with every rank's state;
- a 2-process run killed (SIGKILL, no chance to save) and resumed logs what an uninterrupted one logs;
- a rank that raises ends the whole job, non-zero, and leaves the last checkpoint readable;
- an out-of-memory error on one rank is retried inside the step while the other rank waits;
- the pieces: whole groups per rank, merged metrics, batch-std advantages, world-size checks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gcpo_lite.algorithm.advantages import group_advantages
from gcpo_lite.config import ConfigError
from gcpo_lite.run import checkpoints as ck
from gcpo_lite.run.distributed import World, check_split, merge_records, rank_view

REPO = Path(__file__).resolve().parents[2]
WORKER = str(REPO / "tests" / "distributed_worker.py")
KEYS = (  # what the loop computes from the model, data and random streams (not timings or memory)
    "reward_mean",
    "reward_std",
    "accuracy",
    "gold_injected_frac",
    "completion_length_mean",
    "sampled_tokens",
    "entropy",
    "loss",
    "clip_ratio",
    "grad_norm",
    "lr",
    "trained_rows",
    "skipped_groups",
    "rollouts",
)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def torchrun(*args: str, nproc: int = 2) -> list[str]:
    """torchrun on this machine, on a free port (--standalone)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        *args,
    ]


def train_args(model_dir, run_dir, steps: int, *extra: str) -> list[str]:
    return ["train", "--model", str(model_dir), "--dataset", "addition", "--output-dir", str(run_dir),
            "--no-progress", f"train.max_steps={steps}", "train.batch_size=16", "gcpo.num_generations=4",
            "gcpo.max_completion_length=6", "data.eval_size=6", "train.eval_steps=0", "train.num_threads=1",
            "train.kernels=reference", "train.learning_rate=3e-2", "model.gradient_checkpointing=false",
            *extra]  # fmt: skip


def run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _gone(pid: str) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def step_rows(run_dir: Path) -> dict[int, dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {r["step"]: {k: r.get(k) for k in KEYS} for r in rows if "loss" in r}


# ---------------------------------------------------------------- the update


@pytest.mark.parametrize("loss_type", ["seq_mean_token_mean", "token_mean"])
def test_two_process_update_matches_one_process(embedded_model_dir, tmp_path, loss_type):
    args = ["update", str(tmp_path), str(embedded_model_dir), loss_type]
    done = run(torchrun(WORKER, *args))
    assert done.returncode == 0, done.stdout + done.stderr
    single = run([sys.executable, WORKER, *args])
    assert single.returncode == 0, single.stdout + single.stderr
    r0, r1, one = (torch.load(tmp_path / f"{n}.pt") for n in ("0", "1", "single"))
    assert r0["grads"].keys() == one["grads"].keys() and one["grads"]
    for name, g in one["grads"].items():
        assert torch.equal(r0["grads"][name], r1["grads"][name])  # every rank steps with the same gradient
        assert torch.equal(r0["weights"][name], r1["weights"][name])
        scale = g.norm().clamp(min=1e-30)
        assert (r0["grads"][name] - g).norm() / scale <= 1e-6, name
        w = one["weights"][name]
        # AdamW's first step is lr * g / (|g| + eps): an element whose gradient is near eps (5e-8 against 1e-8,
        # measured) turns the gradients' 1e-6 summation-order difference into ~2e-6 of the weights' norm
        assert (r0["weights"][name] - w).norm() / w.norm().clamp(min=1e-30) <= 1e-5, name
    assert any(g.abs().sum() > 0 for g in one["grads"].values())  # the batch carries a gradient
    for key in ("trained_rows", "skipped_groups"):
        assert r0["metrics"][key] == r1["metrics"][key] == one["metrics"][key]
    assert one["metrics"]["trained_rows"] == 12 and one["metrics"]["skipped_groups"] == 1
    for key in ("loss", "clip_ratio", "kl", "grad_norm"):
        assert r0["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-5, abs=1e-7), (
            key
        )  # loss: ~0 on-policy


# ---------------------------------------------------------------- whole runs under torchrun


def test_torchrun_three_steps_write_one_log_and_an_adapter(embedded_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    done = run(torchrun("-m", "gcpo_lite", *train_args(embedded_model_dir, run_dir, 3)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("done: 3 steps") == 1, done.stdout  # rank 0 speaks for the job
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for r in steps:
        assert r["rollouts"] == 16, r  # the global batch: 2 processes x 2 groups x G=4
        assert r["trained_rows"] + 4 * r["skipped_groups"] == 16, r
        assert 0 <= r["accuracy"] <= 1 and r["sampled_tokens"] > 0, r
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    state = ck.load_state_file(ck.latest_checkpoint(run_dir) / "trainer_state.pt")
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    shards = [r["data"]["fingerprint"] for r in state["ranks"]]  # of each rank's own prompts
    assert shards[0] != shards[1]
    assert not torch.equal(state["ranks"][0]["rng"]["torch"], state["ranks"][1]["rng"]["torch"])
    # one process cannot resume it: its prompts and random streams were split two ways
    alone = run([sys.executable, "-m", "gcpo_lite", "train", "--resume", str(run_dir), "--no-progress",
                 "train.max_steps=4"])  # fmt: skip
    assert alone.returncode == 2, alone.stdout + alone.stderr
    assert "torchrun --nproc-per-node 2 -m gcpo_lite train --resume" in alone.stderr


def test_killed_two_process_run_resumes_exactly(embedded_model_dir, tmp_path):
    steps = 5
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    done = run(torchrun("-m", "gcpo_lite", *train_args(embedded_model_dir, ref_dir, steps)))
    assert done.returncode == 0, done.stdout + done.stderr
    proc = subprocess.Popen(
        torchrun("-m", "gcpo_lite", *train_args(embedded_model_dir, run_dir, 200, "train.save_steps=1")),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 180
    while (
        time.time() < deadline
        and len(step_rows(run_dir) if (run_dir / "metrics.jsonl").is_file() else {}) < 2
    ):
        assert proc.poll() is None
        time.sleep(0.05)
    # Kill torchrun and both ranks at once, as a lost machine would: no handler runs, so the last periodic
    # checkpoint is what is left. (torchrun starts each rank in a session of its own: kill them by pid.)
    ranks = [
        pid
        for task in Path(f"/proc/{proc.pid}/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]
    assert len(ranks) == 2, ranks
    for pid in [proc.pid, *map(int, ranks)]:
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    while not all(map(_gone, ranks)):
        time.sleep(0.05)
    saved = ck.latest_checkpoint(run_dir)
    assert saved is not None and int(saved.name.split("-")[1]) < steps
    resumed = run(torchrun("-m", "gcpo_lite", "train", "--resume", str(run_dir), "--no-progress",
                           f"train.max_steps={steps}"))  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert sorted(step_rows(run_dir)) == list(range(1, steps + 1))
    assert step_rows(run_dir) == step_rows(ref_dir)


def test_a_failing_rank_ends_the_job_nonzero(embedded_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    args = train_args(embedded_model_dir, run_dir, 50, "train.save_steps=1")
    start = time.time()
    done = run(torchrun(WORKER, "fail-at", "3", "1", "--", *args), timeout=120)  # a hang fails here
    assert done.returncode != 0
    assert "injected failure in rank 1, step 3" in done.stdout + done.stderr
    assert time.time() - start < 120
    latest = ck.latest_checkpoint(run_dir)
    assert latest is not None and latest.name == "step-000002"
    assert ck.checkpoint_problem(latest) is None
    assert ck.load_state_file(latest / "trainer_state.pt")["step"] == 2


def test_an_oom_on_one_rank_is_retried_in_step(embedded_model_dir, tmp_path):
    """Rank 1's first micro-batch of step 2 runs out of memory: it halves its micro-batch and redoes the
    work while rank 0 waits at the gradient all-reduce; the job finishes every step."""
    run_dir = tmp_path / "run"
    args = train_args(embedded_model_dir, run_dir, 3, "train.micro_batch_size=8")
    done = run(torchrun(WORKER, "oom-at", "2", "1", "--", *args))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    backoffs = {r["step"]: r["oom_backoffs"] for r in rows if "loss" in r}
    assert backoffs == {1: 0, 2: 1, 3: 1}  # counted over the ranks, cumulative
    assert [r["rollouts"] for r in rows if "loss" in r] == [16, 16, 16]


# ---------------------------------------------------------------- the pieces


def test_batch_must_split_into_whole_groups_per_rank():
    check_split(4, 4, World(rank=0, size=2))  # 4 groups over 2 processes: fine
    with pytest.raises(
        ConfigError, match=r"train.batch_size=12 is 3 groups of G=4.*2 processes.*multiple of"
    ):
        check_split(3, 4, World(rank=0, size=2))


class _TwoRanks(World):
    """Rank 0 of a 2-process world whose other rank's record is given (no process group)."""

    def __init__(self, other: dict):
        super().__init__(rank=0, size=2, backend="gloo")
        object.__setattr__(self, "other", other)

    def gather(self, obj) -> list:
        return [obj, self.other]


def test_merged_records_are_the_whole_jobs():
    rec = {"rows": [1, 2], "count": 3, "status": {"a": 1}, "rounds": 2}
    assert merge_records(World(), rec, maxed=("rounds",)) is rec  # a single process: as it is
    other = {"rows": [3], "count": 4, "status": {"a": 2, "b": 5}, "rounds": 1}
    merged = merge_records(_TwoRanks(other), rec, maxed=("rounds",))
    assert merged == {"rows": [1, 2, 3], "count": 7, "status": {"a": 3, "b": 5}, "rounds": 2}


def test_batch_std_advantages_of_shares_equal_the_whole_batchs():
    r = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0.5, 0, 0, 0])
    whole = group_advantages(r, 4, "batch")
    std = r.std()
    halves = torch.cat([group_advantages(h, 4, "batch", batch_std=std) for h in r.split(8)])
    assert torch.equal(halves, whole)
    assert not torch.equal(torch.cat([group_advantages(h, 4, "batch") for h in r.split(8)]), whole)


def test_checkpoint_of_another_world_size_is_refused():
    state = {"step": 3, "world_size": 2, "ranks": [{"data": 0}, {"data": 1}], "data": 0}
    assert rank_view(state, World(rank=1, size=2, backend="gloo"), "ckpt")["data"] == 1
    with pytest.raises(ConfigError, match=r"2 process\(es\) and this run has 1.*same number"):
        rank_view(state, World(), "ckpt")
    with pytest.raises(ConfigError, match=r"torchrun --nproc-per-node 2"):
        rank_view(state, World(rank=0, size=4, backend="gloo"), "ckpt")


# ---------------------------------------------------------------- issue 28: the order of the checks


def _three_processes(monkeypatch):
    """`gcpo-lite train` as rank 0 of a 3-process torchrun job (a World only: no process group)."""
    import gcpo_lite.run.distributed as distributed

    world = World(rank=0, size=3, local_size=3, backend="gloo")
    monkeypatch.setattr(distributed, "init_world", lambda device="auto": world)


def test_a_batch_that_does_not_split_names_the_users_batch(embedded_model_dir, tmp_path, monkeypatch, capsys):
    """batch 8 = 2 groups of 4 over 3 processes: the split is what is wrong, not a per-process batch of 2."""
    from gcpo_lite.cli import main

    _three_processes(monkeypatch)
    argv = train_args(embedded_model_dir, tmp_path / "run", 2)
    argv = [a for a in argv if not a.startswith("train.batch_size=")] + ["train.batch_size=8"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "train.batch_size=8 is 2 groups of G=4" in err and "3 processes" in err, err
    assert "train.batch_size=2" not in err, err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_resume_with_another_process_count_says_so(finished_run, tmp_path, monkeypatch, capsys):
    """A 1-process run (batch 8, G=4) resumed by 3 processes: the process count is what is wrong."""
    import shutil

    from gcpo_lite.cli import main

    shutil.copytree(finished_run, tmp_path / "run")
    _three_processes(monkeypatch)
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "written by a run of 1 process(es) and this run has 3" in err, err
    assert "gcpo-lite train --resume RUN_DIR (without torchrun)" in err, err
