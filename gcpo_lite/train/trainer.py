"""The GCPO loop: rollout -> reward -> gold injection -> advantages -> loss -> step -> log.

Departures from plain GRPO (each a config option, see config.py):
- gold injection: a group with no correct sample gets the reference solution in place of
  its worst sample (lowest reward, then lowest mean log-prob), so it still has a contrast;
- sequence-level importance ratios (GSPO) with tight clip ranges by default;
- no KL term by default (beta = 0); with beta > 0 the reference is the base with the adapter off;
- groups whose advantages are all zero are not forwarded at all when beta = 0 (they carry no gradient).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch

from gcpo_lite import kernels
from gcpo_lite.algorithm.advantages import group_advantages, group_stats
from gcpo_lite.algorithm.gold import Gold, gold_solution_text, inject, make_gold, prompt_opens_think
from gcpo_lite.config import Config, ConfigError, save_config
from gcpo_lite.data.collate import RowBatch, pad_batch
from gcpo_lite.data.datasets import PromptStream, dataset_name, is_builtin, load_examples
from gcpo_lite.data.prompts import completion_ids_for_text, eos_token_ids, prompt_ids, suppressed_ids
from gcpo_lite.data.tasks import Example
from gcpo_lite.demo.embedded_model import prepare_model
from gcpo_lite.kernels import gcpo_loss
from gcpo_lite.memory import cpu_allocator
from gcpo_lite.memory.oom import OOMBackoff
from gcpo_lite.memory.planner import make_plan
from gcpo_lite.models import dequantized_base
from gcpo_lite.models.loading import compute_dtype, decoder_and_head, load_policy, pick_device
from gcpo_lite.models.optimizers import build_optimizer, check_optimizer
from gcpo_lite.policy.length_buckets import bucket_bounds
from gcpo_lite.policy.logprobs import completion_logprobs, completion_loss
from gcpo_lite.policy.prompt_sharing import NotRouted, SharedPrompts, distinct_count
from gcpo_lite.rewards.reward_model import RewardModel, resolve_verifier
from gcpo_lite.rollout.backends import make_backend
from gcpo_lite.run.distributed import World, check_split, merge_records
from gcpo_lite.run.rng import rng_state, set_rng_state

log = logging.getLogger(__name__)


class _UpdateRows:
    """The rows one update trains, in a fixed order that micro-batches slice as rows[s:e]."""

    def __init__(self, batch: "StepBatch", rows: list[int], loss_type: str, world: World = World()):
        self.batch, self.rows = batch, rows
        self.lengths = [len(batch.completions[i]) for i in rows]  # completion tokens per row
        self.by_tokens = loss_type == "token_mean"
        # The step's normalizer is the whole batch's, as in TRL: every completion token for token_mean, else
        # every row, skipped zero-advantage groups included. Dividing by the kept rows only would scale the
        # gradient by 1 / (1 - skipped fraction), which changes from step to step as accuracy climbs.
        # Rows masked out of the loss (reward.truncated=mask) are out of the normalizer too, as in DAPO.
        # Under torchrun, "the whole batch" is every rank's: a rank with fewer tokens contributes less.
        masked = batch.masked.tolist() if batch.masked is not None else [False] * len(batch.completions)
        counted = [c for c, m in zip(batch.completions, masked) if not m]
        local = sum(map(len, counted)) if self.by_tokens else len(counted)
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


def _stack(values: list, s: int, e: int, width: int, device) -> torch.Tensor:
    """values[s:e] (each (len_i,)) as (e - s, width), zero past each row's end."""
    out = torch.zeros(e - s, width, device=device)
    for j, v in enumerate(values[s:e]):
        out[j, : len(v)] = v
    return out


class _MetricsLog:
    """Rows to metrics.jsonl, a few sampled completions to completions.jsonl, the row to sinks and the bar."""

    def __init__(self, trainer: "Trainer", metrics_file, completions_file):
        self.trainer, self.mf, self.cf = trainer, metrics_file, completions_file

    def write(self, row: dict, *, batch: Optional["StepBatch"] = None, sinks=None, bar=None) -> dict:
        self.mf.write(json.dumps(row) + "\n")
        self.mf.flush()
        if batch is not None:
            self.write_samples(batch)
        if sinks is not None:
            sinks.log(row)
        if bar is not None:
            bar.update(row)
        return row

    def write_samples(self, batch: "StepBatch") -> None:
        n = self.trainer.cfg.train.log_completions
        if n <= 0:
            return
        G = self.trainer.cfg.gcpo.num_generations
        for i in range(0, min(len(batch.completions), n * G), G):  # first sample of the first n groups
            ex = batch.examples[i // G]
            text = self.trainer.tokenizer.decode(batch.completions[i], skip_special_tokens=True)
            self.cf.write(
                json.dumps(
                    {
                        "step": self.trainer.step,
                        "prompt": ex.prompt,
                        "answer": ex.answer,
                        "completion": text,
                        "reward": float(batch.rewards[i]),
                        "gold": bool(batch.is_gold[i]),
                    }
                )
                + "\n"
            )
        self.cf.flush()


class _LazyGolds:
    """golds[g] for gold.inject: group g's Gold, prepared (and cached by the trainer) only when asked for."""

    def __init__(self, examples: list[Example], make: Callable[[Example], Gold]):
        self.examples, self.make = examples, make

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, g: int) -> Gold:
        return self.make(self.examples[g])


@dataclass
class _Sampled:
    """Scored policy samples, one row each, grouped contiguously by prompt (G rows a group)."""

    prompts: list  # (B,) prompt ids
    completions: list  # (B,) completion ids
    mean_lp: list  # (B,) mean sampled log-prob
    rewards: list  # (B,)
    correct: list  # (B,)
    truncated: list  # (B,)

    @staticmethod
    def empty() -> "_Sampled":
        return _Sampled([], [], [], [], [], [])

    def group(self, j: int, G: int) -> "_Sampled":
        sl = slice(j * G, (j + 1) * G)
        return _Sampled(*(getattr(self, f)[sl] for f in _SAMPLED_FIELDS))

    def extend(self, other: "_Sampled") -> None:
        for f in _SAMPLED_FIELDS:
            getattr(self, f).extend(getattr(other, f))


_SAMPLED_FIELDS = ("prompts", "completions", "mean_lp", "rewards", "correct", "truncated")


@dataclass
class StepBatch:
    """One step's rollouts, B = prompts x G rows grouped contiguously."""

    examples: list[Example]
    prompts: list[list[int]]  # (B,) prompt ids
    completions: list[list[int]]  # (B,) completion ids (gold rows replaced)
    rewards: torch.Tensor  # (B,)
    advantages: torch.Tensor  # (B,)
    is_gold: torch.Tensor  # (B,) bool
    metrics: dict = field(default_factory=dict)
    masked: Optional[torch.Tensor] = None  # (B,) bool: rows left out of the loss (reward.truncated=mask)


def _seed_and_threads(seed: int, num_threads) -> None:
    """Seed python's and torch's random streams; set torch's CPU threads (when given)."""
    random.seed(seed)
    torch.manual_seed(seed)
    if num_threads:
        torch.set_num_threads(num_threads)


class Trainer:
    def __init__(
        self, cfg: Config, *, echo: Callable = print, progress: bool = True, world: Optional[World] = None
    ):
        self.world = world or World()  # under torchrun: this process's rank (distributed.py)
        self.cfg, self.progress = cfg, progress and self.world.is_main
        self.echo = echo if self.world.is_main else (lambda _: None)  # log lines from rank 0 only
        t = cfg.train
        _seed_and_threads(t.seed, t.num_threads)
        self.device = self.world.device(pick_device(t.device))
        self.kernel_backend = kernels.set_backend(t.kernels)
        check_optimizer(t.optimizer, self.device.type)  # before the model loads: a clear error, fast
        self.resolved = prepare_model(cfg.model.name)  # the embedded model's files are made on first use
        self.model, self.tokenizer = load_policy(cfg, self.resolved, self.device)
        train_examples, self.eval_examples = load_examples(cfg.data, t.seed, tokenizer=self.tokenizer)
        shard = train_examples[self.world.rank :: self.world.size]  # torchrun: each rank its own prompts
        self.prompts = PromptStream(shard, t.seed, cfg.data.shuffle)  # order, cursor, epoch
        r = cfg.reward
        self.rewards = RewardModel(
            resolve_verifier(r.verifier, dataset_name(cfg.data), r.last_number_fallback), r.format_weight
        )
        self._builtin_task = is_builtin(cfg.data)
        self._share_prompts = cfg.train.share_prompts  # off for the run if the model cannot (prompt_sharing)
        self._opens_think = prompt_opens_think(self.tokenizer)
        self.eos_ids = eos_token_ids(self.tokenizer, self.model)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.suppress = suppressed_ids(self.tokenizer, self.eos_ids, cfg.gcpo.suppress_tokens)
        self.suppress_t = torch.tensor(self.suppress, dtype=torch.long, device=self.device)
        if self.device.type == "cpu" and cfg.scheduler.cpu_allocator == "caching":
            self.cfg = cfg = self._install_cpu_allocator(cfg)
        self.cfg = cfg = self._plan_share(cfg, train_examples + self.eval_examples)
        self._spend_planned_memory()
        oom = dict(enabled=cfg.scheduler.oom_backoff, release=self._release_dequantized)
        self.backoff = OOMBackoff(self.plan, **oom)  # OOM: dequantized layers go first, then halve the size
        self.optimizer, self.lr_schedule = self._optimizer()
        self.rollout_backend = make_backend(cfg.rollout)  # prompts -> completions + sampling log-probs
        self.out_dir = Path(t.output_dir)
        self.step = 0
        self._prompt_cache: dict[int, list[int]] = {}
        self._gold_cache: dict[int, Gold] = {}
        self._entropy_sums: list[float] = []  # per sequence of the last generate call
        self._join_world()

    # ------------------------------------------------------------ helpers
    def _plan_share(self, cfg: Config, examples: list[Example]) -> Config:
        """self.plan for this process's share of the step (all of it for a single process), sized for the
        longest prompt this run really has; returns the config with a planner-chosen G resolved."""
        longest_prompt = max((len(prompt_ids(self.tokenizer, ex)) for ex in examples), default=1)
        self.plan = make_plan(
            cfg.with_batch_size(cfg.train.batch_size // self.world.size) if self.world.distributed else cfg,
            model_config=self.model.config,
            prompt_tokens=longest_prompt,
            processes_sharing=self.world.local_size,
        )
        if cfg.scheduler.auto_num_generations:  # auto values resolved once: the run's effective config
            cfg = cfg.with_num_generations(self.plan.num_generations)
        check_split(cfg.prompts_per_step, cfg.gcpo.num_generations, self.world)  # whole groups per rank
        self.prompts_per_rank = cfg.prompts_per_step // self.world.size
        return cfg

    def _join_world(self) -> None:
        """Under torchrun: every rank starts from rank 0's adapter, then samples with its own random
        streams (seed + rank). A single process draws exactly as before."""
        if not self.world.distributed:
            return
        self.world.broadcast_from_main([p for p in self.model.parameters() if p.requires_grad])
        random.seed(self.cfg.train.seed + self.world.rank)
        torch.manual_seed(self.cfg.train.seed + self.world.rank)

    def _install_cpu_allocator(self, cfg: Config) -> Config:
        """The caching CPU allocator (its cap is set once the plan exists), or the system one (logged, and
        planned with the system allocator's slack) when the native extension is unavailable; returns the
        config naming the allocator the run has."""
        ok, why = cpu_allocator.install(cpu_allocator.MIN_CAP_BYTES)
        if ok:
            return cfg
        log.info("scheduler.cpu_allocator=caching is unavailable: %s; using the system allocator", why)
        return cfg.with_cpu_allocator("system")

    def _spend_planned_memory(self) -> None:
        """What the plan set aside beyond the batch sizes: the dequantized base's layers (speed) and, on CPU,
        the caching allocator's cap (what the plan counts as allocator slack)."""
        if self.plan.dequantized_layers and self.cfg.model.quantize:
            dtype = compute_dtype(self.cfg.model, self.device)
            dequantized_base.attach(self.model, self.plan.dequantized_layers, dtype)
        if self.device.type == "cpu" and self.cfg.scheduler.cpu_allocator == "caching":
            slack = self.plan.components["allocator_overhead"]
            cpu_allocator.install(max(slack, cpu_allocator.MIN_CAP_BYTES))

    def _release_dequantized(self) -> tuple[str, int, int]:
        """The OOM backoff's first resort: the last half of the dequantized layers go back to 4-bit on the
        fly (same values, slower); returns ("dequantized_layers", before, after)."""
        k = dequantized_base.attached_layers(self.model)
        if k:
            dequantized_base.detach(self.model, keep=k // 2)
            self.plan.dequantized_layers = k // 2
        return "dequantized_layers", k, k // 2

    def _between_phases(self) -> None:
        """Unmap the caching CPU allocator's cached blocks: one phase's sizes never sit through the other."""
        if self.device.type == "cpu" and self.cfg.scheduler.cpu_allocator == "caching":
            cpu_allocator.empty_cache()

    def _optimizer(self):
        """train.optimizer on the LoRA weights, and its LR schedule (advanced once per step)."""
        t = self.cfg.train
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = build_optimizer(
            t.optimizer,
            params,
            lr=t.learning_rate,
            weight_decay=t.weight_decay,
            betas=(t.adam_beta1, t.adam_beta2),
        )
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)

    def _lr_factor(self, step: int) -> float:
        t = self.cfg.train
        if step < t.warmup_steps:
            return (step + 1) / (t.warmup_steps + 1)
        if t.lr_scheduler == "constant":
            return 1.0
        frac = (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps)
        frac = min(max(frac, 0.0), 1.0)
        return 1.0 - frac if t.lr_scheduler == "linear" else 0.5 * (1 + math.cos(math.pi * frac))

    def _prompt(self, ex: Example) -> list[int]:
        key = id(ex)
        if key not in self._prompt_cache:
            self._prompt_cache[key] = prompt_ids(self.tokenizer, ex)
        return self._prompt_cache[key]

    def _gold(self, ex: Example) -> Gold:
        """ex's gold completion, checked once with the run's own reward function and cached."""
        key = id(ex)
        if key not in self._gold_cache:
            # Built-in tasks write solutions as the policy answers; dataset solutions get a final \boxed{}
            # and, for R1-distill models, thinking tags (gold.py).
            text = (
                ex.solution
                if (self._builtin_task or not ex.solution)
                else gold_solution_text(ex, self.resolved.family, prompt_opens_think=self._opens_think)
            )
            self._gold_cache[key] = make_gold(
                text,
                tokenize=lambda x: completion_ids_for_text(self.tokenizer, ex, x, self.eos_ids),
                score=lambda ids: self.rewards.score(
                    self.tokenizer.decode(ids, skip_special_tokens=True), ex
                ),
                max_len=self.cfg.gcpo.max_completion_length,
                overflow=self.cfg.gcpo.gold_overflow,
                suppressed=self.suppress,
            )
        return self._gold_cache[key]

    def next_examples(self, n: int) -> list[Example]:
        return self.prompts.next(n)

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything a checkpoint needs besides the adapter weights: plain containers and tensors. Under
        torchrun (a collective: every rank calls it) also every rank's own data position, random streams,
        reward error count and plan, in `ranks` (distributed.rank_view picks a rank's on resume)."""
        own = {
            "data": self.prompts.state_dict(),
            "reward_errors": self.rewards.errors,
            "rng": rng_state(),
        }
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),  # the same on every rank (same gradients, same steps)
            "optimizer_kind": self.cfg.train.optimizer,
            "lr_schedule": self.lr_schedule.state_dict(),
            **own,
        }
        if self.world.distributed:
            plan = json.loads(json.dumps(self.plan.to_dict(), default=str))  # what plan.json holds
            state["world_size"] = self.world.size
            state["ranks"] = self.world.gather({**own, "plan": plan})
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore state_dict()'s contents (the random streams last: nothing may draw after them)."""
        kind = state.get("optimizer_kind", "adamw")  # checkpoints before train.optimizer existed: AdamW
        if kind != self.cfg.train.optimizer:
            raise ConfigError(
                f"this checkpoint's optimizer state is {kind}'s and this run builds {self.cfg.train.optimizer}; "
                f"resume with train.optimizer={kind}"
            )
        self.prompts.load_state_dict(state["data"])
        # the plan's (from the checkpoint) may hold fewer dequantized layers: the run gave some back on an OOM
        keep = self.plan.dequantized_layers
        if dequantized_base.attached_layers(self.model) > keep:
            dequantized_base.detach(self.model, keep=keep)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.rewards.errors = int(state.get("reward_errors", 0))
        self.step = int(state["step"])
        set_rng_state(state["rng"])

    # ------------------------------------------------------------ rollout
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
        self._entropy_sums = [x for o in outs for x in o.entropy_sums]
        return completions, mean_lp

    def rollout(self, examples: list[Example]) -> StepBatch:
        """Sample G completions per prompt, score them, inject gold where a group has no success, compute
        advantages. Rows are grouped contiguously: B = len(examples) x G."""
        g = self.cfg.gcpo
        G = g.num_generations
        if g.dynamic_sampling:  # DAPO: only groups whose rewards differ, refilled from new prompts
            examples, s, dyn = self._dynamic_sample(examples)
        else:
            s = self._sample_groups(examples)
            dyn = {"rollouts": len(s.prompts)}
        prompts, completions, rewards = s.prompts, list(s.completions), list(s.rewards)
        golds = _LazyGolds(examples, self._gold)
        slots, gold_status = inject(rewards, s.correct, s.mean_lp, golds, G, g.gold_injection)
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
            "rewards": rewards,
            "sampled_rewards": list(s.rewards),
            "correct": list(s.correct),
            "advantages": adv.tolist(),
            "lengths": [len(c) for c in s.completions],
            "truncated": list(s.truncated),
            "is_gold": is_gold,
            "gold_status": dict(gold_status),
            "entropy_sum": sum(self._entropy_sums),
            "reward_errors": self.rewards.errors,
            "truncated_zeroed": sum(s.truncated) if self.cfg.reward.truncated == "zero" else 0,
            "truncated_masked": sum(masked),
            **dyn,
        }  # per row, in group order; under torchrun merged into the whole job's before the metrics
        metrics = self._rollout_metrics(merge_records(self.world, record, maxed=("dynamic_rounds",)))
        is_gold_t, masked_t = torch.tensor(is_gold), torch.tensor(masked)
        return StepBatch(examples, prompts, completions, reward_t, adv, is_gold_t, metrics, masked_t)

    def _sample_groups(self, examples: list[Example]) -> "_Sampled":
        """G scored samples of each example, grouped contiguously (the policy's own: no gold yet)."""
        g = self.cfg.gcpo
        prompts = [self._prompt(ex) for ex in examples for _ in range(g.num_generations)]
        completions, mean_lp = self.generate(prompts, g.temperature, g.max_completion_length)
        rewards, correct, truncated = self._score(completions, examples)
        return _Sampled(prompts, completions, mean_lp, rewards, correct, truncated)

    def _dynamic_sample(self, examples: list[Example]):
        """(examples, samples, metrics) for gcpo.dynamic_sampling: groups whose rewards are all equal are
        dropped and new prompts sampled in their place, oversampled by the last round's keep rate, for at most
        dynamic_sampling_max_rounds extra rounds. With nothing kept at all, the first round's groups stay."""
        g = self.cfg.gcpo
        G, want = g.num_generations, len(examples)
        kept_ex, kept, first = [], _Sampled.empty(), None
        drawn, rounds, rollouts, dropped, tokens = examples, 0, 0, 0, 0
        while True:
            s = self._sample_groups(drawn)
            first, rollouts = first or (drawn, s), rollouts + len(s.prompts)
            tokens += sum(len(c) for c in s.completions)
            for j, ex in enumerate(drawn):
                r = s.rewards[j * G : (j + 1) * G]
                if max(r) == min(r):
                    dropped += 1
                elif len(kept_ex) < want:
                    kept_ex.append(ex)
                    kept.extend(s.group(j, G))
            keep_rate = max(0.1, 1 - dropped / max(1, rollouts // G))
            if len(kept_ex) >= want or rounds >= g.dynamic_sampling_max_rounds:
                break
            rounds += 1
            shortfall = want - len(kept_ex)
            drawn = self.next_examples(min(4 * shortfall, math.ceil(shortfall / keep_rate)))
        if not kept_ex:
            kept_ex, kept = first
        info = {"rollouts": rollouts, "generated_tokens": tokens, "dynamic_rounds": rounds}
        return kept_ex, kept, {**info, "dynamic_dropped_groups": dropped}

    def _score(self, completions: list[list[int]], examples: list[Example]):
        """(rewards, correct, truncated) per row; reward.truncated=zero scores a truncated sample 0 and wrong
        (also for gold injection)."""
        G = self.cfg.gcpo.num_generations
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        scored = [self.rewards.score(text, examples[i // G]) for i, text in enumerate(texts)]
        rewards, correct = [r for r, _ in scored], [c for _, c in scored]
        truncated = [self._is_truncated(c) for c in completions]  # hit the length limit without an end token
        if self.cfg.reward.truncated == "zero":
            rewards = [0.0 if t else r for r, t in zip(rewards, truncated)]
            correct = [c and not t for c, t in zip(correct, truncated)]
        return rewards, correct, truncated

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

    def _rollout_metrics(self, rec: dict) -> dict:
        """The step's rollout figures from its record (the whole job's under torchrun). Unsuffixed keys
        describe the policy's own samples (gold rows excluded); `*_with_gold` keys the batch the update
        trains on."""
        G = self.cfg.gcpo.num_generations
        reward_t = torch.tensor(rec["rewards"], dtype=torch.float32)
        sampled_reward_t, correct = torch.tensor(rec["sampled_rewards"]), torch.tensor(rec["correct"])
        stats = group_stats(correct, torch.tensor(rec["advantages"]), G)
        lengths, is_gold, gold_status = rec["lengths"], rec["is_gold"], rec["gold_status"]
        std = lambda t: t.std().item() if len(t) > 1 else 0.0  # noqa: E731
        metrics = {
            "reward_mean": sampled_reward_t.mean().item(),
            "reward_std": std(sampled_reward_t),
            "reward_mean_with_gold": reward_t.mean().item(),
            "reward_std_with_gold": std(reward_t),
            "accuracy": correct.float().mean().item(),
            "gold_injected_frac": sum(is_gold) / (len(is_gold) // G),
            "all_correct_frac": stats.all_correct_frac,
            "all_wrong_frac": stats.all_wrong_frac,
            "zero_advantage_groups": stats.zero_advantage_groups,
            "completion_length_mean": sum(lengths) / max(1, len(lengths)),
            "completion_length_max": max(lengths, default=0),
            "sampled_tokens": sum(lengths),
            # mean per sampled token (nats), at the sampling temperature
            "entropy": rec["entropy_sum"] / max(1, sum(lengths)),
            "truncated_frac": sum(rec["truncated"]) / len(lengths),
            "reward_errors": rec["reward_errors"],
        }
        for status in ("truncated", "skipped_overflow", "failed_verification", "suppressed_token", "missing"):
            metrics[f"gold_{status}"] = gold_status.get(status, 0)
        other = ("truncated_zeroed", "truncated_masked", "rollouts", "generated_tokens", "dynamic_rounds")
        metrics.update({k: rec[k] for k in (*other, "dynamic_dropped_groups") if k in rec})
        return metrics

    # ------------------------------------------------------------ update
    def _logprob_kwargs(self) -> dict:
        """How every training-side log-prob is taken: sampling temperature, banned ids, the plan's chunk."""
        return dict(
            temperature=self.cfg.gcpo.temperature,
            suppress_ids=self.suppress_t,
            chunk_size=self.plan.logits_chunk_size,
        )

    def update(self, batch: StepBatch) -> dict:
        """num_iterations optimizer steps on the batch; returns loss metrics."""
        g = self.cfg.gcpo
        rows, skipped = self._rows_to_train(batch)
        work = _UpdateRows(batch, rows, g.loss_type, self.world)  # the step's normalizer, every rank's rows
        skipped = int(self.world.all_sum([skipped])[0])
        out = dict(skipped_groups=skipped, loss=0.0, clip_ratio=0.0, kl=0.0, grad_norm=0.0)
        out["trained_rows"] = int(work.trained_rows)
        if not work.trained_rows:  # every group skipped: no update, but the LR schedule still steps
            self.lr_schedule.step()
            return out
        # Old-policy and reference log-probs are kept per row (no grad): the OOM backoff may re-slice the rows.
        old = self._per_row_logps(work) if g.num_iterations > 1 else None
        ref = self._per_row_logps(work, reference=True) if g.beta > 0 else None
        self.model.train()
        params = [q for q in self.model.parameters() if q.requires_grad]
        sums = torch.zeros(3, dtype=torch.float64)  # loss, clip_ratio, kl over all iterations
        for _ in range(g.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            step = partial(self._micro_step, work, old, ref)
            for part in self.backoff.accumulate(len(rows), step, params):  # none when this rank has no rows
                sums += torch.tensor(part, dtype=torch.float64)
            self.world.sum_gradients(params)  # torchrun: the global batch's gradient on every rank
            if not self._grads_finite(params):  # a NaN/inf never reaches the adapter weights
                out["nonfinite_skipped"] = out.get("nonfinite_skipped", 0) + 1
                self.optimizer.zero_grad(set_to_none=True)
                continue
            if self.cfg.train.max_grad_norm > 0:
                out["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.train.max_grad_norm))
            self.optimizer.step()
        self.lr_schedule.step()  # once per step: train.max_steps counts steps, whatever num_iterations is
        loss, clip, kl = self.world.all_sum((sums / g.num_iterations).tolist())  # shares of the global step
        out.update(loss=loss, clip_ratio=clip, kl=kl)
        return out

    def _grads_finite(self, params) -> bool:
        """False (with one warning line) when any LoRA gradient is NaN or infinite: the update is skipped."""
        ok = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)
        if not ok:
            log.warning(
                "step %d: non-finite loss or gradient; this optimizer update is skipped (nonfinite_skipped)",
                self.step + 1,
            )
        return ok

    def _rows_to_train(self, batch: StepBatch) -> tuple[list[int], int]:
        """Rows whose group carries a gradient, and how many groups were skipped (all-zero advantages and
        beta = 0: such a group's loss and gradient are exactly 0)."""
        G = self.cfg.gcpo.num_generations
        adv_groups = batch.advantages.view(-1, G)  # (groups, G)
        keep = (
            (adv_groups.abs() > 1e-8).any(dim=1)
            if self.cfg.gcpo.beta == 0
            else torch.ones(len(adv_groups), dtype=torch.bool)
        )
        masked = (
            batch.masked if batch.masked is not None else torch.zeros(len(batch.prompts), dtype=torch.bool)
        )
        rows = [i for i in range(len(batch.prompts)) if keep[i // G] and not masked[i]]
        # Micro-batches are consecutive slices of these rows: ordered by length, each one pads to lengths
        # close to its own (the step's loss is a sum over rows, so the order does not change it).
        rows.sort(key=lambda i: (len(batch.completions[i]), len(batch.prompts[i])))
        return rows, int((~keep).sum().item())

    def _per_row_logps(self, work: "_UpdateRows", *, reference: bool = False) -> list:
        """[(len_i,)] no-grad log-probs of every trained row (old policy, or the base with reference=True)."""
        parts = self.backoff.map("logprobs", len(work.rows), partial(self._logps_part, work, reference))
        return [t for chunk in parts for t in chunk]

    def _logps_part(self, work: "_UpdateRows", reference: bool, s: int, e: int) -> list:
        """rows[s:e]'s log-probs without gradient: the old policy's, or with reference=True the adapter-free
        base's (its distinct prompts run once, as in the training forward)."""
        rows = work.padded(s, e, self.pad_id, self.device)
        adapter_off = self.model.disable_adapter() if reference else contextlib.nullcontext()
        with torch.no_grad(), adapter_off:
            shared = self._shared_prompts(work, s, e)
            prompts = None if shared is None else shared.for_rows(work.prompts(s, e))
            lp = completion_logprobs(self.model, rows, prompts=prompts, **self._logprob_kwargs())  # (b, T)
        return [lp[j, :n] for j, n in enumerate(work.lengths[s:e])]

    def _micro_step(self, work: "_UpdateRows", old, ref, s: int, e: int) -> tuple[float, float, float]:
        """Forward + backward of rows[s:e] (ordered by length) in up to train.length_buckets consecutive parts,
        each padded to its own longest row, cut where that pads least; with train.share_prompts the distinct
        prompts run once, before the parts. The gradients add up to the whole micro-batch's, with less
        computed. Returns (loss, clip_ratio share, kl share) summed over the parts."""
        bounds = [s + b for b in bucket_bounds(work.lengths[s:e], self._length_buckets())]  # least padding
        shared = self._shared_prompts(work, s, e)  # None: every row runs its own prompt
        sums = [self._bucket_step(work, old, ref, a, b, shared) for a, b in zip(bounds, bounds[1:]) if b > a]
        if shared is not None:  # the parts' gradients on the prompts' states, through the prompts' forward
            shared.backward()
        return tuple(sum(x) for x in zip(*sums))

    def _shared_prompts(self, work: "_UpdateRows", s: int, e: int) -> Optional[SharedPrompts]:
        """train.share_prompts: rows[s:e]'s distinct prompts run once (prompt_sharing.py), when there are
        fewer of them than rows."""
        prompts = work.prompts(s, e)
        if not self._share_prompts or distinct_count(prompts) == len(prompts):
            return None
        try:
            return SharedPrompts(decoder_and_head(self.model)[0], prompts, self.pad_id, self.device)
        except NotRouted as err:
            self._share_prompts = False
            log.warning("train.share_prompts is off for this run (%s): each row runs its own prompt", err)
            return None

    def _length_buckets(self) -> int:
        """train.length_buckets, or by default 4 on CPU (smaller matmuls cost the CPU little per token) and 1
        on CUDA (keep the GPU's matmuls large; not measured there yet)."""
        n = self.cfg.train.length_buckets
        return n if n is not None else (4 if self.device.type == "cpu" else 1)

    def _bucket_step(
        self, work: "_UpdateRows", old, ref, s: int, e: int, shared: Optional[SharedPrompts] = None
    ) -> tuple[float, float, float]:
        """Forward + backward of rows[s:e]; the loss is already divided by the whole step's normalizer."""
        g = self.cfg.gcpo
        rows = work.padded(s, e, self.pad_id, self.device)
        width = rows.completion_ids.shape[1]
        eps_low, eps_high = self.cfg.resolved_epsilons()
        old_lp = None if old is None else _stack(old, s, e, width, self.device)  # None: on-policy
        advantages = work.batch.advantages[work.rows[s:e]].to(self.device)
        loss_kw = dict(
            ref_per_token_logps=None if ref is None else _stack(ref, s, e, width, self.device),
            importance_sampling_level=g.importance_sampling_level,
            epsilon_low=eps_low,
            epsilon_high=eps_high,
            beta=g.beta,
            loss_type=g.loss_type,
            max_completion_length=g.max_completion_length,
            normalizer=work.normalizer,
        )
        prompts = None if shared is None else shared.for_rows(work.prompts(s, e))  # (b rows') prompt states
        lp_kw = dict(self._logprob_kwargs(), prompts=prompts)
        if self.cfg.train.fused_loss:  # hidden states -> loss in one op (kernels.gcpo_loss_from_hidden)
            loss, m = completion_loss(self.model, rows, old_lp, advantages, **lp_kw, **loss_kw)
        else:  # the composition: per-token log-probs, then the loss
            lp = completion_logprobs(self.model, rows, **lp_kw)  # (b, T)
            loss, m = gcpo_loss(
                lp, lp.detach() if old_lp is None else old_lp, advantages, rows.completion_mask, **loss_kw
            )
        loss.backward()
        share = work.share(s, e)  # this micro-batch's weight in the step's clip / KL means
        return loss.item(), m["clip_ratio"].item() * share, m["kl"].item() * share

    # ------------------------------------------------------------ eval
    def evaluate(self, examples: Optional[list[Example]] = None) -> float:
        """Held-out accuracy at train.eval_temperature (greedy by default), one completion per prompt; under
        torchrun each rank answers its share (every rank-th prompt) and the counts are summed."""
        examples = self.eval_examples if examples is None else examples
        if not examples:
            return float("nan")
        mine = examples[self.world.rank :: self.world.size]
        correct = 0
        if mine:
            prompts = [self._prompt(ex) for ex in mine]
            completions, _ = self.generate(
                prompts, self.cfg.train.eval_temperature, self.cfg.gcpo.max_completion_length
            )
            self._between_phases()
            texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
            correct = sum(self.rewards.correct(t, ex) for t, ex in zip(texts, mine))
        return self.world.all_sum([correct])[0] / len(examples)

    # ------------------------------------------------------------ loop
    def train(self) -> dict:
        """Step until train.max_steps (or max_minutes, or a signal), then evaluate, save the adapter and a final
        checkpoint. Returns the last metrics row."""
        t = self.cfg.train
        ckpt, sinks, bar = self._start_run()
        start, last = time.time(), {}
        with ckpt.signals(), self._metrics_log() as log:
            if t.eval_steps and self.step == 0:
                last = log.write({"step": 0, "eval_accuracy": self.evaluate()})
            while self.step < t.max_steps and not self._out_of_time(start):
                ckpt.begin_step()
                batch, row = self._train_step(start)
                last = log.write(row, batch=batch, sinks=sinks, bar=bar)
                if ckpt.end_step():  # True after SIGINT/SIGTERM: checkpoint written, stop here
                    break
        return self._finish(ckpt, sinks, bar, last)

    def _start_run(self):
        """Lock the run directory, record the config and plan; (checkpointer, metric sinks, progress bar)."""
        from gcpo_lite.run.checkpoints import Checkpointer
        from gcpo_lite.run.directory import lock_run_dir
        from gcpo_lite.run.reporting import ProgressBar, Reporters, reset_peak_memory

        reset_peak_memory(self.device)  # metrics' peak_memory_bytes: each step's own, not the model load's
        if self.world.is_main:  # under torchrun, rank 0 alone writes the run directory
            lock_run_dir(self.out_dir)  # re-entrant: the CLI already holds it; a second process fails here
            save_config(self.cfg, self.out_dir / "config.yaml")
            (self.out_dir / "plan.json").write_text(json.dumps(self.plan.to_dict(), indent=1, default=str))
        ckpt = Checkpointer(self)  # saves every train.save_steps, at the end, and on SIGINT/SIGTERM
        sinks = Reporters(self.cfg, self.out_dir, resume_step=self.step, enabled=self.world.is_main)
        bar = ProgressBar(self.cfg.train.max_steps, initial=self.step) if self.progress else None
        return ckpt, sinks, bar

    def _out_of_time(self, start: float) -> bool:
        limit = self.cfg.train.max_minutes
        if limit is None or not self.world.any((time.time() - start) / 60 >= limit):  # torchrun: any rank
            return False
        self.echo(f"stopping at step {self.step}: train.max_minutes={limit} reached")
        return True

    def _train_step(self, start: float) -> tuple[StepBatch, dict]:
        """One step: rollout, update, and its metrics row (with eval_accuracy on eval steps and the last)."""
        from gcpo_lite.run.reporting import step_extras

        t = self.cfg.train
        t0 = time.time()
        self.backoff.step = self.step + 1  # OOM backoff events name the step they happened in
        batch = self.rollout(self.next_examples(self.prompts_per_rank))
        self._between_phases()
        t1 = time.time()
        upd = self.update(batch)
        self._between_phases()
        self.step += 1
        t2 = time.time()
        # the policy's own tokens (gold rows are not generated), dropped dynamic-sampling groups included
        tokens = batch.metrics.get("generated_tokens", batch.metrics["sampled_tokens"])
        row = {
            "step": self.step,
            **batch.metrics,
            **upd,
            "lr": self.lr_schedule.get_last_lr()[0],
            "rollout_s": t1 - t0,
            "update_s": t2 - t1,
            "tokens_per_s": tokens / max(1e-9, t2 - t0),
            "elapsed_s": time.time() - start,
            **self._reduced(step_extras(self), maxed=("peak_memory_bytes", "peak_reserved_bytes")),
            "oom_backoffs": int(self.world.all_sum([len(self.plan.backoffs)])[0]),
        }
        if (t.eval_steps and self.step % t.eval_steps == 0) or self.step >= t.max_steps:
            row["eval_accuracy"] = self.evaluate()
        return batch, row

    def _reduced(self, extras: dict, maxed: tuple) -> dict:
        """extras with the `maxed` keys it has replaced by their largest value over the torchrun ranks."""
        keys = [k for k in maxed if k in extras]
        if not self.world.distributed or not keys:
            return extras
        return {**extras, **dict(zip(keys, map(int, self.world.all_max([extras[k] for k in keys]))))}

    def _finish(self, ckpt, sinks, bar, last: dict) -> dict:
        if bar is not None:
            bar.close()
        if ckpt.stop_requested:  # interrupted: resume with `gcpo-lite train --resume RUN_DIR`
            sinks.close()
            self.interrupted = ckpt.interrupted_by
            return last
        if "eval_accuracy" not in last:  # stopped by max_minutes between eval steps
            last["eval_accuracy"] = self.evaluate()
            with self._metrics_log() as log:
                log.write({"step": self.step, "eval_accuracy": last["eval_accuracy"]})
        if self.world.is_main:
            self.save_adapter(self.out_dir / "adapter")
        ckpt.save_final()
        sinks.close()
        return last

    @contextlib.contextmanager
    def _metrics_log(self):
        """The one writer of metrics.jsonl (and completions.jsonl), appending; under torchrun rank 0's (the
        rows hold the whole job's figures), the other ranks' go nowhere."""
        where = (self.out_dir / "metrics.jsonl", self.out_dir / "completions.jsonl")
        with (
            open(where[0] if self.world.is_main else os.devnull, "a") as mf,
            open(where[1] if self.world.is_main else os.devnull, "a") as cf,
        ):
            yield _MetricsLog(self, mf, cf)

    def save_adapter(self, path: Path) -> None:
        self.model.save_pretrained(str(path), safe_serialization=True)
        self.tokenizer.save_pretrained(str(path))
