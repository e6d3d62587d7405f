"""The names and defaults of the GCPO objective, in one place (torch-free: the config validates against them).

The native op takes `loss_type` and `importance_sampling_level` as codes: a name's index in these tuples
(csrc/loss_math.h declares its enums in the same order; tests/kernels/test_reference.py checks it).
"""

from __future__ import annotations

from typing import Optional

LOSS_TYPES = ("seq_mean_token_mean", "token_mean", "dr_grpo")  # how per-token losses become one number
IS_LEVELS = ("sequence", "token")  # importance ratio per completion (GSPO) or per token (GRPO/PPO)
EPSILON_DEFAULTS = {  # (epsilon_low, epsilon_high) clip ranges per importance-sampling level
    "sequence": (3e-4, 4e-4),  # GSPO's: sequence ratios are geometric means, so they sit very close to 1
    "token": (0.2, 0.28),  # DAPO's clip-higher
}


def resolved_epsilons(
    importance_sampling_level: str, epsilon_low: Optional[float] = None, epsilon_high: Optional[float] = None
) -> tuple[float, float]:
    """(epsilon_low, epsilon_high) with the level's defaults filled in for None."""
    low, high = EPSILON_DEFAULTS[importance_sampling_level]
    return (low if epsilon_low is None else epsilon_low, high if epsilon_high is None else epsilon_high)
