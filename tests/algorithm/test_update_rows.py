"""The step's normalizer with rows masked out of the loss (reward.truncated=mask), per loss type, as TRL's
mask_truncated_completions has it (issue 24.5): masked tokens leave token_mean's count; masked rows stay in the
row count of seq_mean_token_mean and dr_grpo."""

import pytest
import torch

from gcpo_lite.algorithm.batches import StepBatch
from gcpo_lite.algorithm.update_rows import UpdateRows, rows_to_train

LENGTHS = [3, 5, 2, 4, 6, 1, 2, 7]  # 8 rows, 2 groups of 4
MASKED = [False, True, False, False, False, False, True, False]


def batch() -> StepBatch:
    completions = [[1] * n for n in LENGTHS]
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    return StepBatch(
        examples=[None, None],
        prompts=[[5, 6]] * 8,
        completions=completions,
        rewards=rewards,
        advantages=rewards - 0.5,
        is_gold=torch.zeros(8, dtype=torch.bool),
        masked=torch.tensor(MASKED),
    )


@pytest.mark.parametrize(
    "loss_type, expected",
    [
        ("token_mean", sum(n for n, m in zip(LENGTHS, MASKED) if not m)),  # 30 - 5 - 2 = 23 tokens
        ("seq_mean_token_mean", 8),  # every row, the masked two included
        ("dr_grpo", 8),
    ],
)
def test_masked_rows_and_the_normalizer(loss_type, expected):
    b = batch()
    rows, _ = rows_to_train(b, 4, beta=0.0)
    assert sorted(rows) == [0, 2, 3, 4, 5, 7]  # masked rows are not trained
    assert UpdateRows(b, rows, loss_type).normalizer == expected
