"""Reward functions for the `smaller_number` task, in TRL's GRPOTrainer convention.

Each function is called with a batch and returns one float per completion (None = "does not apply to this
row"; a trainer combining several functions skips it for that row):

    fn(prompts, completions, completion_ids, **kwargs) -> list[float | None]

  prompts         the prompt of each row (a string, or a list of chat messages for conversational data)
  completions     the sampled completion of each row (a string, or [{"role": "assistant", "content": ...}])
  completion_ids  the completion's token ids (unused here)
  **kwargs        the dataset's other columns, one list each, aligned with completions: here `answer` and
                  `solution` (see make_data.py)

Used as (reward = 1.0 * correct + 0.2 * format_reward; `correct` decides which samples count as right, i.e.
when GCPO injects the gold solution and what `accuracy` reports):

    gcpo-lite train --dataset examples/smaller_number/train.jsonl \
        --reward-fn examples/smaller_number/rewards.py:correct \
        --reward-fn examples/smaller_number/rewards.py:format_reward \
        reward.weights=[1.0,0.2] reward.correct_fn=correct
"""

from __future__ import annotations

import re

_TWO_DIGITS = re.compile(r"\d\d")


def _text(completion) -> str:
    """The completion's text, whether the data is plain text or chat messages."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"] if completion else ""


def correct(prompts, completions, completion_ids, answer, **kwargs) -> list[float]:
    """1.0 when the completion is exactly the smaller number (surrounding whitespace ignored), else 0.0.

    Reads the `answer` column. Exact match, not "contains": "3847" or "38 47" score 0, so the policy cannot
    win by writing both numbers."""
    return [1.0 if _text(c).strip() == str(a).strip() else 0.0 for c, a in zip(completions, answer)]


def format_reward(prompts, completions, completion_ids, **kwargs) -> list[float]:
    """1.0 when the completion has the answer's shape, exactly two digits and nothing else (surrounding
    whitespace ignored), else 0.0. Right or wrong: it rewards answering in the expected form, which early in
    training separates "47" (the wrong number) from "4+7" or an empty answer."""
    return [1.0 if _TWO_DIGITS.fullmatch(_text(c).strip()) else 0.0 for c in completions]
