"""Sampling completions: one batched, KV-cached decode loop for all groups of a step.

`sample_completions` takes prompt id lists and returns completion id lists plus each
completion's mean sampling log-prob (used only to break ties when choosing which sample the
gold solution replaces). `pad_batch` turns id lists into the padded tensors of a training row
batch: prompts left-padded, completions right-padded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor


@dataclass
class SampleOutput:
    completions: list[list[int]]  # per sequence: sampled ids, ending in an EOS id unless truncated
    mean_logprobs: list[float]  # per sequence: mean log pi(token) at the sampling temperature
    entropy_sums: list[float] = field(
        default_factory=list
    )  # per sequence: summed entropy (nats) of the sampling distributions of its tokens


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[Tensor, Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)  # (B, P), (B, P)


def _right_pad(seqs: Sequence[Sequence[int]], pad_id: int, width: int, device) -> tuple[Tensor, Tensor]:
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        s = list(s)[:width]
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)  # (B, T), (B, T)


def _top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p; logits (B, V)."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
    drop_sorted = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # mass before this token already enough
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


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
) -> SampleOutput:
    """Sample one completion per prompt (repeat a prompt G times for a group) in one batch.

    temperature 0 means greedy. suppress_ids are never sampled (and must be masked in the
    training log-probs too). Stops when every sequence has produced an EOS id.
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # also disables gradient checkpointing, which would refuse the KV cache
    ids, mask = _left_pad(prompts, pad_id, device)  # (B, P)
    B = ids.shape[0]
    eos = torch.tensor(sorted(eos_ids), device=device)
    banned = torch.tensor(list(suppress_ids), dtype=torch.long, device=device)
    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)  # (B, T)
    logp_sum = torch.zeros(B, device=device)
    ent_sum = torch.zeros(B, device=device)  # (B,)
    length = torch.zeros(B, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    cache = DynamicCache()
    position = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, P) positions skip the left padding
    step_ids = ids
    try:
        for t in range(max_new_tokens):
            logits = (
                model(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=position,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                .logits[:, -1, :]
                .float()
            )  # (B, V): prefill skips the prompt's logits
            if banned.numel():
                logits.index_fill_(-1, banned, float("-inf"))
            if temperature > 0:
                scaled = logits / temperature
                logprobs = torch.log_softmax(scaled, dim=-1)  # (B, V) pi at the sampling temperature
                probs = torch.softmax(_top_p_filter(scaled, top_p) if top_p < 1.0 else scaled, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)
            else:
                logprobs = torch.log_softmax(logits, dim=-1)
                nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            out[:, t] = nxt
            live = ~done
            logp_sum += torch.where(live, logprobs.gather(-1, nxt.unsqueeze(-1)).squeeze(-1), 0.0)
            ent_sum += torch.where(live, torch.special.entr(logprobs.exp()).sum(-1), 0.0)  # entr(0) = 0
            length += live.long()
            done = done | torch.isin(nxt, eos)
            if bool(done.all()):
                break
            step_ids = nxt.unsqueeze(-1)  # (B, 1)
            mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=device)], dim=-1)
            position = position[:, -1:] + 1
    finally:
        model.train(was_training)
    lengths = length.tolist()
    rows = out.tolist()
    return SampleOutput(
        completions=[r[:n] for r, n in zip(rows, lengths)],
        mean_logprobs=(logp_sum / length.clamp(min=1)).tolist(),
        entropy_sums=ent_sum.tolist(),
    )


@dataclass
class RowBatch:
    """Padded training rows: prompt (left-padded) followed by completion (right-padded)."""

    prompt_ids: Tensor  # (B, P)
    prompt_mask: Tensor  # (B, P)
    completion_ids: Tensor  # (B, T)
    completion_mask: Tensor  # (B, T) 1 on completion tokens, EOS included

    def __len__(self) -> int:
        return self.prompt_ids.shape[0]


def pad_batch(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int, device
) -> RowBatch:
    width = max(1, max(len(c) for c in completions))
    p_ids, p_mask = _left_pad(prompts, pad_id, device)
    c_ids, c_mask = _right_pad(completions, pad_id, width, device)
    return RowBatch(p_ids, p_mask, c_ids, c_mask)
