"""math_equal on the project's answer-equivalence cases (tests/math_cases.py), plus math-verify agreement."""

import pytest
from math_cases import CASES

from gcpo_lite.rewards.reward_model import math_equal as public_math_equal
from gcpo_lite.verify.equivalence import math_equal, plain_number, split_top, structure


def test_case_table_covers_every_format_both_ways():
    assert len(CASES) >= 150
    formats = {f for _, _, _, f in CASES}
    assert formats >= {
        "exact",
        "normalize",
        "numeric",
        "fraction",
        "symbolic",
        "equation",
        "interval",
        "tuple",
        "set",
        "choice",
        "words",
    }
    for fmt in formats:
        verdicts = {e for _, _, e, f in CASES if f == fmt}
        assert verdicts == {True, False}, f"{fmt} needs true and false pairs"


@pytest.mark.parametrize("pred,gold,expected,fmt", CASES, ids=[f"{c[3]}:{c[0]}|{c[1]}" for c in CASES])
def test_math_equal(pred, gold, expected, fmt):
    assert public_math_equal(pred, gold) is expected


def test_symmetric_on_numbers_and_symbols():
    for a, b in [("0.5", "\\frac12"), ("2x+2", "2(x+1)"), ("(1,2]", "(1,2)"), ("\\sqrt{8}", "2\\sqrt2")]:
        assert math_equal(a, b) == math_equal(b, a)


def test_plain_number_and_structure_helpers():
    assert plain_number("-\\frac{3}{4}")[0] == plain_number("-0.75")[0]
    assert plain_number("x") is None
    assert split_top("(1,2),\\{3,4\\},5") == ["(1,2)", "\\{3,4\\}", "5"]
    assert structure("(1,2]")[0] == "seq"
    assert structure("1, 2")[0] == "bag"


def test_agreement_with_math_verify():
    """Report (and bound) agreement with math-verify on our cases; skipped when it is not installed."""
    mv = pytest.importorskip("math_verify")
    agree = 0
    disagreements = []
    for pred, gold, _expected, _ in CASES:
        try:
            theirs = bool(
                mv.verify(
                    mv.parse(f"${gold}$", parsing_timeout=None),
                    mv.parse(f"${pred}$", parsing_timeout=None),
                    timeout_seconds=None,
                )
            )
        except Exception:
            theirs = False
        ours = math_equal(pred, gold)
        agree += ours == theirs
        if ours != theirs:
            disagreements.append((pred, gold, ours, theirs))
    rate = agree / len(CASES)
    print(f"agreement with math-verify: {agree}/{len(CASES)} = {rate:.1%}; differing: {disagreements}")
    assert rate >= 0.9, disagreements


def test_verifier_registry(monkeypatch):
    from gcpo_lite.config import ConfigError
    from gcpo_lite.data.tasks import Example
    from gcpo_lite.rewards import reward_model as rewards
    from gcpo_lite.rewards import verifiers

    ex = Example(prompt="q", answer="\\frac{1}{2}")
    assert set(rewards.VERIFIERS) >= {"math", "math_verify"}
    assert rewards.resolve_verifier("auto", "gsm8k") is rewards.verify_math
    assert rewards.resolve_verifier("auto", "gsm8k")("so \\boxed{0.5}", ex) == 1.0
    assert rewards.resolve_verifier("math", "x", last_number_fallback=False)("it is 0.5", ex) == 0.0
    assert rewards.resolve_verifier("math", "x")("it is 0.5", ex) == 1.0
    with pytest.raises(ConfigError, match="unknown verifier"):
        rewards.resolve_verifier("nope", "x")
    monkeypatch.setattr(verifiers, "math_verify_available", lambda: False)
    with pytest.raises(ConfigError, match="pip install math-verify"):
        rewards.resolve_verifier("math_verify", "x")
    model = rewards.RewardModel.from_verifier(rewards.verify_math)
    assert model.score("\\boxed{\\frac{2}{4}}", ex) == (1.0, True)


def test_math_verify_verifier_in_workers():
    pytest.importorskip("math_verify")
    from gcpo_lite.data.tasks import Example
    from gcpo_lite.rewards.reward_model import verify_math_verify

    ex = Example(prompt="q", answer="\\frac{1}{2}")
    assert verify_math_verify("so $\\boxed{0.5}$", ex) == 1.0
    assert verify_math_verify("so $\\boxed{0.4}$", ex) == 0.0


# Huge and tiny values: a wrong answer must not score 1.0 because both sides overflowed to inf, underflowed to
# 0, or sat within the relative tolerance meant for rounded decimals. `1e999999999` is 999999999e here (e is
# Euler's number in answers, see tests/math_cases.py), so that pair is two exact values 1e-9 apart.
HUGE_AND_TINY = [
    ("1e999999999", "1e999999998", False),
    ("1e999999999", "1e999999999", True),
    ("10^{-400}", "10^{-401}", False),
    ("10^{-400}", "\\frac{1}{10^{400}}", True),
    ("1e308", "1e309", False),
    ("10^{308}", "10^{309}", False),
    ("10^{400}", "10^{400}", True),
    ("10^{400}", "10^{401}", False),
    ("2^{-2000}", "0", False),
    ("2^{-2000}", "2^{-2000}", True),
    ("2^{-20000}", "0", False),  # a power too big to evaluate (latex.BIG_EXPONENT) stays symbolic
    ("10^{-20000}", "10^{-20001}", False),
    ("10^{999999999}", "10^{999999998}", False),
    ("10^{-999999999}", "10^{-999999998}", False),
    ("10^{-999999999}", "0", False),
    ("10^{-400} x", "10^{-401} x", False),
    ("999999999\\pi", "999999998\\pi", False),
    ("999999999x", "999999998x", False),
    ("x + 999999999y = 1", "x + 999999998y = 1", False),
    ("\\frac{1000000}{1000001}", "1", False),  # exact numbers are compared exactly
    ("\\frac{1}{10000000000000}", "0", False),
    ("0.0000000000001", "0", False),
    ("0." + "0" * 399 + "1", "10^{-400}", True),
    ("1" + "0" * 399 + ".5", "1" + "0" * 399 + ".5", True),
    ("1" + "0" * 399 + ".5", "1" + "0" * 399 + ".6", True),  # decimals keep REL_TOL, without a float
    ("1" + "0" * 399 + ".5", "2" + "0" * 399 + ".5", False),
    ("\\sin(\\frac{\\pi}{5})^2 + \\cos(\\frac{\\pi}{5})^2 - 1", "0", True),  # exactly 0, found numerically
]


@pytest.mark.parametrize(
    "pred,gold,expected", HUGE_AND_TINY, ids=[f"{p[:24]}|{g[:24]}" for p, g, _ in HUGE_AND_TINY]
)
def test_huge_and_tiny_values_are_compared_exactly(pred, gold, expected):
    import time

    from gcpo_lite.verify.symbolic import symbolic_equal

    t0 = time.perf_counter()
    assert symbolic_equal(pred, gold) is expected  # in this process: no worker time limit to hide a hang
    assert symbolic_equal(gold, pred) is expected
    assert time.perf_counter() - t0 < 2.0
    assert math_equal(pred, gold) is expected


def test_numbers_equal_needs_no_floats():
    """Plain numbers are compared in rationals: no float to overflow (a 400-digit decimal) or underflow."""
    from gcpo_lite.verify.equivalence import numbers_equal

    big = plain_number("1" + "0" * 399 + ".5")
    assert numbers_equal(big, big) and not numbers_equal(big, plain_number("1"))
    assert not numbers_equal(plain_number("0." + "0" * 20 + "1"), plain_number("0"))
    assert numbers_equal(plain_number("0.3333333"), plain_number("\\frac{1}{3}"))  # REL_TOL for decimals
    assert not numbers_equal(plain_number("\\frac{1000000}{1000001}"), plain_number("1"))
