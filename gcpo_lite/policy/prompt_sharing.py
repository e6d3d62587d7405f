"""The training forward with each distinct prompt run once (train.share_prompts).

A group's G rows share one prompt, and the plain forward runs prompt + completion for every row, so each
prompt goes through the decoder G times. Here the micro-batch's distinct prompts run once; their keys and
values, layer by layer, are indexed to each row, and the completions run on top of them as on a KV cache.
The gradients that reach a prompt's keys and values from all of its rows add up and go back through that one
prompt forward, so loss and gradients are the plain forward's to fp32 rounding (tests/policy/test_prompt_sharing.py).

The rows of one micro-batch run in several length buckets (trainer._micro_step), each with its own forward
and backward. The buckets read detached copies of the prompt states; each bucket's backward leaves its
share of their gradient on those copies, and `SharedPrompts.backward` sends the sum through the prompt
forward once, after the last bucket.

Shapes: U distinct prompts left-padded to width P, b rows, T completion tokens, H hidden size; per layer,
keys and values are (U, kv_heads, P, head_dim).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from gcpo_lite.data.collate import left_pad
from gcpo_lite.policy.kv_cache import cache_kwarg


class _RecordingLayer(DynamicLayer):
    """Keeps the keys and values of the one forward that fills it. A gradient-checkpoint replay of that
    forward overwrites them with equal values, and the tensors already taken are unchanged."""

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.keys, self.values = key_states, value_states
        return key_states, value_states


class _PrefixLayer(DynamicLayer):
    """Read-only: returns the rows' prompt keys and values followed by the new ones and stores nothing, so a
    gradient-checkpoint replay reads exactly what the forward read."""

    def __init__(self, keys: Tensor, values: Tensor):
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values  # (b, kv_heads, P, head_dim)

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs):
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


class _Recorder(DynamicCache):
    def __init__(self):
        Cache.__init__(self, layer_class_to_replicate=_RecordingLayer)


class _Prefix(DynamicCache):
    def __init__(self, keys: list[Tensor], values: list[Tensor]):
        Cache.__init__(self, layers=[_PrefixLayer(k, v) for k, v in zip(keys, values)])


@dataclass
class PromptStates:
    """What the completions need from the prompts' forward."""

    keys: list  # per layer: (U, kv_heads, P, head_dim)
    values: list  # per layer: (U, kv_heads, P, head_dim)
    last: Tensor  # (U, H) the final hidden state of each prompt's last token: it predicts completion token 0
    mask: Tensor  # (U, P) 1 on prompt tokens (left padding is 0)

    def tensors(self) -> list[Tensor]:
        return [*self.keys, *self.values, self.last]

    def detached(self) -> "PromptStates":
        """Leaf copies that collect the gradients of every row that reads them."""

        def leaf(t: Tensor) -> Tensor:
            return t.detach().requires_grad_(t.requires_grad)

        return PromptStates(
            [leaf(k) for k in self.keys], [leaf(v) for v in self.values], leaf(self.last), self.mask
        )

    def select(self, owner: Tensor) -> "PromptStates":
        """The states of each row's prompt: owner (b,) indexes the U prompts."""
        return PromptStates([k[owner] for k in self.keys], [v[owner] for v in self.values], self.last[owner],
                            self.mask[owner])  # fmt: skip


class NotRouted(RuntimeError):
    """The decoder did not pass its keys and values through the cache it was given (an older transformers,
    or a model with its own attention code): sharing cannot work there."""


@contextlib.contextmanager
def _cache_under_checkpointing(decoder):
    """Let gradient-checkpointed decoder layers keep the cache argument. transformers drops it for layers
    that write a cache, since a replay would write it twice; these two caches are safe to replay (the
    recorder overwrites with equal values, the prefix is read-only)."""
    layers = [m for m in decoder.modules() if hasattr(type(m), "_can_checkpoint_with_cache")]
    for m in layers:
        m._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for m in layers:
            del m._can_checkpoint_with_cache  # the class attribute (False) shows through again


def _decode(decoder, ids: Tensor, attn: Tensor, position: Tensor, cache) -> Tensor:
    with _cache_under_checkpointing(decoder):
        out = decoder(input_ids=ids, attention_mask=attn, position_ids=position, use_cache=True,
                      **{cache_kwarg(decoder): cache})  # fmt: skip
    return out.last_hidden_state


def run_prompts(decoder, ids: Tensor, mask: Tensor) -> PromptStates:
    """The decoder over U left-padded prompts ids, mask (U, P), keeping every layer's keys and values."""
    recorder = _Recorder()
    position = (mask.cumsum(-1) - 1).clamp(min=0)  # (U, P) the plain forward's positions
    hidden = _decode(decoder, ids, mask, position, recorder)  # (U, P, H)
    n_layers = decoder.config.num_hidden_layers
    if len(recorder.layers) != n_layers or any(not layer.is_initialized for layer in recorder.layers):
        raise NotRouted(f"{type(decoder).__name__} did not fill the cache it was given")
    keys = [layer.keys for layer in recorder.layers]
    values = [layer.values for layer in recorder.layers]
    return PromptStates(keys, values, hidden[:, -1, :], mask)


def completion_hidden(
    decoder, prompts: PromptStates, completion_ids: Tensor, completion_mask: Tensor
) -> Tensor:
    """(b, T, H) hidden states whose position t predicts completion token t, for rows whose prompt states
    are `prompts` (already one per row) and completions completion_ids, completion_mask (b, T)."""
    P = prompts.mask.shape[1]
    attn = torch.cat([prompts.mask, completion_mask], dim=1)  # (b, P + T)
    position = (attn.cumsum(-1) - 1).clamp(min=0)[:, P:]  # (b, T) what the plain forward gives them
    hidden = _decode(
        decoder, completion_ids, attn, position, _Prefix(prompts.keys, prompts.values)
    )  # (b, T, H)
    return torch.cat([prompts.last.unsqueeze(1), hidden[:, :-1, :]], dim=1)


class SharedPrompts:
    """One micro-batch's distinct prompts, run once with gradient; rows read them through `for_rows`, and
    `backward` (after every row's backward) sends what the rows' gradients left on them through the prompts'
    forward."""

    def __init__(self, decoder, prompts: Sequence[Sequence[int]], pad_id: int, device):
        self.index: dict[tuple, int] = {}
        for p in prompts:
            self.index.setdefault(tuple(p), len(self.index))
        ids, mask = left_pad([list(p) for p in self.index], pad_id, device)  # (U, P)
        self._graph = run_prompts(decoder, ids, mask)  # holds the prompt forward's graph
        self.states = self._graph.detached()

    def for_rows(self, prompts: Sequence[Sequence[int]]) -> PromptStates:
        owner = torch.tensor([self.index[tuple(p)] for p in prompts], device=self.states.mask.device)
        return self.states.select(owner)

    def backward(self) -> None:
        pairs = [(t, leaf.grad) for t, leaf in zip(self._graph.tensors(), self.states.tensors())
                 if leaf.grad is not None]  # fmt: skip
        if pairs:
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
        self._graph = self.states = None  # the graph is spent; nothing may read it again


def distinct_count(prompts: Sequence[Sequence[int]]) -> int:
    return len({tuple(p) for p in prompts})
