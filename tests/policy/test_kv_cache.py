"""The sampler's preallocated KV cache (gcpo_lite/kv_cache.py) holds what transformers' DynamicCache holds:
the same keys and values after every update, group expansion and compaction, and the same completions and
sampling log-probs from the sampler."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from gcpo_lite.policy import kv_cache
from gcpo_lite.rollout.sampler import sample_completions


@pytest.mark.parametrize("capacity", [16, 6])  # 6: fewer positions than the run needs (the buffer grows)
def test_layer_matches_dynamic_layer(capacity):
    g = torch.Generator().manual_seed(0)
    ours, theirs = kv_cache.PreallocatedLayer(capacity), DynamicLayer()

    def step(rows: int, n: int):
        k, v = torch.randn(rows, 2, n, 8, generator=g), torch.randn(rows, 2, n, 8, generator=g)
        got, want = ours.update(k, v), theirs.update(k, v)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        assert ours.get_seq_length() == theirs.get_seq_length()

    step(3, 5)  # prefill of 3 distinct prompts
    expand = torch.tensor([0, 0, 1, 1, 2, 2])  # each prompt's cache to its 2 rows
    ours.batch_select_indices(expand)
    theirs.batch_select_indices(expand)
    for _ in range(4):
        step(6, 1)
    keep = torch.tensor([0, 2, 5])  # finished rows dropped
    ours.batch_select_indices(keep)
    theirs.batch_select_indices(keep)
    for _ in range(3):
        step(3, 1)
    assert torch.equal(ours.keys, theirs.keys) and torch.equal(ours.values, theirs.values)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sampler_gives_what_it_gave_with_dynamic_cache(embedded_policy, temperature, monkeypatch):
    from transformers import DynamicCache

    model, tok = embedded_policy
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, len(tok), (n,), generator=g).tolist() for n in (4, 9, 2) for _ in range(3)]

    def sample(eos: int):
        kw = dict(max_new_tokens=12, temperature=temperature, top_p=1.0, eos_ids={eos}, pad_id=0)
        return sample_completions(model, prompts, generator=torch.Generator().manual_seed(2), **kw)

    # the id these runs emit most often ends rows at different steps, so finished rows get dropped
    eos = Counter(t for c in sample(10**9).completions for t in c).most_common(1)[0][0]
    ours = sample(eos)
    monkeypatch.setattr(kv_cache, "PreallocatedCache", lambda capacity: DynamicCache())
    theirs = sample(eos)
    assert ours.completions == theirs.completions
    assert len({len(c) for c in ours.completions}) > 1  # rows ended at different steps (compaction ran)
    torch.testing.assert_close(
        torch.tensor(ours.mean_logprobs), torch.tensor(theirs.mean_logprobs), atol=1e-6, rtol=1e-6
    )
