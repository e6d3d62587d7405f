"""Group statistics and advantages.

Rewards arrive as (B,) with B = num_prompts x G, grouped contiguously: rows g*G .. g*G+G-1
belong to prompt g.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor

STD_EPS = 1e-4  # advantage = (r - mean) / (std + STD_EPS)


def group_advantages(
    rewards: Tensor, num_generations: int, scale_rewards: str = "group", batch_std: Optional[Tensor] = None
) -> Tensor:
    """rewards (B,) -> advantages (B,).

    group: (r - group mean) / (group std + eps)
    batch: (r - group mean) / (batch std + eps)
    none:  r - group mean
    std is the unbiased (n - 1) standard deviation, as TRL uses. batch_std (a 0-d tensor): the batch's std
    when `rewards` is one part of it (a torchrun process's share of the global batch).
    """
    r = rewards.float().view(-1, num_generations)  # (groups, G)
    centered = r - r.mean(dim=1, keepdim=True)  # (groups, G)
    if scale_rewards == "group":
        centered = centered / (r.std(dim=1, keepdim=True) + STD_EPS)
    elif scale_rewards == "batch" and batch_std is not None:
        centered = centered / (batch_std + STD_EPS)
    elif scale_rewards == "batch":
        centered = centered / (r.std() + STD_EPS) if r.numel() > 1 else centered
    elif scale_rewards != "none":
        raise ValueError(f"scale_rewards must be group, batch or none, got {scale_rewards!r}")
    return centered.reshape(-1)  # (B,)


@dataclass
class GroupStats:
    all_correct_frac: float
    all_wrong_frac: float
    zero_advantage_groups: int


def group_stats(correct: Tensor, advantages: Tensor, num_generations: int) -> GroupStats:
    """correct (B,) bool over sampled (pre-injection) completions, advantages (B,)."""
    c = correct.view(-1, num_generations)
    a = advantages.view(-1, num_generations)
    return GroupStats(
        all_correct_frac=c.all(dim=1).float().mean().item(),
        all_wrong_frac=(~c).all(dim=1).float().mean().item(),
        zero_advantage_groups=int((a.abs() < 1e-8).all(dim=1).sum().item()),
    )
