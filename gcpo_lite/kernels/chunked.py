"""token_logprobs_from_hidden in plain PyTorch, chunked over tokens: the reference backend's training path.

reference.token_logprobs_from_hidden stays the oracle (it builds the full (N, V) logits). This
version computes the same values with at most chunk_size x V logits alive (plus a few fp32 temporaries
of that size), and its backward recomputes each chunk's logits instead of saving them.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from gcpo_lite.config.units import LOGITS_CHUNK_BUDGET_BYTES


def default_chunk_size(vocab_size: int, dtype: torch.dtype) -> int:
    """Tokens per chunk so one chunk of logits takes about LOGITS_CHUNK_BUDGET_BYTES (441 fp32 rows at V=151936)."""
    elem = torch.empty((), dtype=dtype).element_size()
    return max(16, LOGITS_CHUNK_BUDGET_BYTES // (vocab_size * elem))


def _scaled_chunk(h: Tensor, weight: Tensor, temperature: float, supp: Optional[Tensor]) -> Tensor:
    x = (h @ weight.t()).float()  # (c, V): logits in the input dtype, as the reference, then fp32
    x.div_(temperature)
    if supp is not None:
        x.index_fill_(-1, supp, float("-inf"))
    return x


class _ChunkedHiddenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, ids, temperature, chunk_size, supp):
        N = hidden.shape[0]
        logp = hidden.new_empty(N, dtype=torch.float32)  # (N,)
        lse = hidden.new_empty(N, dtype=torch.float32)  # (N,) saved: backward rebuilds softmax from it
        for s in range(0, N, chunk_size):
            e = min(s + chunk_size, N)
            x = _scaled_chunk(hidden[s:e], weight, temperature, supp)  # (c, V)
            lse[s:e] = torch.logsumexp(x, dim=-1)
            logp[s:e] = x.gather(-1, ids[s:e, None]).squeeze(-1) - lse[s:e]
        ctx.save_for_backward(hidden, weight, ids, lse, supp)
        ctx.temperature, ctx.chunk_size = temperature, chunk_size
        return logp

    @staticmethod
    def backward(ctx, grad_logp):
        hidden, weight, ids, lse, supp = ctx.saved_tensors
        T, C, N = ctx.temperature, ctx.chunk_size, hidden.shape[0]
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            if ctx.needs_input_grad[1]
            else None
        )
        g_all = grad_logp.float()
        for s in range(0, N, C):
            e = min(s + C, N)
            x = _scaled_chunk(hidden[s:e], weight, T, supp)  # (c, V)
            g = g_all[s:e, None]  # (c, 1)
            x.sub_(lse[s:e, None])  # log-softmax, in place
            target = -g * torch.expm1(x.gather(-1, ids[s:e, None]))  # g (1 - p) without cancelling as p -> 1
            x.exp_().mul_(-g)  # -g * softmax, in place
            x.scatter_(-1, ids[s:e, None], target)  # the target's entry: g * (1 - p), as the native kernels
            if supp is not None:
                x.index_fill_(-1, supp, 0.0)  # index_fill(-inf) passes no gradient
            gl = x.div_(T).to(hidden.dtype)  # d logp / d logits in the logits' dtype
            if grad_hidden is not None:
                grad_hidden[s:e] = gl @ weight  # (c, H)
            if grad_weight is not None:
                grad_weight.addmm_(gl.t().float(), hidden[s:e].float())  # (V, H)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


def token_logprobs_from_hidden(
    hidden: Tensor,
    weight: Tensor,
    ids: Tensor,
    temperature: float = 1.0,
    chunk_size: Optional[int] = None,
    suppress_ids: Optional[Tensor] = None,
) -> Tensor:
    """hidden (..., H), lm_head weight (V, H), ids (...) -> float32 (...); same values as the reference."""
    lead, H = hidden.shape[:-1], hidden.shape[-1]
    h = hidden.reshape(-1, H)  # (N, H)
    idx = ids.reshape(-1).to(device=h.device, dtype=torch.long)
    chunk = int(chunk_size) if chunk_size else default_chunk_size(weight.shape[0], hidden.dtype)
    supp = (
        suppress_ids.reshape(-1).to(device=h.device, dtype=torch.long)
        if suppress_ids is not None and suppress_ids.numel()
        else None
    )
    return _ChunkedHiddenLogprobs.apply(h, weight, idx, float(temperature), chunk, supp).reshape(lead)
