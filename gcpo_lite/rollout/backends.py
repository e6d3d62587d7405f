"""Rollout backends: the one place that turns prompts into completions with their sampling log-probs.

The trainer calls `backend.generate(...)` for rollouts and evaluation and never samples on its own, so an
external engine (say vLLM with LoRA hot-swap) can be added here as another backend without touching the
trainer. Only backends that run on this machine ship: today, `builtin`.

A backend's contract (what the trainer relies on):
  - one completion per prompt, in order; a completion ends with an EOS id unless it hit max_new_tokens;
  - suppress_ids are never sampled (the training log-probs ban them too);
  - mean_logprobs are per completion, at the sampling temperature, over the distribution it sampled from
    (before top-p), so they agree with the trainer's old log-probs;
  - token_logprobs (per token, the same distribution) and finish_reasons ("stop" / "length") when it has them;
  - entropy_sums per completion, or None when the backend cannot give them: the step's `entropy` is then left
    out of the metrics rather than reported as 0.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from gcpo_lite.config import RolloutConfig
from gcpo_lite.rollout.sampler import SampleOutput, sample_completions


class RolloutBackend(Protocol):
    def generate(
        self,
        model,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        eos_ids: set[int],
        pad_id: int,
        suppress_ids: Sequence[int],
    ) -> SampleOutput: ...


class BuiltinBackend:
    """gcpo-lite's batched, KV-cached sampler (rollout.sample_completions) on the training model itself."""

    def __init__(self, cfg: RolloutConfig):
        self.share_prompts, self.drop_finished = cfg.share_prompts, cfg.drop_finished

    def generate(self, model, prompts, **kw) -> SampleOutput:
        return sample_completions(
            model, prompts, share_prompts=self.share_prompts, drop_finished=self.drop_finished, **kw
        )


BACKENDS = {"builtin": BuiltinBackend}


def make_backend(cfg: RolloutConfig) -> RolloutBackend:
    return BACKENDS[cfg.backend](cfg)  # config validation already limits backend to BACKENDS' names
