"""Checkpoints: an interrupted and resumed run logs exactly the metrics of an uninterrupted one.

Interruptions: a max_steps stop, SIGTERM delivered inside a step (before and after its update), and a
real `gcpo-lite train` subprocess killed with SIGTERM. The training set is cut to 5 prompts (2 per
step), so the runs cross epoch boundaries and the per-epoch reshuffle is part of what must resume.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from gcpo_lite.config import ConfigError, from_dict
from gcpo_lite.data.prompt_stream import PromptStream
from gcpo_lite.run import checkpoints as ck
from gcpo_lite.train.trainer import Trainer

STEPS = 8
N_EXAMPLES = 5
# every field the loop computes from the model, the data or the random stream (not the timings)
KEYS = (
    "reward_mean",
    "reward_std",
    "accuracy",
    "gold_injected_frac",
    "all_correct_frac",
    "all_wrong_frac",
    "completion_length_mean",
    "truncated_frac",
    "entropy",
    "loss",
    "clip_ratio",
    "grad_norm",
    "lr",
    "trained_rows",
    "skipped_groups",
)


def overrides(run_dir, **train):
    return {
        "model": {"gradient_checkpointing": False},
        "gcpo": {"num_generations": 4, "max_completion_length": 4},
        "data": {"eval_size": 4},
        "train": {
            "batch_size": 8,
            "output_dir": str(run_dir),
            "learning_rate": 3e-2,
            "eval_steps": 0,
            "num_threads": 1,
            "kernels": "reference",
            "max_steps": STEPS,
            **train,
        },
    }


def make_trainer(run_dir, **train):
    tr = Trainer(from_dict(overrides(run_dir, **train)), progress=False)
    tr.prompts = PromptStream(
        tr.prompts.examples[:N_EXAMPLES], tr.cfg.train.seed
    )  # tiny epochs: reshuffles resume too
    return tr


def rows(run_dir):
    out = {}
    for line in Path(run_dir, "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "loss" in r:
            out[r["step"]] = {k: r[k] for k in KEYS}
    return out


def resume(run_dir, **train):
    tr = make_trainer(run_dir, **train)
    step = ck.load_checkpoint(tr, ck.find_checkpoint(run_dir))
    tr.train()
    return step


@pytest.fixture(scope="module")
def reference(embedded_model_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    make_trainer(run_dir).train()
    ref = rows(run_dir)
    assert sorted(ref) == list(range(1, STEPS + 1))
    assert len({r["grad_norm"] for r in ref.values()}) > 1  # the comparison has something to compare
    return ref


def test_stop_and_resume_matches_uninterrupted(reference, tmp_path):
    make_trainer(tmp_path, max_steps=3, save_steps=2).train()
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [2, 3]
    assert ck.latest_checkpoint(tmp_path).name == "step-000003"
    assert resume(tmp_path, save_steps=2) == 3
    assert rows(tmp_path) == reference


@pytest.mark.parametrize("when", ["rollout", "after_update"])
def test_sigterm_inside_a_step(reference, tmp_path, when):
    """Before the update the step is abandoned and its start saved; after it the step finishes first."""
    tr = make_trainer(tmp_path)
    target = "rollout" if when == "rollout" else "update"
    original = getattr(tr, target)

    def hooked(*a, **kw):
        if when == "rollout" and tr.step == 4:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the handler runs here and raises StepInterrupted
        out = original(*a, **kw)
        if when == "after_update" and tr.step == 3:  # in step 4, after its optimizer step: no rewinding
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
        return out

    setattr(tr, target, hooked)
    tr.train()
    assert tr.interrupted == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler removed again
    saved = (
        4  # rollout: step 5 abandoned, its start (= after step 4) saved; after_update: step 4 finished, saved
    )
    assert ck.latest_checkpoint(tmp_path).name == f"step-{saved:06d}"
    assert max(rows(tmp_path)) == saved
    assert resume(tmp_path) == saved
    assert rows(tmp_path) == reference


def test_killed_subprocess_resumes_exactly(embedded_model_dir, tmp_path):
    """A real `gcpo-lite train` process gets SIGTERM mid-run; `gcpo-lite train --resume` finishes it.

    Full built-in training set here (the process cannot be given the 5-prompt cut)."""
    steps = 12
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    Trainer(from_dict(overrides(ref_dir, max_steps=steps)), progress=False).train()
    # a config file (not bare overrides), so the process starts from the same defaults as the reference
    # run rather than from the embedded demo's preset
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(overrides(run_dir, max_steps=200)))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcpo_lite.cli", "train", "--no-progress", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.is_file() or len(metrics.read_text().splitlines()) < 2):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert f"gcpo-lite train --resume {run_dir}" in out
    saved = ck.latest_checkpoint(run_dir)
    assert saved is not None and int(saved.name.split("-")[1]) < steps
    from gcpo_lite.cli import main

    assert main(["train", "--resume", str(run_dir), "--no-progress", f"train.max_steps={steps}"]) == 0
    assert sorted(rows(run_dir)) == list(range(1, steps + 1))
    assert rows(run_dir) == rows(ref_dir)


def test_keeps_last_k_and_latest_is_atomic(embedded_model_dir, tmp_path):
    tr = make_trainer(tmp_path, max_steps=4, save_steps=1, save_total_limit=2)
    tr.train()
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [3, 4]
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])  # the logging extras
    assert row["entropy"] > 0 and row["peak_memory_bytes"] > 0 and row["plan_micro_batch_size"] >= 1
    assert json.loads((tmp_path / "plan.json").read_text())["generation_batch_size"] >= 1
    root = ck.checkpoints_dir(tmp_path)
    assert (root / "latest").read_text().strip() == "step-000004"
    files = {p.name for p in (root / "step-000004").iterdir()}
    assert {"adapter", "trainer_state.pt", "plan.json", "metrics.jsonl", "state.json"} <= files
    assert (root / "step-000004" / "adapter" / "adapter_model.safetensors").is_file()
    assert len((root / "step-000004" / "metrics.jsonl").read_text().splitlines()) == 4  # steps 1-4
    # a save killed half way leaves a temp dir and the old pointer: neither is ever picked
    (root / ".tmp-step-000005-x").mkdir()
    assert ck.latest_checkpoint(tmp_path).name == "step-000004"
    (root / "latest").write_text(
        "step-000009\n"
    )  # names something gone: fall back to the newest complete one
    assert ck.latest_checkpoint(tmp_path).name == "step-000004"
    with pytest.raises(ConfigError, match="no checkpoint at step 1"):
        ck.find_checkpoint(tmp_path, 1)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoints_load_weights_only(embedded_model_dir, tmp_path):
    tr = make_trainer(tmp_path, max_steps=1)
    tr.train()
    path = ck.latest_checkpoint(tmp_path)
    state = torch.load(path / "trainer_state.pt", weights_only=True)  # plain tensors and containers only
    assert state["step"] == 1 and len(state["data"]["order"]) == N_EXAMPLES
    torch.save({"format": 1, "payload": Evil()}, path / "trainer_state.pt")
    with pytest.raises(ck.UnsafeCheckpointError, match="refused as unsafe"):
        ck.load_checkpoint(make_trainer(tmp_path), path)


def test_resume_refuses_other_data(embedded_model_dir, tmp_path):
    make_trainer(tmp_path, max_steps=1).train()
    tr = Trainer(from_dict(overrides(tmp_path)), progress=False)  # the full training set, not the 5 used
    with pytest.raises(ConfigError, match="training data differs"):
        ck.load_checkpoint(tr, ck.find_checkpoint(tmp_path))


def test_checkpoints_by_the_clock_resume_exactly(reference, tmp_path):
    """train.save_minutes (issue 28): saves at whatever steps the clock picks; the resume is as exact."""
    make_trainer(tmp_path, max_steps=3, save_minutes=1e-9).train()  # every step end is past due
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [1, 2, 3]
    assert resume(tmp_path, save_minutes=1e-9) == 3
    assert rows(tmp_path) == reference


def test_kill_9_with_the_default_cadence_resumes(embedded_model_dir, tmp_path):
    """Issue 28: kill -9 (no handler runs) then --resume: the run goes on from its last timed checkpoint instead
    of "has no checkpoint". The default cadence, scaled down to a fraction of a second."""
    steps = 6
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    Trainer(from_dict(overrides(ref_dir, max_steps=steps)), progress=False).train()
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(overrides(run_dir, max_steps=200, save_minutes=0.002)))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcpo_lite.cli", "train", "--no-progress", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and ck.latest_checkpoint(run_dir) is None:
        assert proc.poll() is None
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=30)
    saved = ck.latest_checkpoint(run_dir)
    assert saved is not None and int(saved.name.split("-")[1]) < steps
    from gcpo_lite.cli import main

    assert main(["train", "--resume", str(run_dir), "--no-progress", f"train.max_steps={steps}"]) == 0
    assert rows(run_dir) == rows(ref_dir)
