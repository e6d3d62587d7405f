"""A run's rewards: its reward functions, their weights, and the rule that says which samples are correct.

reward = sum of weight x score over the functions, a None score adding nothing (TRL's weighted sum: a sample
every function declines scores 0, with a warning). Each function's own scores are kept for its metrics
(reward/<name>/mean and /std, over the samples it scored).

"Correct" (accuracy; GCPO's all-wrong groups, which get the gold; the check that a gold is worth injecting)
is one function's score >= reward.correct_threshold: reward.correct_fn names it, and `auto` picks the first
built-in verifier listed, else the first function. A None score is not correct.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional, Sequence

from gcpo_lite.config import ConfigError, RewardConfig
from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.calling import RewardBatch, RewardFunctionError, call
from gcpo_lite.rewards.functions import RewardFunction, format_function, make_function, verifier_function
from gcpo_lite.rewards.verifiers import (  # noqa: F401 (the verifiers' public names, re-exported)
    VERIFIERS,
    extract_answer,
    format_reward,
    math_equal,
    resolve_verifier,
    verify_math,
    verify_math_verify,
)

log = logging.getLogger(__name__)

__all__ = ["RewardModel", "RewardFunction", "RewardFunctionError", "Scores", "build_reward_model"]


@dataclass
class Scores:
    rewards: list  # (B,) weighted sums
    correct: list  # (B,) the correctness rule's verdicts
    per_function: dict  # name -> (B,) that function's scores, NaN where it returned None


@dataclass
class CorrectRule:
    function: RewardFunction
    threshold: float
    listed: bool  # one of the reward functions (else scored for correctness alone)
    why: str

    def describe(self) -> str:
        return f"correct = {self.function.name} >= {self.threshold:g} ({self.why})"


class RewardModel:
    """Scores completions with the run's reward functions; counts the samples scored 0 by reward.on_error=zero."""

    def __init__(
        self, functions: list, rule: CorrectRule, on_error: str = "raise", timeout_s: Optional[float] = None
    ):
        self.functions, self.rule = functions, rule
        self.on_error, self.timeout_s = on_error, timeout_s
        self.errors = 0  # samples scored 0 for an exception, a NaN or a timeout so far

    @classmethod
    def from_verifier(cls, verifier, format_weight: float = 0.0, on_error: str = "zero") -> "RewardModel":
        """A (text, Example) verifier (+ the format reward at format_weight), as before reward functions."""
        main = verifier_function(verifier)
        functions = [main] + ([format_function(format_weight)] if format_weight else [])
        return cls(functions, CorrectRule(main, 1.0, True, "the verifier"), on_error)

    @property
    def needs_answer(self) -> bool:
        """A built-in verifier is used: every row needs a final answer to compare against."""
        return any(f.verifier for f in (*self.functions, self.rule.function))

    def describe(self) -> str:
        terms = " + ".join(f"{f.weight:g} x {f.name}" for f in self.functions)
        return f"reward = {terms} | {self.rule.describe()} | on error: {self.on_error}"

    def score_batch(
        self, texts: Sequence[str], ids: Sequence, examples: Sequence[Example], state=None
    ) -> Scores:
        """Scores of completion i (text, token ids) of examples[i]."""
        batch = make_batch(texts, ids, examples, state)
        per_function = {}
        for f in self.functions:
            per_function[f.name] = self._values(f, batch)
        rewards = [_weighted(self.functions, per_function, i) for i in range(len(texts))]
        if any(r is None for r in rewards):
            log.warning(
                "every reward function returned None for %d samples: they score 0", rewards.count(None)
            )
            rewards = [0.0 if r is None else r for r in rewards]
        rule = (
            per_function[self.rule.function.name]
            if self.rule.listed
            else self._values(self.rule.function, batch)
        )
        correct = [not math.isnan(v) and v >= self.rule.threshold for v in rule]
        return Scores(rewards, correct, per_function)

    def _values(self, f: RewardFunction, batch: RewardBatch) -> list:
        values, errors = call(f, batch, self.on_error, self.timeout_s)
        self.errors += errors
        if errors and self.errors == errors:
            log.warning(
                "reward function %s failed on %d samples: scored 0 (reward.on_error=zero)", f.name, errors
            )
        return [math.nan if v is None else v for v in values]

    def correct_batch(
        self, texts: Sequence[str], ids: Sequence, examples: Sequence[Example], state=None
    ) -> list:
        """The correctness rule alone (held-out accuracy): one bool per completion."""
        values = self._values(self.rule.function, make_batch(texts, ids, examples, state))
        return [not math.isnan(v) and v >= self.rule.threshold for v in values]

    def score(
        self, text: str, example: Example, ids: Optional[list] = None, state=None
    ) -> tuple[float, bool]:
        """(reward, correct) for one completion."""
        s = self.score_batch([text], [ids or []], [example], state)
        return s.rewards[0], s.correct[0]

    def correct(self, text: str, example: Example) -> bool:
        return self.correct_batch([text], [[]], [example])[0]


def _weighted(functions: list, per_function: dict, i: int) -> Optional[float]:
    terms = [f.weight * per_function[f.name][i] for f in functions if not math.isnan(per_function[f.name][i])]
    return sum(terms) if terms else None


def make_batch(texts: Sequence[str], ids: Sequence, examples: Sequence[Example], state=None) -> RewardBatch:
    """TRL's arguments for completions texts[i] of examples[i]: chat-form prompts and completions as messages
    when the example's prompt is; every column of the rows (None where a row lacks it); final_answer."""
    chat = any(getattr(ex, "messages", None) for ex in examples)
    prompts = [getattr(ex, "messages", None) or ex.prompt for ex in examples]
    completions = [[{"role": "assistant", "content": t}] for t in texts] if chat else list(texts)
    rows = [_columns(ex) for ex in examples]
    names = list(dict.fromkeys(k for row in rows for k in row))
    columns = {k: [row.get(k) for row in rows] for k in names}
    columns["final_answer"] = [ex.answer for ex in examples]
    shared = {"trainer_state": state}  # as TRL always passes it; None outside training (gcpo-lite eval)
    return RewardBatch(prompts, completions, [list(i) for i in ids], columns, shared, list(texts))


def _columns(ex: Example) -> dict:
    columns = getattr(ex, "columns", None)
    if columns:
        return columns
    return {"answer": ex.answer, "solution": ex.solution}


def build_reward_model(r: RewardConfig, dataset: str, functions: Optional[list] = None) -> RewardModel:
    """The run's RewardModel from its reward section; `functions` (callables or names, from the Python API)
    replace reward.functions."""
    if functions is None and r.functions is None:  # the verifier (+ format): reward.verifier / format_weight
        entries, weights = _default_entries(r), [1.0] + ([r.format_weight] if r.format_weight else [])
    else:
        entries = functions if functions is not None else r.functions
        weights = [1.0] * len(entries)
    made = [make_function(e, dataset, r.last_number_fallback) for e in entries]
    weights = r.weights if r.weights is not None else weights
    if len(weights) != len(made):
        raise ConfigError(
            f"reward.weights has {len(weights)} values for {len(made)} reward functions; give one per function"
        )
    for f, w in zip(made, weights):
        f.weight = float(w)
    _unique_names(made)
    rule = correct_rule(r, made, dataset)
    return RewardModel(made, rule, r.on_error, r.timeout_s)


def _default_entries(r: RewardConfig) -> list:
    return [r.verifier] + (["format"] if r.format_weight else [])


def _unique_names(functions: list) -> None:
    """Two functions of one name get _2, _3 ... so each has its own metrics."""
    seen: dict = {}
    for f in functions:
        seen[f.name] = seen.get(f.name, 0) + 1
        if seen[f.name] > 1:
            f.name = f"{f.name}_{seen[f.name]}"


def correct_rule(r: RewardConfig, functions: list, dataset: str) -> CorrectRule:
    """reward.correct_fn as a CorrectRule: a listed function by name, `auto`, or a spec scored on the side."""
    name = r.correct_fn.strip()
    if name == "auto":
        chosen = next((f for f in functions if f.verifier), functions[0])
        why = (
            "the built-in verifier" if chosen.verifier else "the first reward function; set reward.correct_fn"
        )
        return CorrectRule(chosen, r.correct_threshold, True, f"reward.correct_fn=auto: {why}")
    listed = [f for f in functions if name in (f.name, f.spec)]
    if listed:
        return CorrectRule(listed[0], r.correct_threshold, True, "reward.correct_fn")
    try:
        extra = make_function(name, dataset, r.last_number_fallback)
    except ConfigError as e:
        names = ", ".join(f.name for f in functions)
        raise ConfigError(
            f"reward.correct_fn={name!r} is none of the reward functions ({names}): {e}"
        ) from None
    return CorrectRule(extra, r.correct_threshold, False, "reward.correct_fn, scored for correctness only")
