"""What an update reports over several optimizer iterations (issue 24.6): grad_norm is the mean of the applied
updates' norms (before clipping) and grad_norm_max their largest; an update skipped for a non-finite gradient
is not averaged into loss."""

import math

import pytest
import torch

from gcpo_lite.algorithm.advantages import group_advantages
from gcpo_lite.algorithm.batches import StepBatch
from gcpo_lite.data.tasks import Example

G = 4


@pytest.fixture(scope="module")
def trainer(small_trainer):
    return small_trainer(num_iterations=2)


def step_batch(tr) -> StepBatch:
    examples = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]
    gen = torch.Generator().manual_seed(3)
    completions = [torch.randint(3, 40, (n,), generator=gen).tolist() for n in (2, 3, 4, 5, 2, 3, 4, 5)]
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    return StepBatch(
        examples=examples,
        prompts=[tr._prompt(ex) for ex in examples for _ in range(G)],
        completions=completions,
        rewards=rewards,
        advantages=group_advantages(rewards, G, "group"),
        is_gold=torch.zeros(8, dtype=torch.bool),
    )


def test_grad_norm_is_the_mean_and_the_max_is_reported(trainer):
    norms = []
    real = torch.nn.utils.clip_grad_norm_

    def record(params, max_norm):
        norms.append(float(real(params, max_norm)))
        return torch.tensor(norms[-1])

    torch.nn.utils.clip_grad_norm_, saved = record, real
    try:
        out = trainer.update(step_batch(trainer))
    finally:
        torch.nn.utils.clip_grad_norm_ = saved
    assert len(norms) == 2 and norms[0] != norms[1]
    assert out["grad_norm"] == pytest.approx(sum(norms) / 2) and out["grad_norm_max"] == max(norms)


def test_a_skipped_iteration_is_not_averaged_into_the_loss(trainer, monkeypatch):
    real, calls = trainer._micro_step, []

    def poisoned(work, old, ref, s, e):  # the first iteration's gradient and loss are NaN
        out = real(work, old, ref, s, e)
        calls.append(1)
        if len(calls) == 1:
            for p in trainer.model.parameters():
                if p.grad is not None:
                    p.grad.fill_(math.nan)
            return (math.nan, 0.0, 0.0)
        return out

    monkeypatch.setattr(trainer, "_micro_step", poisoned)
    out = trainer.update(step_batch(trainer))
    assert out["nonfinite_skipped"] == 1 and math.isfinite(out["loss"]) and math.isfinite(out["grad_norm"])


def test_later_iterations_compare_against_the_first_iterations_own_log_probs(trainer, monkeypatch):
    """Issue 24.7: with num_iterations > 1 the old log-probs are the numbers the first iteration's forward
    computed (no separate pass with other batch shapes), so that iteration is exactly on-policy in any dtype."""
    import gcpo_lite.train.update_phase as update_phase

    real, calls = update_phase.completion_loss, []

    def spy(model, rows, old_lp, advantages, **kw):
        loss, m = real(model, rows, old_lp, advantages, **kw)
        calls.append((None if old_lp is None else old_lp.clone(), m["per_token_logps"], rows.completion_mask))
        return loss, m

    monkeypatch.setattr(update_phase, "completion_loss", spy)
    monkeypatch.setattr(trainer, "_per_row_logps", lambda *a, **k: pytest.fail("a separate old-policy pass"))
    trainer.update(step_batch(trainer))
    first, second = calls[: len(calls) // 2], calls[len(calls) // 2 :]
    assert first and all(old is None for old, _, _ in first)  # iteration 1: on-policy
    for (_, lp, mask), (old, _, _) in zip(first, second):
        assert torch.equal(old * mask, lp * mask)  # iteration 2's old: iteration 1's numbers, bit for bit


def test_a_backend_without_entropy_reports_none_not_zero(small_trainer):
    """A rollout backend that cannot give entropy (SampleOutput.entropy_sums=None): the step has no `entropy`."""
    from gcpo_lite.rollout.sampler import SampleOutput

    tr = small_trainer()

    class NoEntropy:
        def generate(self, model, prompts, **kw):
            return SampleOutput(
                [[5, tr.tokenizer.eos_token_id] for _ in prompts], [-1.0] * len(prompts), None
            )

    tr.rollout_backend = NoEntropy()
    b = tr.rollout([Example("12+30=", "42", "42"), Example("10+10=", "20", "20")])
    assert "entropy" not in b.metrics and b.metrics["sampled_tokens"] == 16
