"""The reward section's checks (load_config), and the defaults as they were before reward functions: the task's
verifier alone, or the verifier + format_weight x format."""

import pytest

from gcpo_lite.config import ConfigError, RewardConfig, load_config
from gcpo_lite.data.datasets import dataset_name
from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.reward_model import RewardModel, build_reward_model
from gcpo_lite.rewards.verifiers import format_reward, verify_math


def refused(*overrides):
    with pytest.raises(ConfigError) as e:
        load_config(None, list(overrides))
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("old", ["reward.verifier=math", "reward.format_weight=0.1"])
def test_functions_with_verifier_or_format_weight_refused(old):
    message = refused("reward.functions=[math,format]", old)
    assert "reward.verifier and reward.format_weight apply only when reward.functions is null" in message
    assert "reward.functions=[" in message and "reward.weights=[1.0," in message


def test_weights_count_mismatch():
    message = refused("reward.functions=[math,format]", "reward.weights=[1.0]")
    assert "has 1 values for 2 reward functions" in message
    message = refused("reward.weights=[1.0,0.5]")  # the verifier alone
    assert "has 2 values for 1 reward functions" in message


def test_weights_with_format_weight_count_two():
    cfg = load_config(None, ["reward.format_weight=0.5", "reward.weights=[2.0,0.25]"])
    model = build_reward_model(cfg.reward, "gsm8k")
    assert [(f.name, f.weight) for f in model.functions] == [("math", 2.0), ("format", 0.25)]


@pytest.mark.parametrize("weight", [".nan", ".inf", "-.inf", "'heavy'", "true"])
def test_non_finite_or_non_number_weight(weight):
    message = refused("reward.functions=[math,format]", f"reward.weights=[1.0,{weight}]")
    assert "give one finite number per reward function" in message


def test_empty_functions_list():
    assert "must be a non-empty list of names" in refused("reward.functions=[]")


def test_valid_functions_and_weights_load():
    cfg = load_config(None, ["reward.functions=[math,format]", "reward.weights=[1.0,0.5]"])
    assert cfg.reward.functions == ["math", "format"]
    assert cfg.reward.weights == [1.0, 0.5]
    model = build_reward_model(cfg.reward, "gsm8k")
    assert [(f.name, f.weight) for f in model.functions] == [("math", 1.0), ("format", 0.5)]


def test_build_refuses_weights_count_mismatch_from_python():
    def mine(completions, **kwargs):
        return [0.0] * len(completions)

    with pytest.raises(ConfigError, match="has 1 values for 2 reward functions"):
        build_reward_model(RewardConfig(weights=[1.0]), "addition", functions=[mine, "format"])


# ---------------------------------------------------------------- backward compatibility


def test_default_on_addition_is_last_integer_alone():
    cfg = load_config(None, [])
    assert cfg.reward.functions is None
    name = dataset_name(cfg.data)
    assert name == "addition"
    model = build_reward_model(cfg.reward, name)
    assert [(f.name, f.weight) for f in model.functions] == [("last_integer", 1.0)]
    assert model.rule.function is model.functions[0] and model.rule.threshold == 1.0
    assert model.needs_answer
    examples = [Example(prompt="47+38=", answer="85")] * 3
    scores = model.score_batch(["85", "84", "so 85"], [[]] * 3, examples)
    assert scores.rewards == [1.0, 0.0, 1.0]
    assert scores.correct == [True, False, True]


CASES = [
    ("The answer is 42", "42"),
    ("so \\boxed{42}", "42"),
    ("#### 41", "42"),
    ("42", "42"),
    ("I think 40 + 2 = 42", "42"),
    ("\\boxed{1/2}", "0.5"),
    ("no idea", "7"),
    ("The answer is 3.", "#### 3"),
    ("\\boxed{x}", "18"),
]


def test_format_weight_on_gsm8k_matches_the_old_formula():
    cfg = load_config(None, ["data.dataset=gsm8k", "reward.format_weight=0.5"])
    model = build_reward_model(cfg.reward, dataset_name(cfg.data))
    assert [(f.name, f.weight) for f in model.functions] == [("math", 1.0), ("format", 0.5)]
    assert model.rule.function.name == "math"
    texts = [t for t, _ in CASES]
    examples = [Example(prompt=f"q{i}", answer=a) for i, (_, a) in enumerate(CASES)]
    scores = model.score_batch(texts, [[]] * len(texts), examples)
    old = [float(verify_math(t, ex) >= 1) + 0.5 * format_reward(t, ex) for t, ex in zip(texts, examples)]
    assert scores.rewards == old
    assert scores.correct == [verify_math(t, ex) >= 1 for t, ex in zip(texts, examples)]
    assert set(old) == {0.0, 0.5, 1.0, 1.5}  # the cases cover every combination
    via_verifier = RewardModel.from_verifier(verify_math, format_weight=0.5)
    assert via_verifier.score_batch(texts, [[]] * len(texts), examples).rewards == old
