"""The rollout half of a step (a part of Trainer): sample G completions per prompt, score them, inject gold
where a group has no success, and compute the advantages. Rows are grouped contiguously: B = prompts x G."""

from __future__ import annotations

import contextlib
import math
from typing import Optional

import torch

from gcpo_lite.algorithm.advantages import group_advantages
from gcpo_lite.algorithm.batches import Sampled, StepBatch
from gcpo_lite.algorithm.dynamic_sampling import dynamic_sample
from gcpo_lite.algorithm.gold import (
    Gold,
    LazyGolds,
    choose_gold_slot,
    gold_solution_text,
    inject,
    make_gold,
    should_inject,
)
from gcpo_lite.data.prompts import completion_ids_for_text, prompt_ids
from gcpo_lite.data.tasks import Example
from gcpo_lite.models import dequantized_base
from gcpo_lite.run.distributed import merge_records
from gcpo_lite.train.metrics import rollout_metrics, sample_record


class RolloutPhase:
    """Trainer's rollout methods; they read the trainer's model, tokenizer, config, plan and caches."""

    def _prompt(self, ex: Example) -> list[int]:
        key = id(ex)
        if key not in self._prompt_cache:
            self._prompt_cache[key] = prompt_ids(self.tokenizer, ex)
        return self._prompt_cache[key]

    def _gold(self, ex: Example) -> Gold:
        """ex's gold completion, checked once with the run's own reward function and cached."""
        key = id(ex)
        if key not in self._gold_cache:
            # Built-in tasks write solutions as the policy answers; dataset solutions checked by a math verifier
            # get a final \boxed{} and, for R1-distill models, thinking tags (gold.py); others stay verbatim.
            text = (
                ex.solution
                if (self._builtin_task or not ex.solution or not self._math_gold)
                else gold_solution_text(ex, self.resolved.family, prompt_opens_think=self._opens_think)
            )
            self._gold_cache[key] = make_gold(
                text,
                tokenize=lambda x: completion_ids_for_text(self.tokenizer, ex, x, self.eos_ids),
                score=lambda ids: self.rewards.score(
                    self.tokenizer.decode(ids, skip_special_tokens=True), ex, list(ids), self.reward_state()
                ),
                max_len=self.cfg.gcpo.max_completion_length,
                overflow=self.cfg.gcpo.gold_overflow,
                suppressed=self.suppress,
            )
        return self._gold_cache[key]

    def next_examples(self, n: int) -> list[Example]:
        return self.prompts.next(n)

    def generate(self, prompts: list[list[int]], temperature: float, max_new_tokens: int):
        """Completions for `prompts`, in generation batches of plan.generation_batch_size (halved on OOM)."""
        g = self.cfg.gcpo

        def chunk(s: int, e: int):
            return self.rollout_backend.generate(
                self.model,
                prompts[s:e],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=g.top_p,
                eos_ids=self.eos_ids,
                pad_id=self.pad_id,
                suppress_ids=self.suppress,
            )

        merge = self.cfg.rollout.merge_lora and self.plan.dequantized_layers
        with dequantized_base.merged_lora(self.model) if merge else contextlib.nullcontext():
            outs = self.backoff.map("generation", len(prompts), chunk)
        completions = [c for o in outs for c in o.completions]
        mean_lp = [x for o in outs for x in o.mean_logprobs]
        # None when a backend cannot give entropy (SampleOutput): the step reports none rather than 0
        self._entropy_sums = (
            None if any(o.entropy_sums is None for o in outs) else [x for o in outs for x in o.entropy_sums]
        )
        return completions, mean_lp

    def rollout(self, examples: list[Example]) -> StepBatch:
        """Sample G completions per prompt, score them, inject gold where a group has no success, compute
        advantages. Rows are grouped contiguously: B = len(examples) x G."""
        g, G = self.cfg.gcpo, self.cfg.gcpo.num_generations
        examples, s, dyn = self._sampled(examples)
        generated = dyn.pop("generated", None)  # dynamic sampling: every round's samples, dropped groups too
        prompts, completions, rewards = s.prompts, list(s.completions), list(s.rewards)
        slots, gold_status = inject(
            rewards, s.correct, s.mean_lp, LazyGolds(examples, self._gold), G, g.gold_injection
        )
        is_gold = [False] * len(prompts)
        for row, gold in slots.items():
            completions[row], rewards[row], is_gold[row] = list(gold.ids), gold.reward, True
        reward_t = torch.tensor(rewards, dtype=torch.float32)
        adv = group_advantages(reward_t, G, g.scale_rewards, batch_std=self._batch_reward_std(rewards))
        # reward.truncated=mask: a truncated policy sample stays in its group's advantages but out of the loss
        masked = [
            t and not gold and self.cfg.reward.truncated == "mask" for t, gold in zip(s.truncated, is_gold)
        ]
        record = {
            **sample_record(s),
            "rewards": rewards,
            "advantages": adv.tolist(),
            "is_gold": is_gold,
            "gold_status": dict(gold_status),
            "reward_errors": self.rewards.errors,
            "truncated_zeroed": sum(s.truncated) if self.cfg.reward.truncated == "zero" else 0,
            "truncated_masked": sum(masked),
            **dyn,
        }  # per row, in group order; under torchrun merged into the whole job's before the metrics
        metrics = rollout_metrics(
            merge_records(self.world, record, maxed=("dynamic_rounds",)), G, self._generated_record(generated)
        )
        is_gold_t, masked_t = torch.tensor(is_gold), torch.tensor(masked)
        return StepBatch(examples, prompts, completions, reward_t, adv, is_gold_t, metrics, masked_t)

    def _sampled(self, examples: list[Example]) -> tuple[list[Example], Sampled, dict]:
        """(the examples, their scored samples, sampling figures): G samples each, or with gcpo.dynamic_sampling
        (DAPO) only groups whose rewards differ, refilled from new prompts."""
        if self.cfg.gcpo.dynamic_sampling:
            return self._dynamic_sample(examples)
        s = self._sample_groups(examples)
        return examples, s, {"rollouts": len(s.prompts)}

    def _sample_groups(self, examples: list[Example]) -> Sampled:
        """G scored samples of each example, grouped contiguously (the policy's own: no gold yet)."""
        g = self.cfg.gcpo
        prompts = [self._prompt(ex) for ex in examples for _ in range(g.num_generations)]
        self._entropy_sums = None  # generate() sets this call's, per sequence; None: none given
        completions, mean_lp = self.generate(prompts, g.temperature, g.max_completion_length)
        entropy = [math.nan] * len(completions) if self._entropy_sums is None else list(self._entropy_sums)
        rewards, correct, truncated, per_function = self._score(completions, examples)
        return Sampled(prompts, completions, mean_lp, rewards, correct, truncated, per_function, entropy)

    def _generated_record(self, s: Optional[Sampled]) -> Optional[dict]:
        """The whole job's record of every sample generated in the step (None without dynamic sampling)."""
        return None if s is None else merge_records(self.world, sample_record(s))

    def _has_contrast(self, ex: Example, group: Sampled) -> bool:
        """Dynamic sampling's test: the group's rewards differ, or will once gold.inject has put the example's
        gold in (an all-wrong group with a gold that passed its check)."""
        g = self.cfg.gcpo
        if max(group.rewards) != min(group.rewards):
            return True
        if not should_inject(g.gold_injection, group.correct):
            return False
        gold = self._gold(ex)
        if gold.ids is None:
            return False
        after = list(group.rewards)
        after[choose_gold_slot(group.rewards, group.mean_lp)] = gold.reward
        return max(after) != min(after)

    def _dynamic_sample(self, examples: list[Example]):
        """(examples, samples, metrics) for gcpo.dynamic_sampling (algorithm/dynamic_sampling.py)."""
        g = self.cfg.gcpo
        return dynamic_sample(
            examples,
            self._sample_groups,
            self.next_examples,
            g.num_generations,
            g.dynamic_sampling_max_rounds,
            has_contrast=self._has_contrast,
        )

    def _score(self, completions: list[list[int]], examples: list[Example]):
        """(rewards, correct, truncated, each function's scores) per row; reward.truncated=zero scores a truncated
        sample 0 and wrong (also for gold injection)."""
        G = self.cfg.gcpo.num_generations
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        rows = [examples[i // G] for i in range(len(texts))]
        scores = self.rewards.score_batch(texts, completions, rows, state=self.reward_state())
        rewards, correct = scores.rewards, scores.correct
        per_function = [{k: v[i] for k, v in scores.per_function.items()} for i in range(len(texts))]
        truncated = [self._is_truncated(c) for c in completions]  # hit the length limit without an end token
        if self.cfg.reward.truncated == "zero":
            rewards = [0.0 if t else r for r, t in zip(rewards, truncated)]
            correct = [c and not t for c, t in zip(correct, truncated)]
        return rewards, correct, truncated, per_function

    def reward_state(self):
        """What reward functions get as trainer_state (TRL passes its TrainerState): the step about to be taken,
        the last one, and the epoch over the prompts."""
        from types import SimpleNamespace

        return SimpleNamespace(
            global_step=self.step, max_steps=self.cfg.train.max_steps, epoch=self.prompts.epoch
        )

    def _is_truncated(self, completion: list[int]) -> bool:
        """True for a sample that stopped at max_completion_length rather than on an end token."""
        return len(completion) >= self.cfg.gcpo.max_completion_length and (
            not completion or completion[-1] not in self.eos_ids
        )

    def _batch_reward_std(self, rewards: list[float]) -> Optional[torch.Tensor]:
        """scale_rewards=batch under torchrun: the std of the whole job's rewards (else None: the rows'
        own)."""
        if self.cfg.gcpo.scale_rewards != "batch" or not self.world.distributed:
            return None
        every = merge_records(self.world, {"rewards": list(rewards)})["rewards"]
        return torch.tensor(every, dtype=torch.float32).std() if len(every) > 1 else None
