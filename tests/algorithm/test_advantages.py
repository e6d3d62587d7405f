import pytest
import torch

from gcpo_lite.algorithm.advantages import STD_EPS, group_advantages, group_stats


def test_group_scaling_uses_group_std():
    r = torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0])
    adv = group_advantages(r, 4, "group")
    # group 1: mean .25, unbiased std .5; group 2: mean .5, std sqrt(1/3)
    s2 = (1 / 3) ** 0.5
    expected = torch.tensor(
        [
            0.75 / (0.5 + STD_EPS),
            -0.25 / (0.5 + STD_EPS),
            -0.25 / (0.5 + STD_EPS),
            -0.25 / (0.5 + STD_EPS),
            0.5 / (s2 + STD_EPS),
            0.5 / (s2 + STD_EPS),
            -0.5 / (s2 + STD_EPS),
            -0.5 / (s2 + STD_EPS),
        ]
    )
    assert torch.allclose(adv, expected, atol=1e-5)


def test_batch_scaling_uses_batch_std_and_none_only_centres():
    r = torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0])
    batch_std = r.std()
    adv = group_advantages(r, 4, "batch")
    assert torch.allclose(
        adv[:4], torch.tensor([0.75, -0.25, -0.25, -0.25]) / (batch_std + STD_EPS), atol=1e-6
    )
    none = group_advantages(r, 4, "none")
    assert torch.allclose(none, torch.tensor([0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5]))
    with pytest.raises(ValueError):
        group_advantages(r, 4, "global")


def test_equal_rewards_give_zero_advantages():
    adv = group_advantages(torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1]), 4)
    assert torch.all(adv == 0)
    stats = group_stats(torch.tensor([False] * 4 + [True] * 4), adv, 4)
    assert stats.zero_advantage_groups == 2 and stats.all_wrong_frac == 0.5 and stats.all_correct_frac == 0.5
