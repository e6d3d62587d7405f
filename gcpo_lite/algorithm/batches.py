"""The records one step passes between its phases: scored samples (before gold) and the step's batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from gcpo_lite.data.tasks import Example


@dataclass
class Sampled:
    """Scored policy samples, one row each, grouped contiguously by prompt (G rows a group)."""

    prompts: list  # (B,) prompt ids
    completions: list  # (B,) completion ids
    mean_lp: list  # (B,) mean sampled log-prob
    rewards: list  # (B,)
    correct: list  # (B,)
    truncated: list  # (B,)
    per_function: list = field(default_factory=list)  # (B,) {reward function name: its score, NaN for None}
    entropy: list = field(default_factory=list)  # (B,) the sampler's entropy summed over each sequence

    @staticmethod
    def empty() -> "Sampled":
        return Sampled([], [], [], [], [], [], [], [])

    def group(self, j: int, G: int) -> "Sampled":
        sl = slice(j * G, (j + 1) * G)
        return Sampled(*(getattr(self, f)[sl] for f in SAMPLED_FIELDS))

    def extend(self, other: "Sampled") -> None:
        for f in SAMPLED_FIELDS:
            getattr(self, f).extend(getattr(other, f))


SAMPLED_FIELDS = (
    "prompts",
    "completions",
    "mean_lp",
    "rewards",
    "correct",
    "truncated",
    "per_function",
    "entropy",
)


@dataclass
class StepBatch:
    """One step's rollouts, B = prompts x G rows grouped contiguously."""

    examples: list[Example]
    prompts: list[list[int]]  # (B,) prompt ids
    completions: list[list[int]]  # (B,) completion ids (gold rows replaced)
    rewards: torch.Tensor  # (B,)
    advantages: torch.Tensor  # (B,)
    is_gold: torch.Tensor  # (B,) bool
    metrics: dict = field(default_factory=dict)
    masked: Optional[torch.Tensor] = None  # (B,) bool: rows left out of the loss (reward.truncated=mask)
