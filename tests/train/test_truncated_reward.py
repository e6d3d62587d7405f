"""reward.truncated: how a sample that hit max_completion_length without its end token is scored and trained
(issue 9, item 5). The sampler is replaced by fixed completions; max_completion_length is 6."""

import pytest
import torch

from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.reward_model import RewardModel

G = 4
EX = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]


@pytest.fixture(scope="module")
def trainer(small_trainer):
    return small_trainer(gold_injection="never")


def rollout(tr, monkeypatch, mode, samples):
    """samples: (text, ends) per row; ends=False pads the text to 6 tokens with no end token (truncated)."""
    tok, eos = tr.tokenizer, tr.tokenizer.eos_token_id
    ids = []
    for text, ends in samples:
        t = tok(text, add_special_tokens=False).input_ids
        ids.append(t + [eos] if ends else (t * 6)[:6])
    monkeypatch.setattr(tr, "generate", lambda prompts, temperature, max_new_tokens: (ids, [-1.0] * len(ids)))
    # a verifier that reads only the start, so a truncated sample can still hold a right answer
    monkeypatch.setattr(
        tr, "rewards", RewardModel.from_verifier(lambda text, ex: float(text.startswith(ex.answer)))
    )
    monkeypatch.setattr(tr.cfg.reward, "truncated", mode)
    return tr.rollout(EX)


SAMPLES = [("42", True), ("42", False), ("41", True), ("40", False)] + [("20", True), ("20", False)] * 2


def test_zero_scores_truncated_samples_zero_and_wrong(trainer, monkeypatch):
    b = rollout(trainer, monkeypatch, "zero", SAMPLES)
    assert b.rewards.tolist() == [1, 0, 0, 0, 1, 0, 1, 0]
    m = b.metrics
    assert m["truncated_frac"] == 0.5 and m["truncated_zeroed"] == 4 and m["truncated_masked"] == 0
    assert m["accuracy"] == m["reward_mean"] == pytest.approx(3 / 8)
    assert not b.masked.any()


def test_score_scores_the_text(trainer, monkeypatch):
    b = rollout(trainer, monkeypatch, "score", SAMPLES)
    assert b.rewards.tolist() == [1, 1, 0, 0, 1, 1, 1, 1]
    assert b.metrics["truncated_zeroed"] == 0 and b.metrics["accuracy"] == b.metrics["reward_mean"]


def test_mask_keeps_the_score_but_leaves_the_row_out_of_the_loss(trainer, monkeypatch):
    b = rollout(trainer, monkeypatch, "mask", SAMPLES)
    assert b.rewards.tolist() == [1, 1, 0, 0, 1, 1, 1, 1]
    assert b.masked.tolist() == [False, True] * 4
    assert b.metrics["truncated_masked"] == 4 and b.metrics["truncated_zeroed"] == 0
    rows, skipped = trainer._rows_to_train(b)
    assert rows == [0, 2] and skipped == 1


def test_masked_rows_do_not_move_the_gradient(trainer, monkeypatch):
    """The step's gradient with truncated rows masked equals the gradient of the batch without those rows."""
    b = rollout(trainer, monkeypatch, "mask", SAMPLES)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]

    def grads(batch):
        seen = []
        monkeypatch.setattr(trainer.optimizer, "step", lambda: seen.append([p.grad.clone() for p in params]))
        trainer.update(batch)
        for p, s in zip(params, start):
            p.data.copy_(s)
        return seen[0]

    masked = grads(b)
    # the masked rows' completions replaced by garbage: nothing may change
    b.completions[1] = b.completions[1][:1]
    b.completions[3] = b.completions[3][:2]
    for x, y in zip(masked, grads(b)):
        torch.testing.assert_close(x, y)
    assert any(float(g.abs().sum()) > 0 for g in masked)
