"""Which rows an update trains, in what order, and the step's normalizer.

A group whose advantages are all zero carries no gradient when beta = 0, so its rows are not forwarded at
all; the normalizer still counts them (as TRL does), so skipping never rescales the gradient.
"""

from __future__ import annotations

import torch

from gcpo_lite.algorithm.batches import StepBatch
from gcpo_lite.data.collate import RowBatch, pad_batch
from gcpo_lite.run.distributed import World


def rows_to_train(batch: StepBatch, G: int, beta: float) -> tuple[list[int], int]:
    """Rows whose group carries a gradient, and how many groups were skipped (all-zero advantages and
    beta = 0: such a group's loss and gradient are exactly 0)."""
    adv_groups = batch.advantages.view(-1, G)  # (groups, G)
    keep = (
        (adv_groups.abs() > 1e-8).any(dim=1) if beta == 0 else torch.ones(len(adv_groups), dtype=torch.bool)
    )
    masked = batch.masked if batch.masked is not None else torch.zeros(len(batch.prompts), dtype=torch.bool)
    rows = [i for i in range(len(batch.prompts)) if keep[i // G] and not masked[i]]
    # Micro-batches are consecutive slices of these rows: ordered by length, each one pads to lengths
    # close to its own (the step's loss is a sum over rows, so the order does not change it).
    rows.sort(key=lambda i: (len(batch.completions[i]), len(batch.prompts[i])))
    return rows, int((~keep).sum().item())


class UpdateRows:
    """The rows one update trains, in a fixed order that micro-batches slice as rows[s:e]."""

    def __init__(self, batch: StepBatch, rows: list[int], loss_type: str, world: World = World()):
        self.batch, self.rows = batch, rows
        self.lengths = [len(batch.completions[i]) for i in rows]  # completion tokens per row
        self.by_tokens = loss_type == "token_mean"
        # The step's normalizer is the whole batch's, as in TRL: every completion token for token_mean, else
        # every row, skipped zero-advantage groups included. Dividing by the kept rows only would scale the
        # gradient by 1 / (1 - skipped fraction), which changes from step to step as accuracy climbs.
        # Rows masked out of the loss (reward.truncated=mask) follow TRL's mask_truncated_completions: their
        # tokens leave token_mean's count (their completion mask is zero), but they stay in the row count of
        # seq_mean_token_mean and dr_grpo (TRL's mean over rows, and B x max_completion_length, keep them).
        # Under torchrun, "the whole batch" is every rank's: a rank with fewer tokens contributes less.
        masked = batch.masked.tolist() if batch.masked is not None else [False] * len(batch.completions)
        counted = [c for c, m in zip(batch.completions, masked) if not m]
        local = sum(map(len, counted)) if self.by_tokens else len(batch.completions)
        total, self.trained_tokens, self.trained_rows = world.all_sum([local, sum(self.lengths), len(rows)])
        self.normalizer = float(max(1, total))

    def padded(self, s: int, e: int, pad_id: int, device) -> RowBatch:
        idx = self.rows[s:e]
        return pad_batch(
            [self.batch.prompts[i] for i in idx], [self.batch.completions[i] for i in idx], pad_id, device
        )

    def prompts(self, s: int, e: int) -> list[list[int]]:
        return [self.batch.prompts[i] for i in self.rows[s:e]]

    def share(self, s: int, e: int) -> float:
        """rows[s:e]'s share of the step's trained completion tokens (every rank's): the clip ratio and KL a
        micro-step reports are means over its tokens, so token shares combine them into token means."""
        return sum(self.lengths[s:e]) / max(1, self.trained_tokens)


def stack_rows(values: list, s: int, e: int, width: int, device) -> torch.Tensor:
    """values[s:e] (each (len_i,)) as (e - s, width), zero past each row's end."""
    out = torch.zeros(e - s, width, device=device)
    for j, v in enumerate(values[s:e]):
        out[j, : len(v)] = v
    return out
