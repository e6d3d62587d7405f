"""What a reward function must answer (one number or None per completion), what happens when it raises, returns
NaN or runs past reward.timeout_s, under reward.on_error=raise and zero."""

import threading
import time

import numpy as np
import pytest
import torch
from time_limit import within

from gcpo_lite.config import ConfigError, RewardConfig
from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.calling import RewardFunctionError
from gcpo_lite.rewards.reward_model import build_reward_model


def model(fn, **reward):
    return build_reward_model(RewardConfig(**reward), "addition", functions=[fn])


def run(m, texts, prompts=None):
    prompts = prompts or [f"prompt number {i}" for i in range(len(texts))]
    examples = [Example(prompt=p, answer="1") for p in prompts]
    return m.score_batch(list(texts), [[]] * len(texts), examples)


def raises_contract(fn, texts=("a", "b"), **reward):
    """The RewardFunctionError scoring texts with fn raises; checked to be a one-line ConfigError naming fn."""
    with pytest.raises(RewardFunctionError) as e:
        run(model(fn, **reward), texts)
    assert isinstance(e.value, ConfigError)
    message = str(e.value)
    assert "\n" not in message
    assert f"reward function {fn.__name__!r}" in message
    return message


# ---------------------------------------------------------------- values outside the contract


@pytest.mark.parametrize("on_error", ["raise", "zero"])
def test_wrong_count(on_error):
    def too_few(completions, **kwargs):
        return [1.0] * (len(completions) - 1)

    message = raises_contract(too_few, ("a", "b", "c"), on_error=on_error)
    assert "returned 2 values for 3 completions" in message


def test_not_a_list_says_what_came_back():
    def scalar(completions, **kwargs):
        return 1.0

    message = raises_contract(scalar)
    assert "returned a float for 2 completions" in message


def test_none_instead_of_a_list():
    def nothing(completions, **kwargs):
        return None

    assert "returned a NoneType for 2 completions" in raises_contract(nothing)


@pytest.mark.parametrize("on_error", ["raise", "zero"])
@pytest.mark.parametrize("bad, shown", [("0.5", "'0.5' (str)"), ([1.0], "[1.0] (list)")])
def test_not_a_number(on_error, bad, shown):
    def odd(completions, **kwargs):
        return [1.0, bad]

    message = raises_contract(odd, on_error=on_error)
    assert f"returned {shown} for sample 1" in message


def test_tensor_of_several_values_is_not_one_number():
    def vector(completions, **kwargs):
        return [torch.tensor([1.0, 2.0]) for _ in completions]

    assert "which is not one number" in raises_contract(vector)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_under_raise(bad):
    def blows_up(completions, **kwargs):
        return [1.0, bad, 0.0]

    message = raises_contract(blows_up, ("a", "b", "c"))
    assert f"returned {bad}" in message
    assert "sample 1" in message and "'b'" in message


def test_non_finite_under_zero_is_counted():
    def blows_up(completions, **kwargs):
        return [1.0, float("nan"), 0.5]

    m = model(blows_up, on_error="zero")
    scores = run(m, ["a", "b", "c"])
    assert scores.rewards == [1.0, 0.0, 0.5]
    assert m.errors == 1


def test_numbers_of_every_kind_are_accepted():
    values = [
        np.float32(0.5),
        torch.tensor(0.25),
        True,
        np.float64(1.5),
        np.int64(2),
        False,
        3,
        np.bool_(True),
    ]

    def mixed(completions, **kwargs):
        return values

    scores = run(model(mixed), [str(i) for i in range(len(values))])
    assert scores.rewards == [0.5, 0.25, 1.0, 1.5, 2.0, 0.0, 3.0, 1.0]
    assert all(type(r) is float for r in scores.rewards)


def test_tuple_and_array_answers_are_accepted():
    def as_array(completions, **kwargs):
        return np.array([0.5] * len(completions))

    def as_tuple(completions, **kwargs):
        return tuple(0.25 for _ in completions)

    assert run(model(as_array), ["a", "b"]).rewards == [0.5, 0.5]
    assert run(model(as_tuple), ["a", "b"]).rewards == [0.25, 0.25]


# ---------------------------------------------------------------- exceptions


def boom_on_marked(calls):
    def boom(completions, **kwargs):
        calls.append(list(completions))
        if any("BOOM" in c for c in completions):
            raise ValueError("cannot parse this one")
        return [float(len(c)) for c in completions]

    return boom


def test_exception_under_raise_names_the_sample():
    calls = []
    fn = boom_on_marked(calls)
    prompts = ["what is two plus two?", "name a colour", "the third question here"]
    with pytest.raises(RewardFunctionError) as e:
        run(model(fn), ["fine", "also fine", "kaBOOM here"], prompts)
    message = str(e.value)
    assert "\n" not in message
    assert "reward function 'boom' raised ValueError: cannot parse this one" in message
    assert "sample 2" in message
    assert "the third question here" in message and "kaBOOM here" in message
    assert calls[0] == ["fine", "also fine", "kaBOOM here"]  # the batch first, then one sample at a time
    assert ["kaBOOM here"] in calls[1:]


def test_exception_snippets_are_short():
    def boom(completions, **kwargs):
        raise ValueError("x")

    with pytest.raises(RewardFunctionError) as e:
        run(model(boom), ["z" * 5000], ["q" * 5000])
    assert len(str(e.value)) < 600


def test_exception_under_zero_keeps_the_other_scores():
    calls = []
    m = model(boom_on_marked(calls), on_error="zero")
    scores = run(m, ["BOOM", "abc", "ab", "xBOOM"])
    assert scores.rewards == [0.0, 3.0, 2.0, 0.0]
    assert scores.per_function["boom"] == [0.0, 3.0, 2.0, 0.0]
    assert m.errors == 2
    run(m, ["BOOM", "a"])
    assert m.errors == 3  # counted over the run


def test_exception_only_on_the_whole_batch():
    def batch_of_one_only(completions, **kwargs):
        if len(completions) > 1:
            raise MemoryError("too many at once")
        return [1.0]

    message = raises_contract(batch_of_one_only, ("a", "b", "c"))
    assert "on the whole batch" in message and "3 samples" in message
    m = model(batch_of_one_only, on_error="zero")
    assert run(m, ["a", "b", "c"]).rewards == [0.0, 0.0, 0.0]
    assert m.errors == 3


def per_sample_only(bad):
    """Raises on a batch of several; alone, scores 1.0, or `bad` for a completion containing 'x'."""

    def picky(completions, **kwargs):
        if len(completions) > 1:
            raise ValueError("batch")
        return [bad] if "x" in completions[0] else [1.0]

    return picky


def test_non_number_found_while_retrying_samples_still_stops_the_run():
    # a non-number is a bug in the function whatever reward.on_error says, also when found on the per-sample retry
    message = raises_contract(per_sample_only("not a number"), ("x", "y"), on_error="zero")
    assert "returned 'not a number' (str) for sample 0" in message


def test_nan_found_while_retrying_samples_is_reported_once():
    message = raises_contract(per_sample_only(float("nan")), ("y", "x"))
    assert "returned nan" in message and "sample 1" in message
    assert message.count("fix the function") == 1
    assert "raised RewardFunctionError" not in message


def test_nan_found_while_retrying_samples_under_zero():
    m = model(per_sample_only(float("nan")), on_error="zero")
    assert run(m, ["y", "x", "y"]).rewards == [1.0, 0.0, 1.0]
    assert m.errors == 1


# ---------------------------------------------------------------- time limit


def spin(completions, **kwargs):
    while True:
        pass


def test_timeout_under_raise():
    with within(5):
        start = time.monotonic()
        message = raises_contract(spin, timeout_s=0.3)
        assert time.monotonic() - start < 2.0
    assert "did not return within reward.timeout_s=0.3s" in message


def test_timeout_under_zero_scores_the_batch_zero():
    with within(5):
        m = model(spin, on_error="zero", timeout_s=0.3)
        scores = run(m, ["a", "b", "c"])
    assert scores.rewards == [0.0, 0.0, 0.0]
    assert m.errors == 3


def test_timeout_on_one_sample_under_zero():
    def spin_on_x(completions, **kwargs):
        if "x" in completions:
            while True:
                pass
        return [1.0] * len(completions)

    with within(5):
        m = model(spin_on_x, on_error="zero", timeout_s=0.3)
        assert run(m, ["a", "x"]).rewards == [0.0, 0.0]  # the whole call timed out: the batch scores 0
        assert run(m, ["a", "b"]).rewards == [1.0, 1.0]  # the next call is unaffected
    assert m.errors == 2


def fast(completions, **kwargs):
    return [1.0] * len(completions)


def live_timers():
    return [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]


def test_fast_function_never_gets_a_stray_timeout():
    time.sleep(0.1)  # timers cancelled by earlier tests end
    before = len(live_timers())
    m = model(fast, timeout_s=5)
    for _ in range(200):
        assert run(m, ["a", "b"]).rewards == [1.0, 1.0]
    time.sleep(0.2)
    assert len(live_timers()) <= before  # every call's timer was cancelled, none waits to fire
    assert m.errors == 0


def test_no_stray_timeout_after_the_limit_passes():
    m = model(fast, timeout_s=0.3)
    with within(5):
        for _ in range(20):
            run(m, ["a"])
        deadline = time.monotonic() + 0.6  # past every call's limit, running Python bytecode all along
        spins = 0
        while time.monotonic() < deadline:
            spins += 1
    assert spins > 0 and m.errors == 0


def test_multi_line_exception_stays_one_line():
    def wordy(completions, **kwargs):
        raise ValueError("line one\nline two\n\n  line three")

    message = raises_contract(wordy, ("a",))
    assert "raised ValueError: line one line two line three" in message


def test_exception_without_a_message_is_named():
    def lookup(completions, **kwargs):
        return [[][1] for _ in completions]

    assert "raised IndexError: list index out of range" in raises_contract(lookup, ("a",))

    def silent(completions, **kwargs):
        raise RuntimeError()

    assert "raised RuntimeError on sample 0" in raises_contract(silent, ("a",))
