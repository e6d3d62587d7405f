"""examples/countdown_gpu: its reward functions load as --reward-fn specs and score what they promise."""

import importlib.util
from pathlib import Path

from gcpo_lite.config import RewardConfig
from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.reward_model import build_reward_model

HERE = Path(__file__).resolve().parents[2] / "examples" / "countdown_gpu"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"countdown_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rewards_score_equations_through_the_cli_specs():
    spec = f"{HERE}/rewards.py"
    functions = [f"{spec}:correct", f"{spec}:format_reward"]
    model = build_reward_model(
        RewardConfig(functions=functions, weights=[1.0, 0.1], correct_fn="correct"), "x"
    )
    row = {"target": 16, "nums": [3, 5, 2]}
    examples = [
        Example(prompt="p", answer=None, messages=[{"role": "user", "content": "p"}], columns=row)
    ] * 6
    texts = [
        "<think>8 times 2</think><answer>(3 + 5) * 2</answer>",  # right, well formed
        "<answer>(3+5)*2</answer>",  # right, no thinking
        "<think>x</think><answer>3 * 5 + 1</answer>",  # 1 is not a given number, 2 unused
        "<think>x</think><answer>(3 + 5) * 2 * 1</answer>",  # an extra number
        "<think>x</think><answer>__import__('os')</answer>",  # not arithmetic: never evaluated
        "<think>x</think><answer>(3 + 5) / (2 - 2)</answer>",  # division by zero (and 2 used twice)
    ]
    scores = model.score_batch(texts, [[]] * 6, examples)
    assert scores.per_function["correct"] == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert scores.per_function["format_reward"] == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert scores.correct == [True, True, False, False, False, False]
    assert scores.rewards[0] == 1.1 and scores.rewards[2] == 0.1


def test_exact_fractions_and_prepare_rows():
    rewards, prepare = _module("rewards"), _module("prepare")
    assert rewards.equation_value("(7 - 1 / 3) * 3", [7, 1, 3, 3]) == 20  # 6.666... * 3, exactly
    assert rewards.equation_value("2 ** 3", [2, 3]) is None
    row = prepare.to_row({"target": 24, "nums": [4, 6, 1]})
    assert row["target"] == 24 and row["nums"] == [4, 6, 1]
    assert row["prompt"][0]["role"] == "user" and "4, 6, 1" in row["prompt"][0]["content"]
