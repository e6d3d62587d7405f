"""Python side of the compiled ops: autograd formulas, fake (meta) kernels, and the public wrappers.

Import only after `_ext.load()` succeeded (kernels/__init__.py does that). The op schemas live in
csrc/gcpo_ops.cpp; registering autograd and fake kernels here, per op, keeps Python free of device
branches and lets torch.compile and torch.library.opcheck trace every op.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from gcpo_lite.config.objective import IS_LEVELS, LOSS_TYPES, resolved_epsilons
from gcpo_lite.kernels import _ext, reference
from gcpo_lite.kernels.chunked import default_chunk_size

_ext.require()
_ops = torch.ops.gcpo_lite
METRICS = (
    "clip_ratio_low",
    "clip_ratio_high",
    "clip_ratio",
    "importance_ratio_mean",
    "kl",
)  # op output order


def _out_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


# ---- fake kernels: shapes and dtypes only ------------------------------------------------------


@torch.library.register_fake("gcpo_lite::token_logprobs_fwd")
def _(logits, ids, temperature, suppress_ids):
    n = logits.shape[0]
    return logits.new_empty(n, dtype=_out_dtype(logits)), logits.new_empty(n, dtype=_out_dtype(logits))


@torch.library.register_fake("gcpo_lite::token_logprobs_bwd")
def _(grad_logp, logits, ids, lse, temperature, suppress_ids):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


@torch.library.register_fake("gcpo_lite::token_logprobs_bwd_")
def _(grad_logp, logits, ids, lse, temperature, suppress_ids):
    return None


@torch.library.register_fake("gcpo_lite::logprobs_from_hidden_fwd")
def _(hidden, weight, ids, temperature, chunk_size, suppress_ids):
    n = hidden.shape[0]
    return hidden.new_empty(n, dtype=_out_dtype(hidden)), hidden.new_empty(n, dtype=_out_dtype(hidden))


@torch.library.register_fake("gcpo_lite::logprobs_from_hidden_bwd")
def _(grad_logp, hidden, weight, ids, lse, temperature, chunk_size, suppress_ids, weight_grad):
    gw = (
        torch.empty_like(weight, memory_format=torch.contiguous_format)
        if weight_grad
        else weight.new_empty(0)
    )
    return torch.empty_like(hidden, memory_format=torch.contiguous_format), gw


@torch.library.register_fake("gcpo_lite::gcpo_loss_fwd")
def _(logps, old_logps, ref_logps, advantages, mask, is_level, eps_low, eps_high, beta, loss_type, max_len):
    dt = _out_dtype(logps)
    return logps.new_empty((), dtype=dt), logps.new_empty(logps.shape, dtype=dt), logps.new_empty(5, dtype=dt)


# ---- autograd ------------------------------------------------------------------------------------


def _setup_logprobs(ctx, inputs, output):
    logits, ids, temperature, suppress_ids = inputs
    ctx.mark_non_differentiable(output[1])  # lse is a saved statistic, not a differentiable output
    ctx.save_for_backward(logits, ids, output[1], suppress_ids)
    ctx.temperature = temperature


def _backward_logprobs(ctx, grad_logp, _grad_lse):
    logits, ids, lse, suppress_ids = ctx.saved_tensors
    grad = _ops.token_logprobs_bwd(grad_logp.contiguous(), logits, ids, lse, ctx.temperature, suppress_ids)
    return grad, None, None, None


torch.library.register_autograd(
    "gcpo_lite::token_logprobs_fwd", _backward_logprobs, setup_context=_setup_logprobs
)


def _setup_hidden(ctx, inputs, output):
    hidden, weight, ids, temperature, chunk_size, suppress_ids = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(hidden, weight, ids, output[1], suppress_ids)
    ctx.temperature, ctx.chunk_size = temperature, chunk_size


def _backward_hidden(ctx, grad_logp, _grad_lse):
    hidden, weight, ids, lse, suppress_ids = ctx.saved_tensors
    weight_grad = ctx.needs_input_grad[1]
    gh, gw = _ops.logprobs_from_hidden_bwd(
        grad_logp.contiguous(),
        hidden,
        weight,
        ids,
        lse,
        ctx.temperature,
        ctx.chunk_size,
        suppress_ids,
        weight_grad,
    )
    return gh, (gw if weight_grad else None), None, None, None, None


torch.library.register_autograd(
    "gcpo_lite::logprobs_from_hidden_fwd", _backward_hidden, setup_context=_setup_hidden
)


def _setup_loss(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.save_for_backward(output[1])


def _backward_loss(ctx, grad_loss, _g1, _g2):
    (dloss_dlogps,) = ctx.saved_tensors  # (B, T), computed by the forward kernel
    return (grad_loss * dloss_dlogps,) + (None,) * 10


torch.library.register_autograd("gcpo_lite::gcpo_loss_fwd", _backward_loss, setup_context=_setup_loss)


class _LogprobsInplaceGrad(torch.autograd.Function):
    """token_logprobs whose backward overwrites the logits buffer with its gradient (no (N, V) alloc).

    Only for callers that no longer need the logits after backward (e.g. lm_head output used once).
    Autograd's version counter still catches a second user that saved the same logits."""

    @staticmethod
    def forward(ctx, logits, ids, temperature, suppress_ids):
        logp, lse = _ops.token_logprobs_fwd(logits, ids, temperature, suppress_ids)
        ctx.save_for_backward(logits, ids, lse, suppress_ids)
        ctx.temperature = temperature
        return logp

    @staticmethod
    def backward(ctx, grad_logp):
        logits, ids, lse, suppress_ids = ctx.saved_tensors
        _ops.token_logprobs_bwd_(grad_logp.contiguous(), logits, ids, lse, ctx.temperature, suppress_ids)
        torch.autograd.graph.increment_version(logits)
        return logits, None, None, None


# ---- public wrappers -------------------------------------------------------------------------------


def _flat_ids(ids: Tensor, n: int, device: torch.device) -> Tensor:
    ids = ids.reshape(-1)
    if ids.numel() != n:
        raise ValueError(f"ids has {ids.numel()} elements but there are {n} rows of logits/hidden")
    return ids.to(device=device, dtype=torch.long)


def token_logprobs(
    logits: Tensor,
    ids: Tensor,
    temperature: float = 1.0,
    suppress_ids: Optional[Tensor] = None,
    inplace_backward: bool = False,
) -> Tensor:
    """logits (..., V), ids (...) -> float32 (...) log-probs; see reference.token_logprobs.

    inplace_backward: backward writes the logits gradient into `logits` itself (needs a (N, V)
    view of it, i.e. leading dims that flatten without a copy)."""
    lead, V = logits.shape[:-1], logits.shape[-1]
    x = logits.reshape(-1, V)  # (N, V), a view when possible
    if x.stride(-1) != 1:
        x = x.contiguous()
    idx = _flat_ids(ids, x.shape[0], x.device)
    inplace = (
        inplace_backward and torch.is_grad_enabled() and x.requires_grad and x.data_ptr() == logits.data_ptr()
    )
    if inplace:
        logp = _LogprobsInplaceGrad.apply(x, idx, float(temperature), suppress_ids)
    else:
        logp, _ = _ops.token_logprobs_fwd(x, idx, float(temperature), suppress_ids)
    return logp.reshape(lead)


def token_logprobs_from_hidden(
    hidden: Tensor,
    weight: Tensor,
    ids: Tensor,
    temperature: float = 1.0,
    chunk_size: Optional[int] = None,
    suppress_ids: Optional[Tensor] = None,
) -> Tensor:
    """hidden (..., H), lm_head weight (V, H), ids (...) -> float32 (...); at most chunk_size x V logits live."""
    lead, H = hidden.shape[:-1], hidden.shape[-1]
    h = hidden.reshape(-1, H)  # (N, H)
    idx = _flat_ids(ids, h.shape[0], h.device)
    chunk = int(chunk_size) if chunk_size else default_chunk_size(weight.shape[0], hidden.dtype)
    logp, _ = _ops.logprobs_from_hidden_fwd(h, weight, idx, float(temperature), chunk, suppress_ids)
    return logp.reshape(lead)


def _kl_reference(beta: float, ref_per_token_logps: Optional[Tensor]) -> Optional[Tensor]:
    """The reference log-probs the op reads: None when beta is 0 (no KL term)."""
    if beta != 0.0 and ref_per_token_logps is None:
        raise ValueError("beta > 0 needs ref_per_token_logps")
    return ref_per_token_logps if beta != 0.0 else None


def _rescale_to_step(
    loss: Tensor, completion_mask: Tensor, advantages: Tensor, loss_type: str, normalizer: float
) -> Tensor:
    """The op divides by its own count (B, or its unmasked tokens for token_mean): divide by the step's."""
    own = (
        float(completion_mask.sum().clamp(min=1))
        if loss_type == "token_mean"
        else float(max(1, len(advantages)))
    )
    return loss * (own / normalizer)


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
    """Same contract as reference.gcpo_loss; the gradient flows to per_token_logps only."""
    reference.check_loss_options(importance_sampling_level, loss_type, max_completion_length)
    epsilon_low, epsilon_high = resolved_epsilons(importance_sampling_level, epsilon_low, epsilon_high)
    loss, _, m = _ops.gcpo_loss_fwd(
        per_token_logps,
        old_per_token_logps,
        _kl_reference(beta, ref_per_token_logps),
        advantages,
        completion_mask,
        IS_LEVELS.index(importance_sampling_level),
        float(epsilon_low),
        float(epsilon_high),
        float(beta),
        LOSS_TYPES.index(loss_type),
        int(max_completion_length or 0),
    )
    m = m.detach()
    if normalizer is not None:
        loss = _rescale_to_step(loss, completion_mask, advantages, loss_type, normalizer)
    return loss, {name: m[i] for i, name in enumerate(METRICS)}
