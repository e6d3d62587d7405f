"""The reward section: which reward functions score a run, their weights, what "correct" means, and what
happens when a function fails (gcpo_lite/rewards/ implements it; docs/RUNS.md documents the contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class RewardConfig:
    functions: Optional[list] = field(
        default=None,
        metadata={
            "help": "reward functions, summed with reward.weights: built-in names (auto, math, math_verify, "
            "last_integer, format) or your own in TRL's convention, as FILE.py:NAME or package.module:NAME; "
            "None = [verifier] (+ format when format_weight > 0)"
        },
    )
    weights: Optional[list] = field(
        default=None,
        metadata={"help": "one weight per reward function (None: 1.0 each; a None score adds nothing)"},
    )
    correct_fn: str = field(
        default="auto",
        metadata={
            "help": "the function whose score says a sample is correct (accuracy, and GCPO's all-wrong groups "
            "that get gold): a name from reward.functions or FILE.py:NAME; auto = the first built-in verifier "
            "listed, else the first function"
        },
    )
    correct_threshold: float = field(
        default=1.0, metadata={"help": "a sample is correct when correct_fn's score is >= this"}
    )
    on_error: Literal["raise", "zero"] = field(
        default="raise",
        metadata={
            "help": "a reward function that raises (or returns NaN, or times out): raise (stop the run with one "
            "line naming the function and the sample; the last checkpoint stays) | zero (score 0, count it "
            "in reward_errors)"
        },
    )
    timeout_s: float = field(
        default=300.0,
        metadata={
            "help": "seconds one call of a reward function may take before it is stopped (as on_error says)"
        },
    )
    verifier: Literal["auto", "math", "math_verify", "last_integer"] = field(
        default="auto",
        metadata={
            "help": "the built-in verifier when reward.functions is None: auto (the task's own) | math | "
            "math_verify | last_integer"
        },
    )
    format_weight: float = field(
        default=0.0,
        metadata={
            "help": "when reward.functions is None: weight of the format reward (answer in \\boxed{} or the "
            "task's answer format); 0 = off"
        },
    )
    last_number_fallback: bool = field(
        default=True,
        metadata={"help": 'math verifier: take the last number when no \\boxed{} / #### / "the answer is"'},
    )
    truncated: Literal["zero", "score", "mask"] = field(
        default="zero",
        metadata={
            "help": "a sample that hit max_completion_length without its end token: zero (scores 0 and counts "
            "as wrong) | score (its text is scored as usual) | mask (scored, but left out of the loss, like "
            "DAPO's overlong filtering); counted as truncated_zeroed / truncated_masked"
        },
    )
