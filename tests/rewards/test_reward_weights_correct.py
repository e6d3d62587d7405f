"""The weighted sum of reward functions (a None adds nothing) and the correctness rule (reward.correct_fn)."""

import logging
import math

import pytest

from gcpo_lite.config import ConfigError, RewardConfig
from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.reward_model import build_reward_model


def table(name, values):
    """A reward function scoring completion text t as values[t] (None where values says so)."""

    def fn(completions, **kwargs):
        return [values[c] for c in completions]

    fn.__name__ = name
    return fn


def rows(*answers):
    return [Example(prompt=f"q{i}", answer=a) for i, a in enumerate(answers)]


# ---------------------------------------------------------------- weights and None


def test_weighted_sum():
    a = table("a", {"x": 1.0, "y": 0.0, "z": 0.5})
    b = table("b", {"x": 0.5, "y": 1.0, "z": -1.0})
    model = build_reward_model(RewardConfig(weights=[2.0, 0.25]), "addition", functions=[a, b])
    scores = model.score_batch(["x", "y", "z"], [[]] * 3, rows("1", "1", "1"))
    assert scores.rewards == pytest.approx([2.125, 0.25, 0.75])
    assert [f.weight for f in model.functions] == [2.0, 0.25]


def test_none_adds_nothing_and_is_nan_in_per_function():
    a = table("a", {"x": 1.0, "y": None})
    b = table("b", {"x": None, "y": 3.0})
    model = build_reward_model(RewardConfig(weights=[1.0, 0.5]), "addition", functions=[a, b])
    scores = model.score_batch(["x", "y"], [[]] * 2, rows("1", "1"))
    assert scores.rewards == [1.0, 1.5]
    assert scores.per_function["a"][0] == 1.0 and math.isnan(scores.per_function["a"][1])
    assert math.isnan(scores.per_function["b"][0]) and scores.per_function["b"][1] == 3.0


def test_all_none_scores_zero_with_a_warning(caplog):
    a = table("a", {"x": None, "y": 2.0})
    b = table("b", {"x": None, "y": None})
    model = build_reward_model(RewardConfig(), "addition", functions=[a, b])
    with caplog.at_level(logging.WARNING):
        scores = model.score_batch(["x", "y", "x"], [[]] * 3, rows("1", "1", "1"))
    assert scores.rewards == [0.0, 2.0, 0.0]
    assert all(isinstance(r, float) for r in scores.rewards)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("returned None for 2 samples" in w for w in warnings), warnings


def test_no_warning_when_some_function_scores_every_sample(caplog):
    a = table("a", {"x": None, "y": 2.0})
    b = table("b", {"x": 0.0, "y": None})
    model = build_reward_model(RewardConfig(), "addition", functions=[a, b])
    with caplog.at_level(logging.WARNING):
        model.score_batch(["x", "y"], [[]] * 2, rows("1", "1"))
    assert not [r for r in caplog.records if "returned None" in r.getMessage()]


# ---------------------------------------------------------------- the correctness rule


def test_auto_picks_first_builtin_verifier():
    style = table("style", {"5": 0.0, "6": 1.0})
    model = build_reward_model(
        RewardConfig(functions=["format", "last_integer", "math"]), "addition", functions=None
    )
    assert model.rule.function.name == "last_integer"
    model = build_reward_model(RewardConfig(), "addition", functions=[style, "last_integer"])
    assert model.rule.function.name == "last_integer"
    scores = model.score_batch(["5", "6"], [[]] * 2, rows("5", "5"))
    assert scores.correct == [True, False]  # last_integer's verdicts, not style's


def test_auto_without_a_verifier_picks_the_first_function():
    style = table("style", {"a": 1.0, "b": 0.0})
    model = build_reward_model(RewardConfig(), "addition", functions=[style, "format"])
    assert model.rule.function.name == "style"
    assert model.score_batch(["a", "b"], [[]] * 2, rows("1", "1")).correct == [True, False]
    model = build_reward_model(RewardConfig(functions=["format"]), "addition")
    assert model.rule.function.name == "format"


def test_named_listed_function():
    a = table("a", {"x": 1.0, "y": 0.0})
    b = table("b", {"x": 0.0, "y": 1.0})
    model = build_reward_model(RewardConfig(correct_fn="b"), "addition", functions=[a, b])
    assert model.rule.function.name == "b" and model.rule.listed
    assert model.score_batch(["x", "y"], [[]] * 2, rows("1", "1")).correct == [False, True]
    assert model.correct_batch(["x", "y"], [[]] * 2, rows("1", "1")) == [False, True]


@pytest.mark.parametrize("threshold, expected", [(0.5, [True, True, False]), (0.8, [False, True, False])])
def test_correct_threshold(threshold, expected):
    graded = table("graded", {"p": 0.7, "q": 0.8, "r": 0.2})
    model = build_reward_model(RewardConfig(correct_threshold=threshold), "addition", functions=[graded])
    assert model.score_batch(["p", "q", "r"], [[]] * 3, rows("1", "1", "1")).correct == expected


def test_none_score_is_not_correct():
    maybe = table("maybe", {"x": None, "y": 1.0})
    model = build_reward_model(RewardConfig(correct_threshold=-1.0), "addition", functions=[maybe])
    assert model.score_batch(["x", "y"], [[]] * 2, rows("1", "1")).correct == [False, True]
    assert model.correct("x", rows("1")[0]) is False


def test_unlisted_spec_scores_correctness_only(tmp_path):
    (tmp_path / "judge.py").write_text(
        "def judge(completions, **kwargs):\n    return [1.0 if 'yes' in c else 0.0 for c in completions]\n"
    )
    spec = f"{tmp_path / 'judge.py'}:judge"
    length = table("length", {"yes": 3.0, "no": 2.0})
    model = build_reward_model(RewardConfig(correct_fn=spec), "addition", functions=[length])
    assert model.rule.function.name == "judge" and not model.rule.listed
    scores = model.score_batch(["yes", "no"], [[]] * 2, rows("1", "1"))
    assert scores.rewards == [3.0, 2.0]  # judge adds nothing to the reward
    assert list(scores.per_function) == ["length"]
    assert scores.correct == [True, False]
    assert model.correct_batch(["no", "yes"], [[]] * 2, rows("1", "1")) == [False, True]


def test_unlisted_builtin_verifier_for_correctness():
    length = table("length", {"12": 0.5, "13": 0.5})
    model = build_reward_model(RewardConfig(correct_fn="last_integer"), "addition", functions=[length])
    assert not model.rule.listed
    scores = model.score_batch(["12", "13"], [[]] * 2, rows("12", "12"))
    assert scores.rewards == [0.5, 0.5]
    assert scores.correct == [True, False]
    assert model.needs_answer


def test_unknown_correct_fn_names_the_functions():
    a, b = table("alpha", {}), table("beta", {})
    with pytest.raises(ConfigError) as e:
        build_reward_model(RewardConfig(correct_fn="gamma"), "addition", functions=[a, b])
    message = str(e.value)
    assert "reward.correct_fn='gamma'" in message
    assert "alpha, beta" in message


def test_needs_answer_only_with_a_builtin_verifier():
    mine = table("mine", {})
    assert build_reward_model(RewardConfig(), "addition").needs_answer  # the default: the task's verifier
    assert build_reward_model(RewardConfig(functions=["math"]), "gsm8k").needs_answer
    assert build_reward_model(RewardConfig(), "gsm8k", functions=[mine, "last_integer"]).needs_answer
    assert not build_reward_model(RewardConfig(), "gsm8k", functions=[mine]).needs_answer
    assert not build_reward_model(RewardConfig(), "gsm8k", functions=[mine, "format"]).needs_answer
    assert not build_reward_model(RewardConfig(functions=["format"]), "gsm8k").needs_answer


def test_format_scores_rows_without_an_answer():
    # `format` needs no answer (needs_answer is False with it alone), so a row without one must still be scored
    model = build_reward_model(RewardConfig(functions=["format"]), "my_data.jsonl")
    assert not model.needs_answer
    scores = model.score_batch(["so \\boxed{3}", "no idea"], [[]] * 2, rows(None, None))
    assert scores.per_function["format"] == [1.0, 0.0]
    assert scores.rewards == [1.0, 0.0]
