"""Token id lists to padded tensors: prompts left-padded (so every row's last prompt token is aligned for
decoding), completions right-padded, and the training row batch that joins the two."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[Tensor, Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)  # (B, P), (B, P)


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int, width: int, device) -> tuple[Tensor, Tensor]:
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        s = list(s)[:width]
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)  # (B, T), (B, T)


@dataclass
class RowBatch:
    """Padded training rows: prompt (left-padded) followed by completion (right-padded)."""

    prompt_ids: Tensor  # (B, P)
    prompt_mask: Tensor  # (B, P)
    completion_ids: Tensor  # (B, T)
    completion_mask: Tensor  # (B, T) 1 on completion tokens, EOS included

    def __len__(self) -> int:
        return self.prompt_ids.shape[0]


def pad_batch(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int, device
) -> RowBatch:
    width = max(1, max(len(c) for c in completions))
    p_ids, p_mask = left_pad(prompts, pad_id, device)
    c_ids, c_mask = right_pad(completions, pad_id, width, device)
    return RowBatch(p_ids, p_mask, c_ids, c_mask)
