"""The GCPO objective, as the trainer calls it.

Routes through gcpo_lite.kernels so a compiled backend can replace the reference; the
reference in kernels/reference.py is the specification (see its docstring for the maths).
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from . import kernels


def gcpo_loss(per_token_logps: Tensor, old_per_token_logps: Tensor, advantages: Tensor,
              completion_mask: Tensor, *, ref_per_token_logps: Optional[Tensor] = None,
              importance_sampling_level: str = "sequence", epsilon_low: float = 3e-4,
              epsilon_high: float = 4e-4, beta: float = 0.0, loss_type: str = "seq_mean_token_mean",
              max_completion_length: Optional[int] = None) -> tuple[Tensor, dict[str, Tensor]]:
    """per-token tensors (B, T), advantages (B,) -> (scalar loss, detached metrics)."""
    return kernels.gcpo_loss(
        per_token_logps, old_per_token_logps, advantages, completion_mask,
        ref_per_token_logps=ref_per_token_logps, importance_sampling_level=importance_sampling_level,
        epsilon_low=epsilon_low, epsilon_high=epsilon_high, beta=beta, loss_type=loss_type,
        max_completion_length=max_completion_length)
