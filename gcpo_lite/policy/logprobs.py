"""Per-token log-probs of completions under the policy (or the adapter-free reference), and the GCPO loss
straight from the decoder's hidden states.

Runs the decoder once over prompt + completion and keeps the hidden states that predict completion tokens;
only those go through the lm_head, chunk by chunk, in gcpo_lite.kernels, so the full (B, L, V) logits are
never built here.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from gcpo_lite import kernels
from gcpo_lite.data.collate import RowBatch
from gcpo_lite.models.loading import decoder_and_head
from gcpo_lite.models.output_head import logit_multiplier
from gcpo_lite.policy.prompt_sharing import PromptStates
from gcpo_lite.policy.prompt_sharing import completion_hidden as shared_completion_hidden


def completion_hidden(
    model, rows: RowBatch, temperature: float, prompts: Optional[PromptStates] = None
) -> tuple[Tensor, Tensor, float]:
    """(hidden (B, T, H) whose position t predicts completion token t, lm_head weight (V, H), the temperature
    the kernels must use on hidden @ W.T to give the model's own logits / `temperature`).

    prompts: the rows' prompts already run once per distinct prompt (prompt_sharing.py); only the
    completions run here, on top of their keys and values."""
    decoder, head = decoder_and_head(model)
    # logits = m * hidden @ W.T for some models (output_head.py): the kernels run at temperature / m
    temp = temperature / logit_multiplier(model.config)
    if prompts is not None:
        return (
            shared_completion_hidden(decoder, prompts, rows.completion_ids, rows.completion_mask),
            head.weight,
            temp,
        )
    input_ids = torch.cat([rows.prompt_ids, rows.completion_ids], dim=1)  # (B, P+T)
    attn = torch.cat([rows.prompt_mask, rows.completion_mask], dim=1)  # (B, P+T)
    position = (attn.cumsum(-1) - 1).clamp(min=0)  # (B, P+T)
    hidden = decoder(
        input_ids=input_ids, attention_mask=attn, position_ids=position, use_cache=False
    ).last_hidden_state  # (B, P+T, H)
    P = rows.prompt_ids.shape[1]
    return hidden[:, P - 1 : -1, :], head.weight, temp


def completion_logprobs(
    model,
    rows: RowBatch,
    *,
    temperature: float,
    suppress_ids: Optional[Tensor] = None,
    chunk_size: Optional[int] = None,
    prompts: Optional[PromptStates] = None,
) -> Tensor:
    """log pi(completion token | prefix) at `temperature`: (B, T) float32, 0 where completion_mask is 0."""
    pred, weight, temp = completion_hidden(model, rows, temperature, prompts)
    sel = rows.completion_mask.bool()  # (B, T)
    out = torch.zeros(rows.completion_ids.shape, dtype=torch.float32, device=pred.device)  # (B, T)
    if sel.any():
        lp = kernels.token_logprobs_from_hidden(
            pred[sel],
            weight,
            rows.completion_ids[sel],
            temp,
            chunk_size=chunk_size,
            suppress_ids=suppress_ids,
        )  # (N,)
        out = out.masked_scatter(sel, lp)
    return out


def completion_loss(
    model,
    rows: RowBatch,
    old_per_token_logps: Optional[Tensor],
    advantages: Tensor,
    *,
    temperature: float,
    suppress_ids: Optional[Tensor] = None,
    chunk_size: Optional[int] = None,
    prompts: Optional[PromptStates] = None,
    **loss_kwargs,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The GCPO loss of `rows` through the fused op kernels.gcpo_loss_from_hidden (old = None: on-policy)."""
    pred, weight, temp = completion_hidden(model, rows, temperature, prompts)
    return kernels.gcpo_loss_from_hidden(
        pred,
        weight,
        rows.completion_ids,
        old_per_token_logps,
        advantages,
        rows.completion_mask,
        temperature=temp,
        chunk_size=chunk_size,
        suppress_ids=suppress_ids,
        **loss_kwargs,
    )
