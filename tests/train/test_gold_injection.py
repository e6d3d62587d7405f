"""Gold injection inside Trainer.rollout, with the sampler replaced by fixed completions."""

import pytest

from gcpo_lite.config import from_dict
from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.reward_model import RewardModel
from gcpo_lite.train.trainer import Trainer

G = 4


@pytest.fixture(scope="module")
def trainer(embedded_model_dir, tmp_path_factory):
    cfg = from_dict(
        {
            "model": {"quantize": False, "gradient_checkpointing": False},
            "gcpo": {"num_generations": G, "max_completion_length": 6},
            "train": {
                "batch_size": 2 * G,
                "output_dir": str(tmp_path_factory.mktemp("run")),
                "learning_rate": 1e-3,
            },
            "data": {"eval_size": 4},
        }
    )
    return Trainer(cfg, progress=False)


def fixed_sampler(tr, texts, mean_logprobs):
    ids = [tr.tokenizer(t, add_special_tokens=False).input_ids + [tr.tokenizer.eos_token_id] for t in texts]
    return lambda prompts, temperature, max_new_tokens: (ids, list(mean_logprobs))


def run(tr, monkeypatch, examples, texts, mean_lp=None, mode="all_wrong"):
    monkeypatch.setattr(tr, "generate", fixed_sampler(tr, texts, mean_lp or [-1.0] * len(texts)))
    monkeypatch.setattr(tr.cfg.gcpo, "gold_injection", mode)
    tr._gold_cache.clear()
    return tr.rollout(examples)


def test_all_wrong_group_gets_gold_in_worst_slot(trainer, monkeypatch):
    ex = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]
    texts = ["41", "40", "43", "7", "20", "20", "3", "20"]
    # group 1 all wrong: ties on reward, slot 2 has the lowest mean log-prob
    batch = run(trainer, monkeypatch, ex, texts, [-1, -2, -5, -1.5, -1, -1, -1, -1])
    assert batch.is_gold.tolist() == [False, False, True, False, False, False, False, False]
    gold_text = trainer.tokenizer.decode(batch.completions[2], skip_special_tokens=True)
    assert gold_text == "42"
    assert batch.completions[2][-1] in trainer.eos_ids
    assert batch.rewards.tolist() == [0, 0, 1, 0, 1, 1, 0, 1]
    assert batch.metrics["gold_injected_frac"] == 0.5
    assert batch.metrics["accuracy"] == 3 / 8  # sampled completions only: the gold row is not counted
    assert batch.metrics["all_wrong_frac"] == 0.5
    assert batch.advantages[:4].abs().sum() > 0  # the group now has a contrast


def test_mixed_and_all_correct_groups_are_left_alone(trainer, monkeypatch):
    ex = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]
    batch = run(trainer, monkeypatch, ex, ["42", "1", "2", "3", "20", "20", "20", "20"])
    assert not batch.is_gold.any()
    assert batch.metrics["gold_injected_frac"] == 0.0
    assert batch.advantages[4:].abs().sum() == 0  # all-correct group: no contrast, zero advantage
    assert batch.metrics["all_correct_frac"] == 0.5


def test_never_is_plain_grpo_and_always_injects_everywhere(trainer, monkeypatch):
    ex = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]
    texts = ["1", "2", "3", "4", "20", "20", "20", "20"]
    assert not run(trainer, monkeypatch, ex, texts, mode="never").is_gold.any()
    assert run(trainer, monkeypatch, ex, texts, mode="always").is_gold.sum() == 2


def test_gold_that_fails_its_verifier_is_not_injected(trainer, monkeypatch):
    ex = [Example("12+30=", "42", "the answer is 41"), Example("10+10=", "20", None)]
    batch = run(trainer, monkeypatch, ex, ["1", "2", "3", "4", "5", "6", "7", "8"])
    assert not batch.is_gold.any()
    assert batch.metrics["gold_failed_verification"] == 1
    assert batch.metrics["gold_missing"] == 1


def test_overlong_gold_truncated_or_skipped(trainer, monkeypatch):
    long_gold = "1" * 20 + " so 42"
    ex = [Example("12+30=", "42", long_gold), Example("10+10=", "20", "20")]
    texts = ["1", "2", "3", "4", "20", "1", "1", "1"]
    batch = run(trainer, monkeypatch, ex, texts)  # the default: skip (a cut gold has no answer, no end token)
    assert batch.metrics["gold_skipped_overflow"] == 1 and not batch.is_gold.any()
    monkeypatch.setattr(trainer.cfg.gcpo, "gold_overflow", "truncate")
    batch = run(trainer, monkeypatch, ex, texts)
    assert batch.metrics["gold_truncated"] == 1 and batch.is_gold.sum() == 1


def test_gold_holding_a_suppressed_token_is_not_injected(trainer, monkeypatch):
    """Its log-prob would be -inf and the loss NaN (issue 9, item 3)."""
    ex = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]
    texts = ["1", "2", "3", "4", "20", "1", "1", "1"]
    banned = trainer.tokenizer("42", add_special_tokens=False).input_ids[:1]
    monkeypatch.setattr(trainer, "suppress", banned)
    batch = run(trainer, monkeypatch, ex, texts)
    assert batch.metrics["gold_suppressed_token"] == 1 and not batch.is_gold.any()


@pytest.mark.parametrize("fused", [True, False])
def test_non_finite_gradient_never_reaches_the_adapter(trainer, monkeypatch, fused):
    import torch

    from gcpo_lite import kernels

    ex = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]
    batch = run(trainer, monkeypatch, ex, ["1", "2", "3", "4", "20", "1", "1", "1"])
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    real = kernels.token_logprobs_from_hidden

    def poisoned(*a, **kw):
        lp = real(*a, **kw)
        return lp * float("nan") if torch.is_grad_enabled() else lp

    monkeypatch.setattr(kernels, "token_logprobs_from_hidden", poisoned)
    monkeypatch.setattr(trainer.cfg.train, "fused_loss", fused)
    out = trainer.update(batch)
    assert out["nonfinite_skipped"] == 1
    after = {n: p.detach() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_reward_function_that_raises_scores_zero(trainer, monkeypatch):
    calls = {"n": 0}

    def broken(text, example):
        calls["n"] += 1
        if text == "99":  # the embedded tokenizer only spells digits and a few letters
            raise RuntimeError("verifier crashed")
        return 1.0 if text == example.answer else 0.0

    monkeypatch.setattr(trainer, "rewards", RewardModel.from_verifier(broken))
    ex = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]
    batch = run(trainer, monkeypatch, ex, ["99", "42", "99", "1", "20", "99", "99", "99"])
    assert batch.rewards.tolist() == [0, 1, 0, 0, 1, 0, 0, 0]
    assert trainer.rewards.errors >= 5 and calls["n"] >= 8


def test_policy_metrics_exclude_gold_rows(trainer, monkeypatch):
    """At an all-wrong step the policy is at 0% even though half the trained rows are gold (issue 9, item 10)."""
    ex = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]
    texts = ["41", "40", "43", "7", "21", "22", "3", "19"]
    batch = run(trainer, monkeypatch, ex, texts)
    m = batch.metrics
    assert batch.is_gold.sum() == 2
    assert m["accuracy"] == 0.0 and m["reward_mean"] == 0.0 and m["reward_std"] == 0.0
    assert m["reward_mean_with_gold"] == pytest.approx(2 / 8)
    tok = trainer.tokenizer
    assert m["sampled_tokens"] == sum(len(tok(t, add_special_tokens=False).input_ids) + 1 for t in texts)
    assert m["truncated_frac"] == 0.0


@pytest.mark.parametrize("loss_type", ["seq_mean_token_mean", "token_mean", "dr_grpo"])
def test_skipping_zero_advantage_groups_does_not_rescale_the_step(trainer, monkeypatch, loss_type):
    """The LoRA gradient is the same whether zero-advantage groups are skipped or forwarded (issue 9, item 1)."""
    import torch

    ex = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]
    texts = ["42", "40", "42", "7", "20", "20", "20", "20"]  # group 1 all correct: zero advantages
    monkeypatch.setattr(trainer.cfg.gcpo, "loss_type", loss_type)
    batch = run(trainer, monkeypatch, ex, texts)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]

    def grads_of_one_update():
        seen = []
        monkeypatch.setattr(trainer.optimizer, "step", lambda: seen.append([p.grad.clone() for p in params]))
        out = trainer.update(batch)
        for p, s in zip(params, start):
            p.data.copy_(s)
        return out, seen[0]

    skipped_out, skipped = grads_of_one_update()
    everything = list(range(len(batch.prompts)))
    monkeypatch.setattr(trainer, "_rows_to_train", lambda b: (everything, 0))
    forwarded_out, forwarded = grads_of_one_update()
    assert skipped_out["skipped_groups"] == 1 and skipped_out["trained_rows"] == 4
    for a, b in zip(skipped, forwarded):  # the forwarded run sums more rows, in another order: fp32 rounding
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
