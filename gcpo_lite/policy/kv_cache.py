"""The sampler's KV cache: each layer's keys and values in one buffer sized for the whole rollout.

transformers' DynamicCache concatenates a layer's cached keys and values with the new ones at every decode
step, which copies the whole cache each time: quadratic in the completion length. Here each layer
allocates (rows, kv_heads, capacity, head_dim) once, with capacity = prompt width + max_new_tokens. Each
step writes the new keys and values into the next slots, and attention gets a view of the filled part.
Attention sees the same values. The memory is the full KV cache from the first step, which is what the
memory plan counts for the last decode step (memory/model.py, kv_cache).

Only what the sampler uses is supported: update, get_seq_length, batch_select_indices (the group
expansion after a shared prefill, and the compaction that drops finished rows).
"""

from __future__ import annotations

import inspect
from functools import partial

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values live in a (rows, heads, capacity, head_dim) buffer."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._k = self._v = None  # (rows, heads, capacity, head_dim)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Write (rows, heads, n, head_dim) new keys and values after the cached ones; return views of all."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self._k is None or end > self._k.shape[-2]:  # first call, or more than planned: room for it
            self._reserve(key_states, value_states, max(self.capacity, end))
        self._k[..., self.length : end, :] = key_states
        self._v[..., self.length : end, :] = value_states
        self.length = end
        self.keys, self.values = self._k[..., :end, :], self._v[..., :end, :]
        return self.keys, self.values

    def _reserve(self, key_states: torch.Tensor, value_states: torch.Tensor, capacity: int) -> None:
        k = key_states.new_empty((*key_states.shape[:2], capacity, key_states.shape[-1]))
        v = value_states.new_empty((*value_states.shape[:2], capacity, value_states.shape[-1]))
        if self.length:
            k[..., : self.length, :] = self._k[..., : self.length, :]
            v[..., : self.length, :] = self._v[..., : self.length, :]
        self._k, self._v = k, v

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep (and repeat) the rows `indices` names, in that order."""
        if self._k is not None:
            self._k, self._v = self._k[indices], self._v[indices]
            self.keys, self.values = self._k[..., : self.length, :], self._v[..., : self.length, :]

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("the sampler's cache only grows; use transformers' DynamicCache to crop")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("expand the sampler's cache with batch_select_indices")


class PreallocatedCache(DynamicCache):
    """DynamicCache of PreallocatedLayers of `capacity` positions each (made on first use per layer)."""

    def __init__(self, capacity: int):
        Cache.__init__(self, layer_class_to_replicate=partial(PreallocatedLayer, capacity))


def cache_kwarg(module) -> str:
    """The name `module.forward` takes the KV cache by: `cache` from transformers 5.x (where
    `past_key_values` still works, with a FutureWarning each call), `past_key_values` before."""
    base = module.get_base_model() if hasattr(module, "get_base_model") else module  # peft passes it through
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
