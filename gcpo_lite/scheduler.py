"""Sizes of the work units of a step: generation batch, training micro-batch, logits chunk.

Fixed sizes from the config for now (whole step when unset); the memory-aware planner
replaces `make_plan`'s body without changing the trainer's call.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from .config import Config


@dataclass
class Plan:
    generation_batch_size: int  # sequences per generate call
    micro_batch_size: int  # sequences per forward/backward
    logits_chunk_size: Optional[int]  # tokens per lm_head chunk in the loss (None = kernel default)

    def to_dict(self) -> dict:
        return asdict(self)


def make_plan(cfg: Config) -> Plan:
    step = cfg.train.batch_size
    return Plan(generation_batch_size=cfg.train.generation_batch_size or step,
                micro_batch_size=cfg.train.micro_batch_size or step,
                logits_chunk_size=cfg.train.logits_chunk_size)
