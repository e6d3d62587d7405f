"""Plain PyTorch specification of the log-prob and loss kernels; also the fallback backend.

Every fast path in gcpo_lite.kernels is tested against these functions. They favour
clarity over memory: `token_logprobs` materializes a float32 copy of the logits.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from gcpo_lite.config.objective import IS_LEVELS, LOSS_TYPES, resolved_epsilons


def token_logprobs(
    logits: Tensor, ids: Tensor, temperature: float = 1.0, suppress_ids: Optional[Tensor] = None
) -> Tensor:
    """log softmax(logits / temperature)[ids] per row.

    logits (N, V) any float dtype; ids (N,) int64; returns float32 (N,).
    suppress_ids: vocab ids excluded from the softmax (their logits become -inf), the same
    ids the sampler bans, so training never moves probability onto them.
    """
    x = logits.float() / temperature  # (N, V) fp32
    if suppress_ids is not None and suppress_ids.numel():
        x = x.index_fill(-1, suppress_ids.to(x.device), float("-inf"))
    lse = torch.logsumexp(x, dim=-1)  # (N,)
    return x.gather(-1, ids.long().unsqueeze(-1)).squeeze(-1) - lse  # (N,)


def token_logprobs_from_hidden(
    hidden: Tensor,
    weight: Tensor,
    ids: Tensor,
    temperature: float = 1.0,
    chunk_size: Optional[int] = None,
    suppress_ids: Optional[Tensor] = None,
) -> Tensor:
    """token_logprobs(hidden @ weight.T, ids): hidden (N, H), lm_head weight (V, H) -> float32 (N,).

    The reference builds the full (N, V) logits; chunk_size is accepted for signature parity."""
    return token_logprobs(hidden @ weight.t(), ids, temperature, suppress_ids)


def check_loss_options(
    importance_sampling_level: str, loss_type: str, max_completion_length: Optional[int]
) -> None:
    """Raise ValueError for an option combination gcpo_loss (any backend) cannot compute."""
    if importance_sampling_level not in IS_LEVELS:
        raise ValueError(
            f"importance_sampling_level must be one of {IS_LEVELS}, got {importance_sampling_level!r}"
        )
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if loss_type == "dr_grpo" and not max_completion_length:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length")


def gcpo_loss(
    per_token_logps: Tensor,
    old_per_token_logps: Tensor,
    advantages: Tensor,
    completion_mask: Tensor,
    *,
    ref_per_token_logps: Optional[Tensor] = None,
    importance_sampling_level: str = "sequence",
    epsilon_low: Optional[float] = None,
    epsilon_high: Optional[float] = None,
    beta: float = 0.0,
    loss_type: str = "seq_mean_token_mean",
    max_completion_length: Optional[int] = None,
    normalizer: Optional[float] = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped GCPO/GRPO surrogate with optional k3 KL, aggregated per `loss_type`.

    per_token_logps, old_per_token_logps, ref_per_token_logps, completion_mask: (B, T)
    advantages: (B,)
    importance_sampling_level:
      sequence: s_i = exp(mean_t m*(logp - old)), one ratio per completion (GSPO)
      token:    r_it = exp(logp_it - old_it)
    per-token loss: -min(ratio * A_i, clip(ratio, 1 - eps_low, 1 + eps_high) * A_i) + beta * k3
      with k3 = exp(ref - logp) - (ref - logp) - 1
    loss_type:
      seq_mean_token_mean: mean over each completion's tokens, then mean over the B completions
      token_mean:          sum over all tokens / number of unmasked tokens (DAPO)
      dr_grpo:             sum over all tokens / (B * max_completion_length)
    A completion with no unmasked token contributes 0 (and still counts in B).
    normalizer: the whole step's count this call's sum is divided by, when the step is split into
      micro-batches (rows for seq_mean_token_mean and dr_grpo, unmasked tokens for token_mean), so the
      micro-batch losses add up to the step's loss; None = this call's own (B, or its token count).
    Returns (loss (), metrics) with detached scalar metrics: clip_ratio_low, clip_ratio_high,
    clip_ratio, kl, importance_ratio_mean.
    """
    check_loss_options(importance_sampling_level, loss_type, max_completion_length)
    epsilon_low, epsilon_high = resolved_epsilons(importance_sampling_level, epsilon_low, epsilon_high)
    mask = completion_mask.to(torch.float32)  # (B, T)
    lp = per_token_logps.float()  # (B, T)
    old = old_per_token_logps.float()  # (B, T)
    adv = advantages.float().unsqueeze(-1)  # (B, 1)
    ntok = mask.sum(-1)  # (B,)
    log_ratio = (lp - old) * mask  # (B, T)
    if importance_sampling_level == "sequence":
        log_w = (log_ratio.sum(-1) / ntok.clamp(min=1.0)).unsqueeze(-1)  # (B, 1)
    else:
        log_w = log_ratio  # (B, T)
    ratio = torch.exp(log_w)  # (B, 1) or (B, T)
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    per_token_loss = -torch.minimum(ratio * adv, clipped * adv)  # (B, 1|T)
    per_token_loss = per_token_loss.expand_as(mask)  # (B, T)
    kl = None
    if beta != 0.0:
        if ref_per_token_logps is None:
            raise ValueError("beta > 0 needs ref_per_token_logps")
        delta = ref_per_token_logps.float() - lp  # (B, T)
        kl = torch.exp(delta) - delta - 1.0  # (B, T) k3 estimator, >= 0
        per_token_loss = per_token_loss + beta * kl
    masked = per_token_loss * mask  # (B, T)
    B = mask.shape[0]
    if loss_type == "seq_mean_token_mean":
        loss = (masked.sum(-1) / ntok.clamp(min=1.0)).sum() / (
            max(B, 1) if normalizer is None else normalizer
        )
    elif loss_type == "token_mean":
        loss = masked.sum() / (mask.sum().clamp(min=1.0) if normalizer is None else normalizer)
    else:  # dr_grpo
        loss = masked.sum() / ((max(B, 1) if normalizer is None else normalizer) * max_completion_length)

    with torch.no_grad():
        # Clipping is active where the clipped branch wins the min: ratio below 1-eps with A<0,
        # or above 1+eps with A>0. Counted per token (a sequence ratio counts for each token).
        r = ratio.expand_as(mask)
        a = adv.expand_as(mask)
        low = ((r < 1.0 - epsilon_low) & (a < 0)).float()
        high = ((r > 1.0 + epsilon_high) & (a > 0)).float()
        denom = mask.sum().clamp(min=1.0)
        metrics = {
            "clip_ratio_low": (low * mask).sum() / denom,
            "clip_ratio_high": (high * mask).sum() / denom,
            "clip_ratio": ((low + high) * mask).sum() / denom,
            "importance_ratio_mean": (r * mask).sum() / denom,
            "kl": ((kl * mask).sum() / denom) if kl is not None else torch.zeros(()),
        }
    return loss, metrics
