"""Length-bucketed micro-steps (train.length_buckets): rows ordered by length, run in parts each padded to its
own longest row, give the same loss, clip/KL shares and LoRA gradients as one padded micro-batch."""

from __future__ import annotations

import pytest
import torch

from gcpo_lite.algorithm.update_rows import UpdateRows
from gcpo_lite.config import from_dict
from gcpo_lite.train.trainer import Trainer


@pytest.mark.parametrize("loss_type", ["seq_mean_token_mean", "token_mean"])
def test_buckets_match_one_padded_batch(embedded_model_dir, tmp_path, loss_type):
    cfg = from_dict(
        {
            "model": {"name": str(embedded_model_dir), "gradient_checkpointing": False},
            "data": {"eval_size": 4},
            "gcpo": {"num_generations": 4, "max_completion_length": 12, "loss_type": loss_type, "beta": 0.05},
            "train": {"output_dir": str(tmp_path / "run"), "batch_size": 16, "device": "cpu"},
        }
    )
    torch.manual_seed(0)
    tr = Trainer(cfg, progress=False)
    for name, p in tr.model.named_parameters():  # nonzero LoRA B: the adapters carry gradient both ways
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    batch = tr.rollout(tr.next_examples(4))
    rows, _ = tr._rows_to_train(batch)
    lengths = [len(batch.completions[i]) for i in rows]
    assert lengths == sorted(lengths) and len(set(lengths)) > 1, "needs rows of different lengths"
    work = UpdateRows(batch, rows, loss_type)
    ref = tr._per_row_logps(work, reference=True)
    params = [p for p in tr.model.parameters() if p.requires_grad]
    results = {}
    for buckets in (1, 3, len(rows)):
        tr._length_buckets = lambda n=buckets: n
        tr.model.train()
        for p in params:
            p.grad = None
        sums = tr._micro_step(work, None, ref, 0, len(rows))
        results[buckets] = (torch.tensor(sums), [p.grad.clone() for p in params])
    base_sums, base_grads = results[1]
    for buckets, (sums, grads) in results.items():
        torch.testing.assert_close(sums, base_sums, atol=1e-6, rtol=1e-5, msg=f"buckets={buckets}")
        for g, g0 in zip(grads, base_grads):
            torch.testing.assert_close(g, g0, atol=1e-6, rtol=1e-4, msg=f"buckets={buckets}")
    assert any(g.abs().sum() > 0 for g in base_grads)


def test_length_buckets_must_be_positive():
    from gcpo_lite.config import ConfigError

    with pytest.raises(ConfigError, match="length_buckets"):
        from_dict({"train": {"length_buckets": 0}})


def test_bucket_bounds_pad_the_least_possible():
    """The dynamic program's cuts against every way to cut random sorted lengths (brute force)."""
    import itertools
    import random

    from gcpo_lite.policy.length_buckets import bucket_bounds, padded_tokens

    rng = random.Random(0)
    for _ in range(300):
        n, parts = rng.randint(1, 9), rng.randint(1, 5)
        lengths = sorted(rng.randint(1, 20) for _ in range(n))
        bounds = bucket_bounds(lengths, parts)
        k = min(parts, n)
        assert bounds[0] == 0 and bounds[-1] == n and len(bounds) == k + 1
        assert all(a < b for a, b in zip(bounds, bounds[1:])), "every part has a row"
        least = min(padded_tokens(lengths, [0, *c, n]) for c in itertools.combinations(range(1, n), k - 1))
        assert padded_tokens(lengths, bounds) == least, (lengths, parts, bounds)


def test_bucket_bounds_on_long_tailed_lengths():
    """Gold rows of 3-4 tokens, a spread, a block at the limit: 4 parts of equal row counts pad 1888 tokens,
    the least-padding cuts 1644 (measured on a rollout of the embedded task)."""
    from gcpo_lite.policy.length_buckets import bucket_bounds, padded_tokens

    lengths = (
        [2] + [3] * 9 + [4] * 8 + [5, 5, 8, 8, 9, 10, 10, 10, 12, 12, 12, 16, 16, 18, 18, 18, 21, 22, 23, 25]
    )
    lengths += [27, 27, 28, 31, 37, 38, 40, 41, 45] + [48] * 17
    assert padded_tokens(lengths, [0, 16, 32, 48, 64]) == 1888
    assert bucket_bounds(lengths, 4) == [0, 18, 29, 41, 64]
    assert padded_tokens(lengths, bucket_bounds(lengths, 4)) == 1644
