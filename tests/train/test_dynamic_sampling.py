"""gcpo.dynamic_sampling (DAPO): groups whose rewards are all equal are dropped and refilled from new prompts
for at most dynamic_sampling_max_rounds extra rounds; every generated rollout is counted (issue 10)."""

import pytest

from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.reward_model import RewardModel

G = 4
EX = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]


@pytest.fixture(scope="module")
def trainer(small_trainer):
    return small_trainer(dynamic_sampling=True)


def script(tr, monkeypatch, rounds):
    """Each generate call answers with the next round's group patterns ('1' is right, '0' wrong)."""
    calls = []

    def generate(prompts, temperature, max_new_tokens):
        texts = [t for group in rounds[len(calls)] for t in group]
        assert len(texts) == len(prompts), (len(texts), len(prompts))
        calls.append(len(prompts))
        ids = [
            tr.tokenizer(t, add_special_tokens=False).input_ids + [tr.tokenizer.eos_token_id] for t in texts
        ]
        return ids, [-1.0] * len(ids)

    monkeypatch.setattr(tr, "generate", generate)
    monkeypatch.setattr(tr, "rewards", RewardModel.from_verifier(lambda text, ex: float(text == "1")))
    monkeypatch.setattr(tr.cfg.gcpo, "gold_injection", "never")
    return calls


def test_equal_groups_are_dropped_and_refilled(trainer, monkeypatch):
    mixed, solved, failed = ["1", "0", "0", "1"], ["1"] * 4, ["0"] * 4
    # round 1: one of two groups has contrast -> keep rate 1/2 -> 2 new prompts for 1 missing group
    calls = script(trainer, monkeypatch, [[solved, mixed], [failed, mixed]])
    b = trainer.rollout(EX)
    assert calls == [8, 8] and len(b.examples) == 2 and len(b.prompts) == 8
    assert b.examples[0] is EX[1]  # the kept group of the first round, then one refill
    assert b.metrics["rollouts"] == 16 and b.metrics["dynamic_rounds"] == 1
    assert b.metrics["dynamic_dropped_groups"] == 2
    assert b.rewards.tolist() == [1, 0, 0, 1] * 2
    assert (b.advantages.view(2, G).abs().sum(1) > 0).all()  # every kept group carries a gradient


def test_rounds_are_bounded_and_nothing_kept_falls_back(trainer, monkeypatch):
    monkeypatch.setattr(trainer.cfg.gcpo, "dynamic_sampling_max_rounds", 2)
    failed = ["0"] * 4
    calls = script(trainer, monkeypatch, [[failed, failed], [failed] * 8, [failed] * 8])
    b = trainer.rollout(EX)
    assert len(calls) == 3 and b.metrics["dynamic_rounds"] == 2  # 1 round + at most 2 extra
    assert b.metrics["rollouts"] == sum(calls) == 8 + 32 + 32  # keep rate floor 0.1 -> 4x oversampling cap
    assert b.examples == EX
    assert len(b.prompts) == 8  # the first round's groups: all zero-advantage, skipped by the update
    assert b.metrics["dynamic_dropped_groups"] == 2 + 8 + 8 - 2  # the fallback's two groups train after all


def test_tokens_per_second_counts_dropped_rollouts(trainer, monkeypatch):
    mixed, solved = ["1", "0", "0", "1"], ["1"] * 4
    script(trainer, monkeypatch, [[solved, mixed], [mixed, mixed]])
    b = trainer.rollout(EX)
    # the unsuffixed figures describe every generated sample, dropped groups included; kept_* the kept ones
    assert (
        b.metrics["generated_tokens"]
        == b.metrics["sampled_tokens"]
        == 16 * 2
        > b.metrics["kept_sampled_tokens"]
    )


def test_gold_rescues_all_wrong_groups_and_only_the_rest_are_refilled(trainer, monkeypatch):
    """GCPO + dynamic sampling (issue 24.1): the all-wrong group whose gold passes its check is kept (gold goes
    in), the all-correct one is dropped and refilled; the metrics describe all 16 samples generated."""
    mixed, solved, failed = ["1", "0", "0", "1"], ["1"] * 4, ["0"] * 4
    calls = script(trainer, monkeypatch, [[failed, solved], [mixed, mixed]])
    monkeypatch.setattr(trainer.cfg.gcpo, "gold_injection", "all_wrong")
    monkeypatch.setattr(
        trainer, "rewards", RewardModel.from_verifier(lambda t, ex: float(t in ("1", ex.answer)))
    )
    b = trainer.rollout(EX)
    assert calls == [8, 8] and b.examples[0] is EX[0]  # the failed group stays, with its gold
    m = b.metrics
    assert b.is_gold.tolist().count(True) == 1 and m["gold_injected_frac"] == 0.5
    assert m["dynamic_dropped_groups"] == 1  # the solved group only
    assert m["accuracy"] == (0 + 4 + 2 + 2) / 16 and m["kept_accuracy"] == (0 + 2) / 8
    assert m["all_wrong_frac"] == m["all_correct_frac"] == 1 / 4 and m["kept_all_wrong_frac"] == 1 / 2


def test_pure_dapo_drops_all_wrong_groups_too(trainer, monkeypatch):
    mixed, failed = ["1", "0", "0", "1"], ["0"] * 4
    calls = script(trainer, monkeypatch, [[failed, mixed], [mixed, mixed]])  # gold_injection=never
    b = trainer.rollout(EX)
    assert calls == [8, 8] and b.examples[0] is EX[1] and not b.is_gold.any()
    assert b.metrics["dynamic_dropped_groups"] == 1 and b.metrics["all_wrong_frac"] == 1 / 4


def test_an_all_wrong_group_without_a_usable_gold_is_refilled(trainer, monkeypatch):
    mixed, failed = ["1", "0", "0", "1"], ["0"] * 4
    calls = script(trainer, monkeypatch, [[failed, mixed], [mixed, mixed]])
    monkeypatch.setattr(trainer.cfg.gcpo, "gold_injection", "all_wrong")  # gold "42" fails text == "1"
    b = trainer.rollout([Example("12+30=", "42", "42"), EX[1]])
    assert calls == [8, 8] and b.examples[0] is EX[1] and not b.is_gold.any()


def test_entropy_covers_every_round(trainer, monkeypatch):
    """Issue 24.2: each round's per-sequence entropy is kept; the mean is over every generated token."""
    mixed, solved = ["1", "0", "0", "1"], ["1"] * 4
    script(trainer, monkeypatch, [[solved, mixed], [mixed, mixed]])
    scripted = trainer.generate
    sums = iter([[2.0] * 8, [4.0] * 8])  # 1 and 2 nats per token over 2-token completions

    def generate(prompts, temperature, max_new_tokens):
        out = scripted(prompts, temperature, max_new_tokens)
        trainer._entropy_sums = next(sums)
        return out

    monkeypatch.setattr(trainer, "generate", generate)
    b = trainer.rollout(EX)
    assert b.metrics["entropy"] == pytest.approx((8 * 2.0 + 8 * 4.0) / 32)
    assert b.metrics["kept_entropy"] == pytest.approx((4 * 2.0 + 4 * 4.0) / 16)  # round 1's mixed, round 2's
