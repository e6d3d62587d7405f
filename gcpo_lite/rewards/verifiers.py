"""The built-in verifiers: (completion text, Example) -> 1.0 / 0.0, and the format check.

functions.py wraps each as a reward function of TRL's calling convention. Verifiers are looked up by name
in VERIFIERS (`auto` = the built-in task's own verifier, or the math verifier for other datasets). `math` is
this package's verifier (verify/answer.py extracts, verify/equivalence.py decides, sympy in time-limited
workers); `math_verify` wraps the optional math-verify package, run in the same time-limited workers.
"""

from __future__ import annotations

import functools
import re
from typing import Callable

from gcpo_lite.config import ConfigError
from gcpo_lite.data.tasks import TASKS, Example, verify_last_integer
from gcpo_lite.verify.answer import extract_answer
from gcpo_lite.verify.equivalence import DEFAULT_TIMEOUT_S, math_equal

Verifier = Callable[[str, Example], float]  # completion text, example -> score in [0, 1]

_BOXED_OR_FINAL = re.compile(r"\\boxed\{|####|answer is", re.I)


def format_reward(completion: str, example: Example) -> float:
    """1.0 when the completion states its final answer in a recognised form (\\boxed{}, ####, "the answer is")
    or, for short-answer tasks, is just the answer (digits, optional sign)."""
    text = completion.strip()
    return 1.0 if _BOXED_OR_FINAL.search(text) or re.fullmatch(r"-?\d+", text) else 0.0


__all__ = [
    "extract_answer",
    "math_equal",
    "format_reward",
    "verify_math",
    "verify_math_verify",
    "VERIFIERS",
    "resolve_verifier",
]


def gold_answer(example: Example) -> str:
    """The answer to compare against; a full solution given as the answer is reduced to its final answer."""
    answer = example.answer or ""
    if "\\boxed" in answer or "####" in answer:
        return extract_answer(answer, last_number_fallback=False) or answer
    return answer


def verify_math(completion: str, example: Example, last_number_fallback: bool = True) -> float:
    """1.0 when the completion's final answer equals the example's answer (see math_equivalence)."""
    predicted = extract_answer(completion, last_number_fallback=last_number_fallback)
    return 1.0 if predicted is not None and math_equal(predicted, gold_answer(example)) else 0.0


def math_verify_available() -> bool:
    try:
        import math_verify  # noqa: F401

        return True
    except ImportError:
        return False


def verify_math_verify(completion: str, example: Example) -> float:
    """The math-verify package's verdict (parse + verify), run in a time-limited worker process."""
    if not math_verify_available():
        raise ImportError(
            "reward.verifier=math_verify needs the math-verify package: pip install math-verify "
            "(or use reward.verifier=math, this package's own sympy verifier)"
        )
    from gcpo_lite.verify.workers import math_verify_with_timeout

    return 1.0 if math_verify_with_timeout(completion, gold_answer(example), DEFAULT_TIMEOUT_S) else 0.0


VERIFIERS: dict[str, Verifier] = {
    "last_integer": verify_last_integer,
    "math": verify_math,
    "math_verify": verify_math_verify,
}


def resolve_verifier(name: str, dataset: str, last_number_fallback: bool = True) -> Verifier:
    """The verifier for `reward.verifier` = name on `dataset` (pass reward.last_number_fallback along)."""
    if name == "auto":
        if dataset in TASKS:
            return TASKS[dataset].verify
        name = "math"
    if name not in VERIFIERS:
        raise ConfigError(f"unknown verifier {name!r}; available: auto, {', '.join(sorted(VERIFIERS))}")
    if name == "math_verify" and not math_verify_available():
        raise ConfigError(
            "reward.verifier=math_verify needs the math-verify package, which is not installed: "
            "pip install math-verify (or set reward.verifier=math)"
        )
    if name == "math" and not last_number_fallback:
        return functools.partial(verify_math, last_number_fallback=False)
    return VERIFIERS[name]
