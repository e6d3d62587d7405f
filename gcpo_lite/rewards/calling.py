"""Calling one reward function on a batch, and what its answer must be.

A function's answer must be one value per completion: a number (bool, int, float, numpy or 0-d torch scalars)
or None ("does not apply"). A wrong count or a value that is not a number is a bug in the function: the run
stops with one line saying what came back. An exception, a NaN or infinity, or a call past reward.timeout_s
follows reward.on_error: `raise` stops the run with one line naming the function, the error and the sample;
`zero` scores those samples 0 and counts them (reward_errors). To name the sample that raised, a batch call
that raised is retried one sample at a time (so a function may see a sample twice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from gcpo_lite.config import ConfigError
from gcpo_lite.config.validation import shown
from gcpo_lite.rewards.functions import RewardFunction
from gcpo_lite.rewards.watchdog import RewardTimeout, time_limit


class RewardFunctionError(ConfigError):
    """A reward function raised, timed out or answered outside its contract; the message says which and how."""


@dataclass
class RewardBatch:
    """What one call gets: TRL's prompts / completions / completion_ids, per-row columns, shared extras."""

    prompts: list
    completions: list  # texts, or [{"role": "assistant", "content": text}] per completion (chat form)
    completion_ids: list
    columns: dict  # name -> one value per row (the dataset's columns and final_answer)
    shared: dict = field(default_factory=dict)  # the same for every row (trainer_state)
    texts: list = field(default_factory=list)  # completion texts, for error messages
    first_index: int = 0  # of row 0 in the batch it was cut from (error messages count from there)

    def __len__(self) -> int:
        return len(self.completions)

    def row(self, i: int) -> "RewardBatch":
        """Sample i alone, as a batch of one."""
        return RewardBatch(
            self.prompts[i : i + 1],
            self.completions[i : i + 1],
            self.completion_ids[i : i + 1],
            {k: v[i : i + 1] for k, v in self.columns.items()},
            self.shared,
            self.texts[i : i + 1],
            self.first_index + i,
        )

    def describe(self, i: int) -> str:
        prompt = self.prompts[i]
        prompt = prompt if isinstance(prompt, str) else (prompt[-1].get("content", "") if prompt else "")
        return f"sample {self.first_index + i} (prompt {shown(prompt, 60)}, completion {shown(self.texts[i], 60)})"


def call(
    rf: RewardFunction, batch: RewardBatch, on_error: str, timeout_s: Optional[float]
) -> tuple[list, int]:
    """(one float or None per completion, samples scored 0 under on_error=zero) for rf on batch."""
    try:
        values = _invoke(rf, batch, timeout_s)
    except RewardTimeout:
        return _failed(rf, batch, f"did not return within reward.timeout_s={timeout_s:g}s", None, on_error)
    except Exception as e:
        return _per_sample(rf, batch, e, on_error, timeout_s)
    return _checked(rf, batch, values, on_error)


def _invoke(rf: RewardFunction, batch: RewardBatch, timeout_s: Optional[float]):
    with time_limit(timeout_s, rf.name, len(batch)):
        return rf.fn(
            prompts=batch.prompts,
            completions=batch.completions,
            completion_ids=batch.completion_ids,
            **batch.columns,
            **batch.shared,
        )


def _per_sample(rf: RewardFunction, batch: RewardBatch, error: Exception, on_error: str, timeout_s) -> tuple:
    """After a batch call raised: each sample alone, to name the one that raises (and, for on_error=zero, to
    keep the others' scores)."""
    values, errors = [], 0
    for i in range(len(batch)):
        try:
            value = _invoke(rf, batch.row(i), timeout_s)
            out, bad = _checked(rf, batch.row(i), value, on_error)
        except RewardFunctionError:  # a contract error found on its own, or on_error=raise: as it is
            raise
        except RewardTimeout:
            out, bad = _failed(rf, batch, f"did not return within {timeout_s:g}s", i, on_error, single=True)
        except Exception as e:
            out, bad = _failed(rf, batch, f"raised {_error(e)}", i, on_error, single=True)
        values += out
        errors += bad
    if not errors:  # every sample scores alone: the batch itself is what it cannot take
        return _failed(rf, batch, f"raised {_error(error)} on the whole batch", None, on_error)
    return values, errors


def _error(e: Exception) -> str:
    """`ZeroDivisionError: division by zero` on one line; the bare name when the exception says nothing."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _failed(rf, batch, what: str, i: Optional[int], on_error: str, single: bool = False) -> tuple[list, int]:
    if on_error == "raise":
        where = f" on {batch.describe(i)}" if i is not None else f" ({len(batch)} samples)"
        raise RewardFunctionError(
            f"reward function {rf.name!r} {what}{where}; fix the function, or set reward.on_error=zero to score "
            "such samples 0 and count them (reward_errors)"
        )
    n = 1 if single else len(batch)
    return [0.0] * n, n


def _checked(rf, batch: RewardBatch, values, on_error: str) -> tuple[list, int]:
    """values as floats and Nones; RewardFunctionError for a wrong count or a non-number, NaN per on_error."""
    kind = type(values).__name__
    try:
        values = list(values)
    except TypeError:
        values = None
    if values is None or len(values) != len(batch):
        got = f"{len(values)} values" if values is not None else f"a {kind}"
        raise RewardFunctionError(
            f"reward function {rf.name!r} returned {got} for {len(batch)} completions; it must return a list "
            "with one float (or None: does not apply) per completion, in order"
        )
    out, errors = [], 0
    for i, v in enumerate(values):
        number = _number(rf, v, batch.first_index + i)
        if number is not None and not math.isfinite(number):
            what = f"returned {number} (use None for 'does not apply')"
            fixed, bad = _failed(rf, batch, what, i, on_error, single=True)
            number, errors = fixed[0], errors + bad
        out.append(number)
    return out, errors


def _number(rf, v, i: int) -> Optional[float]:
    if v is None:
        return None
    if isinstance(v, (str, bytes)) or not hasattr(v, "__float__"):
        raise RewardFunctionError(
            f"reward function {rf.name!r} returned {shown(v, 40)} ({type(v).__name__}) for sample {i}; "
            "each value must be a number, or None when the function does not apply to that sample"
        )
    try:
        return float(v)
    except (TypeError, ValueError) as e:  # a tensor of several values, say
        raise RewardFunctionError(
            f"reward function {rf.name!r} returned {shown(v, 40)} for sample {i}, which is not one "
            f"number ({e}); return a float per completion"
        ) from None
