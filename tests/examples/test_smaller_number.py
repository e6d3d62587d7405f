"""examples/smaller_number: its data and reward functions, and its training command at two steps."""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[2] / "examples" / "smaller_number"


def test_the_data_holds_what_the_rewards_read():
    rows = [json.loads(x) for x in (HERE / "train.jsonl").read_text().splitlines()]
    assert len(rows) > 3000
    for r in rows[:200]:
        a, b = (int(x) for x in r["prompt"].removeprefix("min|").removesuffix("=").split("|"))
        assert r["answer"] == r["solution"] == str(min(a, b))


def test_the_command_trains_with_both_functions(embedded_model_dir, tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "gcpo_lite", "train", "--dataset", str(HERE / "train.jsonl"),
        "--reward-fn", f"{HERE}/rewards.py:correct", "--reward-fn", f"{HERE}/rewards.py:format_reward",
        "reward.weights=[1.0,0.2]", "reward.correct_fn=correct", "--output-dir", str(run), "--no-progress",
        "--max-steps", "2", "gcpo.num_generations=4", "gcpo.max_completion_length=4", "train.batch_size=16",
        "data.eval_size=8", "train.eval_steps=0", "train.kernels=reference", "model.gradient_checkpointing=false",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reward = 1 x correct + 0.2 x format_reward | correct = correct >= 1" in done.stdout
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "reward_mean" in x]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["gold_injected_frac"] > 0 for r in rows)  # the base answers nothing right: gold goes in
    assert all({"reward/correct/mean", "reward/format_reward/mean"} <= set(r) for r in rows)
