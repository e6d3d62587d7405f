"""Plain PyTorch specification of the log-prob and loss kernels; also the fallback backend.

Every fast path in gcpo_lite.kernels is tested against these functions. They favour
clarity over memory: `token_logprobs` materializes a float32 copy of the logits.

The GCPO/GRPO loss (`gcpo_loss`), for completions i = 1..B of tokens t (mask m), advantages A_i:
  ratio (importance_sampling_level, _importance_ratio):
    sequence: s_i = exp(mean_t m*(logp - old)), one ratio per completion (GSPO)
    token:    r_it = exp(logp_it - old_it)
  per-token loss: -min(ratio * A_i, clip(ratio, 1 - eps_low, 1 + eps_high) * A_i) + beta * k3
    (_clipped_surrogate), with k3 = exp(ref - logp) - (ref - logp) - 1 (_k3_kl)
  loss_type (_aggregate):
    seq_mean_token_mean: mean over each completion's tokens, then mean over the B completions
    token_mean:          sum over all tokens / number of unmasked tokens (DAPO)
    dr_grpo:             sum over all tokens / (B * max_completion_length)
  A completion with no unmasked token contributes 0 (and still counts in B).
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


def _importance_ratio(lp: Tensor, old: Tensor, mask: Tensor, ntok: Tensor, level: str) -> Tensor:
    """exp(logp - old): one per token (level "token", (B, T)), or of its masked mean over each completion
    (level "sequence", (B, 1)); lp, old, mask (B, T), ntok (B,) unmasked tokens per completion."""
    log_ratio = (lp - old) * mask  # (B, T)
    if level == "sequence":
        log_w = (log_ratio.sum(-1) / ntok.clamp(min=1.0)).unsqueeze(-1)  # (B, 1)
    else:
        log_w = log_ratio  # (B, T)
    return torch.exp(log_w)  # (B, 1) or (B, T)


def _clipped_surrogate(ratio: Tensor, adv: Tensor, epsilon_low: float, epsilon_high: float) -> Tensor:
    """-min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A): ratio (B, 1|T), adv (B, 1) -> (B, 1|T)."""
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    return -torch.minimum(ratio * adv, clipped * adv)


def _k3_kl(ref_per_token_logps: Optional[Tensor], lp: Tensor) -> Tensor:
    """k3 = exp(ref - logp) - (ref - logp) - 1 per token (B, T): an estimator of KL(pi || ref), >= 0."""
    if ref_per_token_logps is None:
        raise ValueError("beta > 0 needs ref_per_token_logps")
    delta = ref_per_token_logps.float() - lp  # (B, T)
    return torch.exp(delta) - delta - 1.0


def _aggregate(
    masked: Tensor,
    mask: Tensor,
    ntok: Tensor,
    loss_type: str,
    max_completion_length: Optional[int],
    normalizer: Optional[float],
) -> Tensor:
    """The loss () from the masked per-token losses (B, T), per loss_type; normalizer (None: B, or the
    unmasked tokens for token_mean) is the whole step's count when the step is split into micro-batches."""
    rows = max(mask.shape[0], 1) if normalizer is None else normalizer  # B, or the step's rows
    if loss_type == "seq_mean_token_mean":
        return (masked.sum(-1) / ntok.clamp(min=1.0)).sum() / rows
    if loss_type == "token_mean":
        return masked.sum() / (mask.sum().clamp(min=1.0) if normalizer is None else normalizer)
    return masked.sum() / (rows * max_completion_length)  # dr_grpo


@torch.no_grad()
def _clip_metrics(
    ratio: Tensor,
    adv: Tensor,
    mask: Tensor,
    epsilon_low: float,
    epsilon_high: float,
    kl: Optional[Tensor],
) -> dict[str, Tensor]:
    """Shares of unmasked tokens whose clipped branch wins the min (ratio below 1-eps with A<0: low; above
    1+eps with A>0: high), the mean ratio and the mean k3 KL; a sequence ratio counts for each token."""
    r = ratio.expand_as(mask)  # (B, T)
    a = adv.expand_as(mask)  # (B, T)
    low = ((r < 1.0 - epsilon_low) & (a < 0)).float()
    high = ((r > 1.0 + epsilon_high) & (a > 0)).float()
    denom = mask.sum().clamp(min=1.0)
    return {
        "clip_ratio_low": (low * mask).sum() / denom,
        "clip_ratio_high": (high * mask).sum() / denom,
        "clip_ratio": ((low + high) * mask).sum() / denom,
        "importance_ratio_mean": (r * mask).sum() / denom,
        "kl": ((kl * mask).sum() / denom) if kl is not None else torch.zeros(()),
    }


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
    """Clipped GCPO/GRPO surrogate with optional k3 KL, aggregated per `loss_type` (the module docstring).

    per_token_logps, old_per_token_logps, ref_per_token_logps, completion_mask: (B, T); advantages: (B,).
    normalizer: the whole step's count this call's sum is divided by, when the step is split into
      micro-batches (rows for seq_mean_token_mean and dr_grpo, unmasked tokens for token_mean), so the
      micro-batch losses add up to the step's loss; None = this call's own (B, or its token count).
    Returns (loss (), metrics) with detached scalar metrics: clip_ratio_low, clip_ratio_high,
    clip_ratio, kl, importance_ratio_mean."""
    check_loss_options(importance_sampling_level, loss_type, max_completion_length)
    epsilon_low, epsilon_high = resolved_epsilons(importance_sampling_level, epsilon_low, epsilon_high)
    mask = completion_mask.to(torch.float32)  # (B, T)
    lp = per_token_logps.float()  # (B, T)
    adv = advantages.float().unsqueeze(-1)  # (B, 1)
    ntok = mask.sum(-1)  # (B,)
    ratio = _importance_ratio(lp, old_per_token_logps.float(), mask, ntok, importance_sampling_level)
    per_token_loss = _clipped_surrogate(ratio, adv, epsilon_low, epsilon_high).expand_as(mask)  # (B, T)
    kl = _k3_kl(ref_per_token_logps, lp) if beta != 0.0 else None  # (B, T)
    if kl is not None:
        per_token_loss = per_token_loss + beta * kl
    loss = _aggregate(per_token_loss * mask, mask, ntok, loss_type, max_completion_length, normalizer)
    return loss, _clip_metrics(ratio, adv, mask, epsilon_low, epsilon_high, kl)
