"""One training session, the one code path of `gcpo-lite train` and of GCPOTrainer.train().

Joins torchrun's job when there is one, locks (and for a new run prepares) the run directory, finds the
checkpoint to resume from, says what trains and with which rewards, builds the Trainer, trains, and on a
signal says how to continue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

from gcpo_lite.config import Config
from gcpo_lite.train.inputs import RunInputs
from gcpo_lite.train.run_config import REAL_MODEL_DATASET


@dataclass
class Session:
    """How to run one training: the config, the objects handed over, and the run directory's rules."""

    cfg: Config
    inputs: RunInputs = field(default_factory=RunInputs)
    resume: Optional[str] = None  # a run directory to continue in place
    overwrite: bool = False  # a non-empty output_dir is moved aside first
    progress: bool = True
    embedded: bool = False  # the embedded default run (no config, model or dataset named)
    config_file: Optional[str] = None  # --config, kept out of the way of --overwrite
    dataset_named: bool = True  # the dataset was named (not the real-model default)
    say: Callable[[str], None] = print


@dataclass
class Outcome:
    """What a session ended with: the trainer, its last metrics row, and the exit code (0; 130 / 143 after
    SIGINT / SIGTERM)."""

    trainer: object
    last: dict
    code: int


def run_session(session: Session) -> Outcome:
    """Train as `session` says, under torchrun when launched by it."""
    from gcpo_lite.run.distributed import init_world

    world = init_world(session.cfg.train.device)  # under torchrun: join the job (a single process otherwise)
    try:
        outcome = _train(session, world)
    except BaseException:
        world.close()  # a rank that failed must not wait for the others: they learn of it as PeerFailed
        raise
    world.close(together=True)
    return outcome


def _train(session: Session, world) -> Outcome:
    say = _speaker(world, session.say)
    cfg = session.cfg
    resume_from = _resume_point(session, world, say)
    if resume_from is not None:  # another number of processes: said before the batch split is checked
        from gcpo_lite.run.checkpoints import check_process_count

        check_process_count(resume_from, world)
    _announce(session, world, say)
    trainer = _make_trainer(session, world)
    cfg = trainer.cfg  # the effective config (a planner-chosen G, the allocator the run got)
    say(
        f"model {trainer.resolved.display} on {trainer.device} | kernels: {trainer.kernel_backend} | "
        f"{cfg.prompts_per_step} prompts x {cfg.gcpo.num_generations} completions per step | "
        f"gold injection: {_gold_note(trainer)}"
    )
    say(f"rewards: {trainer.rewards.describe()}")
    if session.resume:
        from gcpo_lite.run.checkpoints import load_checkpoint, resume_note

        say(resume_note(resume_from))
        load_checkpoint(trainer, resume_from, restore_logs=world.is_main)
    last = trainer.train()
    if getattr(trainer, "interrupted", None):
        return Outcome(trainer, last, _stopped(trainer, cfg, world, say))
    _done(trainer, cfg, last, say)
    return Outcome(trainer, last, 0)


def _gold_note(trainer) -> str:
    """gcpo.gold_injection, or why a run trains as plain GRPO: its data has no reference solutions."""
    mode = trainer.cfg.gcpo.gold_injection
    if mode != "never" and not trainer.has_gold:
        return (
            f"none: the training data has no reference solutions, so this run trains as plain GRPO "
            f"(gcpo.gold_injection={mode} needs a solution column: --solution-field COLUMN)"
        )
    return mode


def _done(trainer, cfg, last: dict, say) -> None:
    acc = last.get("eval_accuracy")
    if not trainer.eval_examples:
        say(
            f"done: {trainer.step} steps; no held-out set (data.eval_size={cfg.data.eval_size}), so no held-out "
            "accuracy"
        )
    else:
        say(f"done: {trainer.step} steps" + (f", held-out accuracy {acc:.1%}" if acc is not None else ""))
    say(f"run directory: {cfg.train.output_dir} (adapter/, config.yaml, metrics.jsonl, completions.jsonl)")


def _speaker(world, say):
    """say(line): under torchrun rank 0 speaks for the job; the other ranks log warnings and errors only."""
    if not world.is_main:
        logging.getLogger().setLevel(logging.WARNING)

    def speak(line: str) -> None:
        if world.is_main:
            say(line)

    return speak


def _prepare_run_dir(session: Session, say):
    """Lock (and for a new run, prepare) the run directory; the checkpoint to resume from, or None."""
    from gcpo_lite.run.directory import lock_run_dir, prepare_new_run, remove_stale_temporaries

    cfg, resume_from = session.cfg, None
    if session.resume:  # locked before anything loads: a second run fails at once
        lock_run_dir(cfg.train.output_dir)
        from gcpo_lite.run.checkpoints import find_checkpoint

        resume_from = find_checkpoint(session.resume, echo=lambda s: say(f"gcpo-lite: {s}"))
    else:
        inputs = {"config file": session.config_file, "dataset": cfg.data.dataset, "model": cfg.model.name}
        prepare_new_run(cfg.train.output_dir, overwrite=session.overwrite, inputs=inputs)
    stale = remove_stale_temporaries(cfg.train.output_dir)
    if stale:
        say(f"gcpo-lite: removed {len(stale)} unfinished checkpoint folder(s) left by an interrupted run")
    return resume_from


def _resume_point(session: Session, world, say):
    """The checkpoint to resume from, or None; rank 0 locks (and for a new run prepares) the run directory."""
    if world.is_main:
        return _prepare_run_dir(session, say)
    from gcpo_lite.run.checkpoints import find_checkpoint

    # rank 0 alone locks and prepares the run directory; the others read the same checkpoint
    return find_checkpoint(session.resume) if session.resume else None


def _announce(session: Session, world, say) -> None:
    """What is about to train, and how many processes share it."""
    cfg = session.cfg
    if world.distributed:
        say(
            f"gcpo-lite: {world.size} processes ({world.backend}), {cfg.train.batch_size // world.size} "
            f"completions each per step"
        )
    if session.resume:
        say(f"gcpo-lite: resuming {cfg.train.output_dir}")
    elif session.embedded:
        say(
            "gcpo-lite: no --config/--model/--dataset given: training the embedded default "
            "(a tiny Qwen2 base with partial skill, 4-bit NF4 + LoRA, built-in task 'addition', G=4, offline)"
        )
    else:
        model = cfg.model.name or "the embedded tiny model"
        data = "train_dataset" if session.inputs.train_dataset is not None else cfg.data.dataset or "addition"
        say(f"gcpo-lite: training {model} on {data}{_dataset_note(session)} -> {cfg.train.output_dir}")


def _dataset_note(session: Session) -> str:
    cfg = session.cfg
    if not session.dataset_named and cfg.data.dataset == REAL_MODEL_DATASET and cfg.model.name:
        return " (no --dataset given: gsm8k, the default for real models; the built-in tasks are for the embedded one)"
    return ""


def _make_trainer(session: Session, world):
    from gcpo_lite.train.trainer import Trainer

    try:
        return Trainer(
            session.cfg, progress=session.progress, world=world, inputs=session.inputs, echo=session.say
        )
    except BaseException:
        if not session.resume and world.is_main:  # a bad model, dataset or option: leave no empty run behind
            from gcpo_lite.run.directory import abandon_if_empty

            abandon_if_empty(session.cfg.train.output_dir)
        raise


def _stopped(trainer, cfg, world, say) -> int:
    """After SIGINT/SIGTERM: how to continue the run; the exit code the signal calls for."""
    again = "gcpo-lite train"
    if world.distributed:  # the same launch, with the same number of processes
        nodes = "" if world.size == world.local_size else " --nnodes ... (the same launch flags)"
        again = f"torchrun{nodes} --nproc-per-node {world.local_size} -m gcpo_lite train"
    say(
        f"stopped by {trainer.interrupted} after step {trainer.step}; continue with: "
        f"{again} --resume {cfg.train.output_dir}"
    )
    return 130 if trainer.interrupted == "SIGINT" else 143
