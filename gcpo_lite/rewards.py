"""Rewards: the task verifier's 0/1 score plus an optional weighted format reward.

A reward function that raises is logged and scores 0: one bad completion never ends a run.
Verifiers are looked up by name in VERIFIERS (`auto` = the built-in task's own verifier, or
the math verifier for other datasets).
"""
from __future__ import annotations

import logging
import re
from typing import Callable

from .tasks import TASKS, Example, verify_last_integer

log = logging.getLogger(__name__)

Verifier = Callable[[str, Example], float]  # completion text, example -> score in [0, 1]

_BOXED_OR_FINAL = re.compile(r"\\boxed\{|####|answer is", re.I)


def format_reward(completion: str, example: Example) -> float:
    """1.0 when the completion states its final answer in a recognised form (\\boxed{}, ####, "the answer is")
    or, for short-answer tasks, is just the answer (digits, optional sign)."""
    text = completion.strip()
    return 1.0 if _BOXED_OR_FINAL.search(text) or re.fullmatch(r"-?\d+", text) else 0.0


VERIFIERS: dict[str, Verifier] = {
    "last_integer": verify_last_integer,
}


def resolve_verifier(name: str, dataset: str) -> Verifier:
    """The verifier for `reward.verifier` = name on `dataset`."""
    if name == "auto":
        if dataset in TASKS:
            return TASKS[dataset].verify
        name = "math"
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; available: auto, {', '.join(sorted(VERIFIERS))}")
    return VERIFIERS[name]


class RewardModel:
    """Scores completions: verifier score + format_weight * format score; failures score 0 and are counted."""

    def __init__(self, verifier: Verifier, format_weight: float = 0.0):
        self.verifier = verifier
        self.format_weight = format_weight
        self.errors = 0  # reward-function exceptions so far

    def _safe(self, fn: Verifier, completion: str, example: Example) -> float:
        try:
            return float(fn(completion, example))
        except Exception as e:  # a broken reward function scores 0; the run goes on
            self.errors += 1
            if self.errors <= 5:
                log.warning("reward function %s raised %s: %s (scored 0)",
                            getattr(fn, "__name__", fn), type(e).__name__, e)
            return 0.0

    def correct(self, completion: str, example: Example) -> bool:
        return self._safe(self.verifier, completion, example) >= 1.0

    def score(self, completion: str, example: Example) -> tuple[float, bool]:
        """(reward, correct) for one completion."""
        ok = self.correct(completion, example)
        reward = float(ok)
        if self.format_weight:
            reward += self.format_weight * self._safe(format_reward, completion, example)
        return reward, ok
