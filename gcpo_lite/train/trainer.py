"""The GCPO loop: rollout -> reward -> gold injection -> advantages -> loss -> step -> log.

The trainer is three files: this one (setup, state, the loop read top to bottom), rollout_phase.py (sample,
score, gold, advantages) and update_phase.py (the loss and the optimizer steps). The maths they call is in
gcpo_lite/algorithm/ (pure functions) and gcpo_lite/kernels/ (the loss).

Departures from plain GRPO (each a config option, see gcpo_lite/config/sections.py):
- gold injection: a group with no correct sample gets the reference solution in place of
  its worst sample (lowest reward, then lowest mean log-prob), so it still has a contrast;
- sequence-level importance ratios (GSPO) with tight clip ranges by default;
- no KL term by default (beta = 0); with beta > 0 the reference is the base with the adapter off;
- groups whose advantages are all zero are not forwarded at all when beta = 0 (they carry no gradient).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch

from gcpo_lite import kernels
from gcpo_lite.algorithm.batches import StepBatch
from gcpo_lite.algorithm.gold import Gold, prompt_opens_think
from gcpo_lite.config import Config, save_config
from gcpo_lite.data.datasets import dataset_name, is_builtin, load_examples
from gcpo_lite.data.prompt_stream import PromptStream
from gcpo_lite.data.prompts import eos_token_ids, prompt_ids, suppressed_ids
from gcpo_lite.data.tasks import Example
from gcpo_lite.demo.embedded_model import prepare_model
from gcpo_lite.memory import cpu_allocator
from gcpo_lite.memory.oom import OOMBackoff
from gcpo_lite.memory.planner import make_plan
from gcpo_lite.models import dequantized_base
from gcpo_lite.models.loading import compute_dtype, load_policy, pick_device
from gcpo_lite.models.optimizers import build_optimizer, check_optimizer, lr_factor
from gcpo_lite.rewards.reward_model import build_reward_model
from gcpo_lite.rollout.backends import make_backend
from gcpo_lite.run.checkpoints import full_disk
from gcpo_lite.run.disk import LogFile, is_disk_full, replaced_atomically
from gcpo_lite.run.distributed import World, check_split
from gcpo_lite.train.checkpoint_state import CheckpointState
from gcpo_lite.train.inputs import RunInputs
from gcpo_lite.train.metrics import MetricsLog
from gcpo_lite.train.rollout_phase import RolloutPhase
from gcpo_lite.train.update_phase import UpdatePhase

log = logging.getLogger(__name__)


def _seed_and_threads(seed: int, num_threads) -> None:
    """Seed python's and torch's random streams; set torch's CPU threads (when given)."""
    random.seed(seed)
    torch.manual_seed(seed)
    if num_threads:
        torch.set_num_threads(num_threads)


class Trainer(RolloutPhase, UpdatePhase, CheckpointState):
    def __init__(
        self,
        cfg: Config,
        *,
        echo: Callable = print,
        progress: bool = True,
        world: Optional[World] = None,
        inputs: Optional[RunInputs] = None,
    ):
        self.world = world or World()  # under torchrun: this process's rank (distributed.py)
        self.cfg, self.progress = cfg, progress and self.world.is_main
        self.echo = echo if self.world.is_main else (lambda _: None)  # log lines from rank 0 only
        t = cfg.train
        check_split(cfg.prompts_per_step, cfg.gcpo.num_generations, self.world)  # before any per-rank size
        _seed_and_threads(t.seed, t.num_threads)
        self.device = self.world.device(pick_device(t.device))
        self.kernel_backend = kernels.set_backend(t.kernels)
        check_optimizer(t.optimizer, self.device.type)  # before the model loads: a clear error, fast
        inputs = inputs or RunInputs()  # what the Python API hands over in objects instead of names
        self.rewards = build_reward_model(cfg.reward, dataset_name(cfg.data), inputs.reward_funcs)
        self.model, self.tokenizer, self.resolved = self._policy(cfg, inputs)
        train_examples = self._load_data(cfg, inputs)
        self._gold_style(cfg, inputs)
        self._share_prompts = cfg.train.share_prompts  # off for the run if the model cannot (prompt_sharing)
        self.eos_ids = eos_token_ids(self.tokenizer, self.model)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.suppress = suppressed_ids(self.tokenizer, self.eos_ids, cfg.gcpo.suppress_tokens)
        self.suppress_t = torch.tensor(self.suppress, dtype=torch.long, device=self.device)
        if self.device.type == "cpu" and cfg.memory.cpu_allocator == "caching":
            self.cfg = cfg = self._install_cpu_allocator(cfg)
        self.cfg = cfg = self._plan_share(cfg, train_examples + self.eval_examples)
        self._spend_planned_memory()
        oom = dict(enabled=cfg.memory.oom_backoff, release=self._release_dequantized)
        self.backoff = OOMBackoff(self.plan, **oom)  # OOM: dequantized layers go first, then halve the size
        self.optimizer, self.lr_schedule = self._optimizer()
        self.rollout_backend = make_backend(cfg.rollout)  # prompts -> completions + sampling log-probs
        self.out_dir, self.step = Path(t.output_dir), 0
        self._prompt_cache: dict[int, list[int]] = {}
        self._gold_cache: dict[int, Gold] = {}
        self._join_world()

    # ------------------------------------------------------------ helpers
    def _load_data(self, cfg: Config, inputs: RunInputs) -> list[Example]:
        """The training examples (all ranks'); sets eval_examples, has_gold and this rank's prompt stream."""
        train_examples, self.eval_examples = load_examples(
            cfg.data,
            cfg.train.seed,
            tokenizer=self.tokenizer,
            needs_answer=self.rewards.needs_answer,
            train_rows=inputs.train_dataset,
            eval_rows=inputs.eval_dataset,
        )
        self.has_gold = any(ex.solution for ex in train_examples)  # none: the run trains as plain GRPO
        shard = train_examples[self.world.rank :: self.world.size]  # torchrun: each rank its own prompts
        self.prompts = PromptStream(shard, cfg.train.seed, cfg.data.shuffle)  # order, cursor, epoch
        return train_examples

    def _gold_style(self, cfg: Config, inputs: RunInputs) -> None:
        """How gold text is written: a built-in task's solutions as they are; a dataset's checked by a math
        verifier get a final \\boxed{} and, for thinking models, think tags (gold.py); any other verbatim."""
        self._builtin_task = is_builtin(cfg.data) and inputs.train_dataset is None
        rule = self.rewards.rule.function
        self._math_gold = rule.verifier and rule.name in ("math", "math_verify")
        self._opens_think = prompt_opens_think(self.tokenizer)
        self._entropy_sums: Optional[list] = (
            None  # per sequence of the last generate call (None: unavailable)
        )

    def _policy(self, cfg: Config, inputs: RunInputs):
        """(peft model, tokenizer, ResolvedModel): the caller's loaded model, or the one model.name names (the
        embedded model's files are made on first use)."""
        if inputs.model is not None:
            from gcpo_lite.models.adopted import adopt_policy

            return adopt_policy(cfg, inputs.model, inputs.tokenizer, self.device)
        resolved = prepare_model(cfg.model.name)
        model, tokenizer = load_policy(cfg, resolved, self.device)
        return model, inputs.tokenizer or tokenizer, resolved

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
        if cfg.memory.auto_num_generations:  # auto values resolved once: the run's effective config
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
        log.info("memory.cpu_allocator=caching is unavailable: %s; using the system allocator", why)
        return cfg.with_cpu_allocator("system")

    def _spend_planned_memory(self) -> None:
        """What the plan set aside beyond the batch sizes: the dequantized base's layers (speed) and, on CPU,
        the caching allocator's cap (what the plan counts as allocator slack)."""
        if self.plan.dequantized_layers and self.cfg.model.quantize:
            dtype = compute_dtype(self.cfg.model, self.device)
            dequantized_base.attach(self.model, self.plan.dequantized_layers, dtype)
        if self.device.type == "cpu" and self.cfg.memory.cpu_allocator == "caching":
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
        if self.device.type == "cpu" and self.cfg.memory.cpu_allocator == "caching":
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
        schedule = partial(lr_factor, warmup_steps=t.warmup_steps, max_steps=t.max_steps, kind=t.lr_scheduler)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

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
            correct = sum(self.rewards.correct_batch(texts, completions, mine, self.reward_state()))
        return self.world.all_sum([correct])[0] / len(examples)

    # ------------------------------------------------------------ loop
    def train(self) -> dict:
        """Step until train.max_steps (or max_minutes, or a signal), then evaluate, save the adapter and a final
        checkpoint. Returns the last metrics row. A full disk on the way is a DiskFullError (one line)."""
        try:
            return self._train()
        except Exception as e:
            if not is_disk_full(e):
                raise
            raise full_disk(self.out_dir, getattr(e, "filename", None) or self.out_dir) from None

    def _train(self) -> dict:
        t = self.cfg.train
        ckpt, sinks, bar = self._start_run()
        start, last = time.time(), {}
        with ckpt.signals(), self._metrics_log() as log:
            if t.eval_steps and self.step == 0 and self.eval_examples:
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
        from gcpo_lite.run.directory import lock_run_dir
        from gcpo_lite.run.reporting import ProgressBar, Reporters, reset_peak_memory
        from gcpo_lite.run.stop import Checkpointer

        reset_peak_memory(self.device)  # metrics' peak_memory_bytes: each step's own, not the model load's
        if self.world.is_main:  # under torchrun, rank 0 alone writes the run directory
            lock_run_dir(self.out_dir)  # re-entrant: the CLI already holds it; a second process fails here
            with replaced_atomically(self.out_dir / "config.yaml") as tmp:  # a full disk keeps the old one
                save_config(self.cfg, tmp)
            with replaced_atomically(self.out_dir / "plan.json") as tmp:
                tmp.write_text(self.plan.to_json())
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
        eval_step = (t.eval_steps and self.step % t.eval_steps == 0) or self.step >= t.max_steps
        if eval_step and self.eval_examples:  # data.eval_size=0: nothing held out, nothing to report
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
        if "eval_accuracy" not in last and self.eval_examples:  # stopped by max_minutes between eval steps
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
        with (  # LogFile: a full disk names the file
            LogFile(where[0] if self.world.is_main else os.devnull) as mf,
            LogFile(where[1] if self.world.is_main else os.devnull) as cf,
        ):
            yield MetricsLog(self, mf, cf)

    def save_adapter(self, path: Path) -> None:
        self.model.save_pretrained(str(path), safe_serialization=True)
        self.tokenizer.save_pretrained(str(path))
