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
    """What a rollout backend returns, one entry per prompt, in order (rollout/backends.py's contract)."""

    completions: list[list[int]]  # per sequence: sampled ids, ending in an EOS id unless truncated
    mean_logprobs: list[float]  # per sequence: mean log pi(token) at the sampling temperature
    # per sequence: summed entropy (nats) of the sampling distributions of its tokens; None: the backend cannot
    # give it (the step's `entropy` is then left out, not reported as 0)
    entropy_sums: Optional[list[float]] = field(default_factory=list)
    # per sequence, per token: log pi(token) at the sampling temperature (before top-p, as mean_logprobs)
    token_logprobs: Optional[list[list[float]]] = None
    finish_reasons: Optional[list[str]] = (
        None  # per sequence: "stop" (an EOS id) or "length" (max_new_tokens)
    )


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


@dataclass(frozen=True)
class _Rules:
    """How each next token is drawn, and which tokens end a row."""

    temperature: float
    top_p: float
    banned: Tensor  # (k,) ids never sampled
    eos: Tensor  # (e,) ids that end a row
    pad_id: int  # fed to and recorded for rows that already ended
    generator: Optional[torch.Generator]

    @classmethod
    def make(cls, device, eos_ids, suppress_ids, temperature, top_p, pad_id, generator) -> "_Rules":
        eos = torch.tensor(sorted(eos_ids), device=device)
        banned = torch.tensor(list(suppress_ids), dtype=torch.long, device=device)
        return cls(temperature, top_p, banned, eos, pad_id, generator)


@dataclass
class _Tallies:
    """Per original row: what SampleOutput reports, filled one decode step at a time."""

    out: Tensor  # (B, T) sampled ids, pad_id after the row ended
    logp: Tensor  # (B, T) log pi(token) of each sampled token, 0 after the row ended
    logp_sum: Tensor  # (B,) summed log pi(token)
    ent_sum: Tensor  # (B,) summed entropy of the sampling distributions
    length: Tensor  # (B,) tokens sampled, its EOS included

    @classmethod
    def empty(cls, B: int, max_new_tokens: int, pad_id: int, device: torch.device) -> "_Tallies":
        return cls(
            out=torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device),
            logp=torch.zeros(B, max_new_tokens, device=device),
            logp_sum=torch.zeros(B, device=device),
            ent_sum=torch.zeros(B, device=device),
            length=torch.zeros(B, dtype=torch.long, device=device),
        )

    def record(self, rows: Tensor, t: int, nxt: Tensor, logprobs: Tensor, live: Tensor) -> None:
        """Token t of the decode-batch rows: nxt (b,) ids, logprobs (b, V), live (b,) not ended before t."""
        self.out[rows, t] = nxt
        token = torch.where(live, logprobs.gather(-1, nxt.unsqueeze(-1)).squeeze(-1), 0.0)  # (b,)
        self.logp[rows, t] = token
        self.logp_sum[rows] += token
        entropy = torch.special.entr(logprobs.exp()).sum(-1)  # (b,) nats; entr(0) = 0
        self.ent_sum[rows] += torch.where(live, entropy, 0.0)
        self.length[rows] += live.long()

    def output(self, eos: Tensor) -> SampleOutput:
        lengths = self.length.tolist()
        out_rows, logp_rows = self.out.tolist(), self.logp.tolist()
        completions = [r[:n] for r, n in zip(out_rows, lengths)]
        ends = set(eos.tolist())
        return SampleOutput(
            completions=completions,
            mean_logprobs=(self.logp_sum / self.length.clamp(min=1)).tolist(),
            entropy_sums=self.ent_sum.tolist(),
            token_logprobs=[r[:n] for r, n in zip(logp_rows, lengths)],
            finish_reasons=["stop" if c and c[-1] in ends else "length" for c in completions],
        )


@dataclass
class _DecodeBatch:
    """The rows still decoding and their KV cache; b rows, fewer than B once finished rows are dropped."""

    cache: object  # PreallocatedCache, b rows
    cached: dict  # {the forward's name for the cache: cache}
    rows: Tensor  # (b,) the original row of each decode-batch row
    done: Tensor  # (b,) bool: produced an EOS id
    mask: Tensor  # (b, cached tokens) attention mask
    position: Tensor  # (b, n) position ids of the last tokens fed

    def advance(self) -> None:
        """Mask and position for the next token, fed after the cached ones."""
        ones = torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask, ones], dim=-1)
        self.position = self.position[:, -1:] + 1

    def compact(self, nxt: Tensor) -> Tensor:
        """Drop the finished rows from the batch and the cache; returns nxt (b,) of the rows kept."""
        keep = (~self.done).nonzero().squeeze(-1)  # (b',)
        self.cache.batch_select_indices(keep)
        self.rows, self.done, self.mask, self.position = (
            self.rows[keep],
            self.done[keep],
            self.mask[keep],
            self.position[keep],
        )
        return nxt[keep]


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
    share_prompts: bool = True,
    drop_finished: bool = True,
) -> SampleOutput:
    """Sample one completion per prompt (repeat a prompt G times for a group) in one batch.

    temperature 0 means greedy. suppress_ids are never sampled (and must be masked in the
    training log-probs too). Stops when every sequence has produced an EOS id.

    share_prompts: each distinct prompt is prefilled once and its KV cache copied to its rows (a group's
    G samples share one prefill; the same keys, values and first-token distribution as G prefills).
    drop_finished: rows that ended are removed from the decode batch and the cache (COMPACT_FRACTION),
    so long-tailed lengths do not keep finished rows decoding padding.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # also disables gradient checkpointing, which would refuse the KV cache
    B = len(prompts)
    distinct, owner = (
        _unique_prompts(prompts) if share_prompts else ([list(p) for p in prompts], list(range(B)))
    )
    rules = _Rules.make(device, eos_ids, suppress_ids, temperature, top_p, pad_id, generator)
    tallies = _Tallies.empty(B, max_new_tokens, pad_id, device)
    try:
        batch, logits = _prefill(model, distinct, owner, pad_id, max_new_tokens)
        _decode(model, batch, logits, tallies, rules, max_new_tokens, drop_finished)
    finally:
        model.train(was_training)
    return tallies.output(rules.eos)


def _prefill(
    model, distinct: list[list[int]], owner: list[int], pad_id: int, max_new_tokens: int
) -> tuple[_DecodeBatch, Tensor]:
    """Prefill the U distinct prompts once, then copy each one's cache, mask and logits to its rows.

    owner (B,): the index among `distinct` of each row's prompt. Returns the (B-row) batch and the
    (B, V) logits of each row's first token."""
    from gcpo_lite.policy.kv_cache import (  # transformers: only once sampling runs
        PreallocatedCache,
        cache_kwarg,
    )

    device = next(model.parameters()).device
    B = len(owner)
    ids, mask = left_pad(distinct, pad_id, device)  # (U, P)
    cache = PreallocatedCache(capacity=ids.shape[1] + max_new_tokens)  # no copy of the cache per step
    cached = {cache_kwarg(model): cache}
    position = (mask.cumsum(-1) - 1).clamp(min=0)  # (U, P) positions skip the left padding
    logits = _last_logits(model, ids, mask, position, cached)  # (U, V): prefill skips the prompt's logits
    if len(distinct) < B:
        expand = torch.tensor(owner, dtype=torch.long, device=device)  # (B,)
        cache.batch_select_indices(expand)
        mask, position, logits = mask[expand], position[expand], logits[expand]
    rows = torch.arange(B, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    return _DecodeBatch(cache, cached, rows, done, mask, position), logits


def _decode(
    model,
    batch: _DecodeBatch,
    logits: Tensor,
    tallies: _Tallies,
    rules: _Rules,
    max_new_tokens: int,
    drop_finished: bool,
) -> None:
    """Sample token after token into tallies until every row has produced an EOS id or max_new_tokens."""
    for t in range(max_new_tokens):
        nxt, logprobs = _sample(logits, rules.banned, rules.temperature, rules.top_p, rules.generator)
        live = ~batch.done
        nxt = torch.where(batch.done, torch.full_like(nxt, rules.pad_id), nxt)
        tallies.record(batch.rows, t, nxt, logprobs, live)
        batch.done = batch.done | torch.isin(nxt, rules.eos)
        if bool(batch.done.all()) or t == max_new_tokens - 1:
            break
        batch.advance()
        if drop_finished and int(batch.done.sum()) >= max(1, COMPACT_FRACTION * len(batch.rows)):
            nxt = batch.compact(nxt)
        logits = _last_logits(model, nxt.unsqueeze(-1), batch.mask, batch.position, batch.cached)  # (b, V)


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
