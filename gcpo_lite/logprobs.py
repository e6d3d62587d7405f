"""Per-token log-probs of completions under the policy (or the adapter-free reference).

Runs the decoder once over prompt + completion, keeps the hidden states that predict
completion tokens, and turns only those into log-probs through gcpo_lite.kernels'
`token_logprobs_from_hidden`, so the full (B, L, V) logits are never built here.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from gcpo_lite import kernels
from gcpo_lite.models import decoder_and_head
from gcpo_lite.output_head import logit_multiplier
from gcpo_lite.rollout import RowBatch


def completion_logprobs(
    model,
    rows: RowBatch,
    *,
    temperature: float,
    suppress_ids: Optional[Tensor] = None,
    chunk_size: Optional[int] = None,
) -> Tensor:
    """log pi(completion token | prefix) at `temperature`: (B, T) float32, 0 where completion_mask is 0."""
    decoder, head = decoder_and_head(model)
    # logits = m * hidden @ W.T for some models (output_head.py): the kernels run at temperature / m
    temperature = temperature / logit_multiplier(model.config)
    input_ids = torch.cat([rows.prompt_ids, rows.completion_ids], dim=1)  # (B, P+T)
    attn = torch.cat([rows.prompt_mask, rows.completion_mask], dim=1)  # (B, P+T)
    position = (attn.cumsum(-1) - 1).clamp(min=0)  # (B, P+T)
    hidden = decoder(
        input_ids=input_ids, attention_mask=attn, position_ids=position, use_cache=False
    ).last_hidden_state  # (B, P+T, H)
    P = rows.prompt_ids.shape[1]
    pred = hidden[:, P - 1 : -1, :]  # (B, T, H): position t predicts completion token t
    sel = rows.completion_mask.bool()  # (B, T)
    out = torch.zeros(rows.completion_ids.shape, dtype=torch.float32, device=hidden.device)  # (B, T)
    if sel.any():
        lp = kernels.token_logprobs_from_hidden(
            pred[sel],
            head.weight,
            rows.completion_ids[sel],
            temperature,
            chunk_size=chunk_size,
            suppress_ids=suppress_ids,
        )  # (N,)
        out = out.masked_scatter(sel, lp)
    return out
