"""Bring your own task, end to end: reward functions in TRL's convention from the command line and from
Python, a chat-form dataset through train, eval and export, a failing function, data without gold, and the
README's Python snippet exactly as the README shows it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

REWARDS = """
def correct(prompts, completions, completion_ids, target, **kwargs):
    # a TRL conversational reward: chat prompts in, one assistant message per completion
    assert all(isinstance(p, list) and p[-1]["role"] == "user" for p in prompts), prompts[0]
    assert len(completion_ids) == len(completions) and "trainer_state" in kwargs
    return [1.0 if c[0]["content"].strip() == str(t) else 0.0 for c, t in zip(completions, target)]


def shape(completions, **kwargs):
    return [1.0 if c[0]["content"].strip().isdigit() else 0.0 for c in completions]
"""

SMALL = [
    "--no-progress",
    "train.max_steps=2",
    "train.batch_size=8",
    "gcpo.num_generations=4",
    "gcpo.max_completion_length=4",
    "data.eval_size=4",
    "train.eval_steps=0",
    "train.num_threads=1",
    "train.kernels=reference",
    "model.gradient_checkpointing=false",
]


def gcpo(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "gcpo_lite", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=os.environ.copy()
    )


def metric_rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "reward_mean" in x]


@pytest.fixture
def chat_task(tmp_path):
    """A chat-form JSONL (prompt as messages, an extra `target` column, gold solutions) and its rewards."""
    rows = [
        {"prompt": [{"role": "user", "content": f"{a}+{b}="}], "target": a + b, "solution": str(a + b)}
        for a in range(10, 16)
        for b in range(10, 14)
    ]
    (tmp_path / "task.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "rewards.py").write_text(REWARDS)
    return tmp_path


def test_chat_dataset_trains_evaluates_and_exports_with_weighted_functions(embedded_model_dir, chat_task):
    run, t = chat_task / "run", chat_task
    rewards = ["--reward-fn", f"{t}/rewards.py:correct", "--reward-fn", f"{t}/rewards.py:shape"]
    done = gcpo(
        "train", "--model", str(embedded_model_dir), "--dataset", str(t / "task.jsonl"), *rewards,
        "reward.weights=[1.0,0.5]", "reward.correct_fn=correct", "--output-dir", str(run), *SMALL,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rewards: reward = 1 x correct + 0.5 x shape | correct = correct >= 1" in done.stdout
    rows = metric_rows(run)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert {"reward/correct/mean", "reward/correct/std", "reward/shape/mean", "reward/shape/std"} <= set(
            r
        )
        assert r["reward_mean"] == pytest.approx(r["reward/correct/mean"] + 0.5 * r["reward/shape/mean"])
        assert r["accuracy"] == pytest.approx(r["reward/correct/mean"])  # correct_fn's 1.0 is the rule
    ev = gcpo(
        "eval", "--adapter", str(run / "adapter"), "--dataset", str(t / "task.jsonl"), "--split", "train",
        "--limit", "4", "--max-new-tokens", "4", *rewards, "--correct-fn", "correct", "--no-progress",
        "--output-dir", str(t / "ev"),
    )  # fmt: skip
    assert ev.returncode == 0, ev.stdout + ev.stderr
    summary = json.loads((t / "ev" / "summary.json").read_text())
    assert summary["num_prompts"] == 4 and summary["accuracy"] == summary["reward/correct/mean"]
    assert "reward/shape/mean" in summary and "correct = correct >= 1" in summary["rewards"]
    out = gcpo("export", str(run), "--output-dir", str(t / "out"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (t / "out" / "adapter_model.safetensors").is_file()


def test_a_function_that_raises_stops_the_run_in_one_line_and_the_checkpoint_resumes(
    embedded_model_dir, chat_task
):
    t, run = chat_task, chat_task / "run"
    (t / "boom.py").write_text(
        "def boom(completions, trainer_state, **kw):\n"
        "    if trainer_state.global_step >= 1:  # step 2 on: a bug\n"
        "        return [1 / 0 for _ in completions]\n"
        "    return [0.5] * len(completions)\n"
    )
    args = ["--model", str(embedded_model_dir), "--dataset", str(t / "task.jsonl"), "--output-dir", str(run)]
    failed = gcpo("train", *args, "--reward-fn", f"{t}/boom.py:boom", "--save-steps", "1", *SMALL)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    errors = [line for line in failed.stderr.splitlines() if "boom" in line]
    assert len(errors) == 1 and "raised ZeroDivisionError: division by zero" in errors[0]
    assert re.search(r"on sample 0 \(prompt '\d\d\+\d\d=', completion '", errors[0]), errors[0]
    assert "Traceback" not in failed.stderr
    assert [r["step"] for r in metric_rows(run)] == [1]  # nothing of the failed step is written
    assert (run / "checkpoints" / "step-000001" / "trainer_state.pt").is_file()
    (t / "boom.py").write_text("def boom(completions, **kw):\n    return [0.5] * len(completions)\n")
    resumed = gcpo("train", "--resume", str(run), "--no-progress")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [r["step"] for r in metric_rows(run)] == [1, 2]


def test_data_without_gold_trains_as_grpo_and_says_so(embedded_model_dir, tmp_path):
    from gcpo_lite import GCPOConfig, GCPOTrainer

    lines = []

    def right(prompts, completions, answer, **kwargs):
        return [float(c.strip() == a) for c, a in zip(completions, answer)]

    rows = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(10, 20) for b in range(10, 14)]
    args = GCPOConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=1,
        num_generations=4,
        max_completion_length=4,
        overrides={
            "train.batch_size": 8,
            "data.eval_size": 4,
            "train.eval_steps": 0,
            "train.kernels": "reference",
        },
    )
    trainer = GCPOTrainer(
        str(embedded_model_dir), [right], args, train_dataset=rows, progress=False, say=lines.append
    )
    out = trainer.train()
    assert out.global_step == 1 and out.metrics["gold_injected_frac"] == 0.0
    note = [line for line in lines if "plain GRPO" in line]
    assert len(note) == 1 and "no reference solutions" in note[0]
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert re.search(r"python:right", config)  # a notebook function: recorded, and refused on a CLI resume
    resumed = gcpo("train", "--resume", str(tmp_path / "run"), "train.max_steps=2", "--no-progress")
    assert resumed.returncode == 2 and "was passed from Python" in resumed.stderr, resumed.stderr


def test_the_readme_python_snippet_runs_as_written(tmp_path):
    text = README.read_text()
    snippet = re.search(r"<!-- snippet:python-api -->\n```python\n(.*?)```\n<!-- snippet:end -->", text, re.S)
    assert snippet, "README.md lost its Python API snippet"
    done = subprocess.run(
        [sys.executable, "-c", snippet.group(1)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "runs" / "api-demo"
    rows = metric_rows(run)
    assert [r["step"] for r in rows] == [1, 2, 3] and "reward/brief/mean" in rows[-1]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert "{'eval_accuracy': " in done.stdout.splitlines()[-1]
