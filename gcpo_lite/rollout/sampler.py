"""Sampling completions: one batched, KV-cached decode loop for all groups of a step.

`sample_completions` takes prompt id lists and returns completion id lists plus each
completion's mean sampling log-prob (used only to break ties when choosing which sample the
gold solution replaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor

from gcpo_lite.data.collate import left_pad


@dataclass
class SampleOutput:
    completions: list[list[int]]  # per sequence: sampled ids, ending in an EOS id unless truncated
    mean_logprobs: list[float]  # per sequence: mean log pi(token) at the sampling temperature
    entropy_sums: list[float] = field(
        default_factory=list
    )  # per sequence: summed entropy (nats) of the sampling distributions of its tokens


def _top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p; logits (B, V)."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits, dim=-1)
    drop_sorted = probs.cumsum(-1) - probs >= top_p  # mass before this token already enough
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _unique_prompts(prompts: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[int]]:
    """(distinct prompts in first-seen order, (B,) index of each prompt among them)."""
    index: dict[tuple, int] = {}
    owner = [index.setdefault(tuple(p), len(index)) for p in prompts]
    return [list(p) for p in index], owner


# Finished rows are dropped from the decode batch (cache compacted) once they are this share of it: each
# compaction copies the KV cache, so a few finished rows ride along (fed padding) until it pays.
COMPACT_FRACTION = 0.125


@torch.no_grad()
def sample_completions(
    model,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    eos_ids: set[int],
    pad_id: int,
    suppress_ids: Sequence[int] = (),
    generator: Optional[torch.Generator] = None,
    share_prefill: bool = True,
    drop_finished: bool = True,
) -> SampleOutput:
    """Sample one completion per prompt (repeat a prompt G times for a group) in one batch.

    temperature 0 means greedy. suppress_ids are never sampled (and must be masked in the
    training log-probs too). Stops when every sequence has produced an EOS id.

    share_prefill: each distinct prompt is prefilled once and its KV cache copied to its rows (a group's
    G samples share one prefill; the same keys, values and first-token distribution as G prefills).
    drop_finished: rows that ended are removed from the decode batch and the cache (COMPACT_FRACTION),
    so long-tailed lengths do not keep finished rows decoding padding.
    """
    from gcpo_lite.policy.kv_cache import (  # transformers: only once sampling runs
        PreallocatedCache,
        cache_kwarg,
    )

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # also disables gradient checkpointing, which would refuse the KV cache
    B = len(prompts)
    distinct, owner = (
        _unique_prompts(prompts) if share_prefill else ([list(p) for p in prompts], list(range(B)))
    )
    eos = torch.tensor(sorted(eos_ids), device=device)
    banned = torch.tensor(list(suppress_ids), dtype=torch.long, device=device)
    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)  # (B, T)
    logp_sum = torch.zeros(B, device=device)
    ent_sum = torch.zeros(B, device=device)  # (B,)
    length = torch.zeros(B, dtype=torch.long, device=device)
    try:
        ids, mask = left_pad(distinct, pad_id, device)  # (U, P)
        cache = PreallocatedCache(capacity=ids.shape[1] + max_new_tokens)  # no copy of the cache per step
        cached = {cache_kwarg(model): cache}
        position = (mask.cumsum(-1) - 1).clamp(min=0)  # (U, P) positions skip the left padding
        logits = _last_logits(model, ids, mask, position, cached)  # (U, V): prefill skips the prompt's logits
        if len(distinct) < B:  # copy each distinct prompt's cache, mask and logits to its rows
            expand = torch.tensor(owner, dtype=torch.long, device=device)  # (B,)
            cache.batch_select_indices(expand)
            mask, position, logits = mask[expand], position[expand], logits[expand]
        rows = torch.arange(B, device=device)  # (b,) the original row of each decode-batch row
        done = torch.zeros(B, dtype=torch.bool, device=device)  # (b,)
        for t in range(max_new_tokens):
            nxt, logprobs = _sample(logits, banned, temperature, top_p, generator)  # (b,), (b, V)
            live = ~done
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            out[rows, t] = nxt
            logp_sum[rows] += torch.where(live, logprobs.gather(-1, nxt.unsqueeze(-1)).squeeze(-1), 0.0)
            ent_sum[rows] += torch.where(live, torch.special.entr(logprobs.exp()).sum(-1), 0.0)  # entr(0) = 0
            length[rows] += live.long()
            done = done | torch.isin(nxt, eos)
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=device)], dim=-1)
            position = position[:, -1:] + 1
            if drop_finished and int(done.sum()) >= max(1, COMPACT_FRACTION * len(rows)):
                keep = (~done).nonzero().squeeze(-1)  # (b',)
                cache.batch_select_indices(keep)
                rows, done, nxt, mask, position = (
                    rows[keep],
                    done[keep],
                    nxt[keep],
                    mask[keep],
                    position[keep],
                )
            logits = _last_logits(model, nxt.unsqueeze(-1), mask, position, cached)  # (b, V)
    finally:
        model.train(was_training)
    lengths = length.tolist()
    out_rows = out.tolist()
    return SampleOutput(
        completions=[r[:n] for r, n in zip(out_rows, lengths)],
        mean_logprobs=(logp_sum / length.clamp(min=1)).tolist(),
        entropy_sums=ent_sum.tolist(),
    )


def _last_logits(model, ids: Tensor, mask: Tensor, position: Tensor, cache: dict) -> Tensor:
    """(b, V) fp32 logits of the last position: ids (b, n) after the cached tokens; mask (b, cached + n);
    cache {the forward's name for it: the KV cache}."""
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=position,
        use_cache=True,
        logits_to_keep=1,
        **cache,
    )
    return out.logits[:, -1, :].float()


def _sample(
    logits: Tensor, banned: Tensor, temperature: float, top_p: float, generator
) -> tuple[Tensor, Tensor]:
    """(next ids (b,), log-probs (b, V) of the distribution sampled from); logits (b, V) are changed in place."""
    if banned.numel():
        logits.index_fill_(-1, banned, float("-inf"))
    if temperature > 0:
        scaled = logits / temperature
        logprobs = torch.log_softmax(scaled, dim=-1)  # (b, V) pi at the sampling temperature
        probs = torch.softmax(_top_p_filter(scaled, top_p) if top_p < 1.0 else scaled, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1), logprobs
    return logits.argmax(-1), torch.log_softmax(logits, dim=-1)
