"""Train a LoRA adapter with GCPO.

With no --config, --model or --dataset, trains the embedded default offline: a tiny Qwen2 model with
partial skill (created and briefly pretrained on first use, then cached) on the built-in two-digit addition task.
Every config key can be set as a dotted override, e.g. `gcpo.num_generations=4`.
"""

from __future__ import annotations

import argparse
import textwrap

from gcpo_lite.commands.flags import flag_overrides
from gcpo_lite.config import ConfigError, describe_options
from gcpo_lite.train.run_config import REAL_MODEL_DATASET, resumed_config, run_config

RUN_DIR_NOTE = """\
the run directory: one run writes it at a time (an exclusive lock, RUN_DIR/.lock, released when the
process ends, however it ends); a second run into it fails at once. Without --resume, a directory that
already holds a run (or any files) is refused unless --overwrite, which moves it aside to DIR.old-DATE
(refused when it holds the dataset, config file or model of the run). --resume continues the run in place
from the newest intact checkpoint, skipping damaged ones with a line saying why. Checkpoints: every
train.save_steps steps, else every train.save_minutes (default 10) of wall time, at the end, on Ctrl-C."""


def _options_epilog() -> str:
    lines = [RUN_DIR_NOTE, "", "config keys (set in YAML or as section.key=value overrides):"]
    for key, default, comment in describe_options():
        lines.append(f"  {key} = {default}")
        lines += textwrap.wrap(comment, 88, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _add_what_to_train(p)
    _add_run_options(p)
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    p.epilog = _options_epilog()


def _add_what_to_train(p: argparse.ArgumentParser) -> None:
    """The model, the data and its columns."""
    p.add_argument("--config", metavar="FILE", help="YAML config mirroring the sections below (see configs/)")
    p.add_argument(
        "--model",
        help="registry short name (qwen2.5-1.5b, ...), hub id or local path "
        "(sets model.name; omitted: the embedded tiny model)",
    )
    p.add_argument(
        "--dataset",
        help="built-in task (addition), hub id or local .jsonl/.json/.csv/.parquet (sets data.dataset)",
    )
    p.add_argument("--prompt-field", help="dataset column with the question (data.prompt_field)")
    p.add_argument("--answer-field", help="dataset column with the final answer (data.answer_field)")
    p.add_argument(
        "--solution-field", help="dataset column with the reference solution (data.solution_field)"
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The run: where it goes, how long, resuming, checkpoints and reporting."""
    p.add_argument("--output-dir", metavar="DIR", help="run directory (train.output_dir)")
    p.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps (train.max_steps)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed (train.seed)")
    p.add_argument(
        "--no-quantize", action="store_true", help="load the base in bf16/fp32 instead of 4-bit NF4"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per eval instead)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue RUN_DIR in place from its latest checkpoint, with its "
        "config.yaml (flags and overrides still apply, e.g. train.max_steps=400 to extend it)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train into an --output-dir that already holds a "
        "run or other files: its contents are first moved aside to DIR.old-DATE (never deleted)",
    )
    p.add_argument(
        "--save-steps",
        type=int,
        metavar="N",
        help="checkpoint every N steps (train.save_steps; 0: every train.save_minutes)",
    )
    p.add_argument(
        "--report-to",
        metavar="SINKS",
        help="tensorboard, wandb or tensorboard,wandb (train.report_to; needs that package)",
    )


def _dataset_note(args: argparse.Namespace, cfg) -> str:
    if getattr(args, "dataset", None) is None and cfg.data.dataset == REAL_MODEL_DATASET and cfg.model.name:
        return " (no --dataset given: gsm8k, the default for real models; the built-in tasks are for the embedded one)"
    return ""


def config_from_args(args: argparse.Namespace):
    """(Config, used_embedded_default) from --config / flags / overrides (train.run_config does the work)."""
    overrides = flag_overrides(args) + list(args.overrides)
    if getattr(args, "resume", None):
        if args.config or args.model or args.dataset:
            raise ConfigError(
                "--resume takes the run's config.yaml; drop --config/--model/--dataset "
                "(overrides like train.max_steps=N still apply)"
            )
        cfg, changed = resumed_config(args.resume, overrides)
        if changed:
            print(
                f"gcpo-lite: note: resuming with changed {', '.join(changed)}; metrics will not match an "
                "uninterrupted run",
                flush=True,
            )
        return cfg, False
    return run_config(args.config, args.model, args.dataset, overrides)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "resume", None) and getattr(args, "overwrite", False):
        raise ConfigError(
            "--resume continues a run and --overwrite starts a new one (moving the old aside); pass one"
        )
    cfg, embedded = config_from_args(args)
    from gcpo_lite.run.distributed import init_world

    world = init_world(cfg.train.device)  # under torchrun: join the job (a single process otherwise)
    try:
        code = _train(args, cfg, embedded, world)
    except BaseException:
        world.close()  # a rank that failed must not wait for the others: they learn of it as PeerFailed
        raise
    world.close(together=True)
    return code


def _prepare_run_dir(args: argparse.Namespace, cfg, say):
    """Lock (and for a new run, prepare) the run directory; the checkpoint to resume from, or None."""
    from gcpo_lite.run.directory import lock_run_dir, prepare_new_run, remove_stale_temporaries

    resume_from = None
    if getattr(args, "resume", None):  # locked before anything loads: a second run fails at once
        lock_run_dir(cfg.train.output_dir)
        from gcpo_lite.run.checkpoints import find_checkpoint

        resume_from = find_checkpoint(args.resume, echo=lambda s: say(f"gcpo-lite: {s}"))
    else:
        inputs = {"config file": args.config, "dataset": cfg.data.dataset, "model": cfg.model.name}
        prepare_new_run(cfg.train.output_dir, overwrite=getattr(args, "overwrite", False), inputs=inputs)
    stale = remove_stale_temporaries(cfg.train.output_dir)
    if stale:
        say(f"gcpo-lite: removed {len(stale)} unfinished checkpoint folder(s) left by an interrupted run")
    return resume_from


def _train(args: argparse.Namespace, cfg, embedded: bool, world) -> int:
    say = _speaker(world)
    resume_from = _resume_point(args, cfg, world, say)
    if resume_from is not None:  # another number of processes: said before the batch split is checked
        from gcpo_lite.run.checkpoints import check_process_count

        check_process_count(resume_from, world)
    _announce(args, cfg, embedded, world, say)
    trainer = _make_trainer(args, cfg, world)
    cfg = trainer.cfg  # the effective config (a planner-chosen G, the allocator the run got)
    say(
        f"model {trainer.resolved.display} on {trainer.device} | kernels: {trainer.kernel_backend} | "
        f"{cfg.prompts_per_step} prompts x {cfg.gcpo.num_generations} completions per step | "
        f"gold injection: {cfg.gcpo.gold_injection}"
    )
    if getattr(args, "resume", None):
        from gcpo_lite.run.checkpoints import load_checkpoint, resume_note

        say(resume_note(resume_from))
        load_checkpoint(trainer, resume_from, restore_logs=world.is_main)
    last = trainer.train()
    if getattr(trainer, "interrupted", None):
        return _stopped(trainer, cfg, world, say)
    acc = last.get("eval_accuracy")
    if not trainer.eval_examples:
        say(
            f"done: {trainer.step} steps; no held-out set (data.eval_size={cfg.data.eval_size}), so no held-out "
            "accuracy"
        )
    else:
        say(f"done: {trainer.step} steps" + (f", held-out accuracy {acc:.1%}" if acc is not None else ""))
    say(f"run directory: {cfg.train.output_dir} (adapter/, config.yaml, metrics.jsonl, completions.jsonl)")
    return 0


def _speaker(world):
    """say(line): under torchrun rank 0 speaks for the job; the other ranks log warnings and errors only."""
    import logging

    if not world.is_main:
        logging.getLogger().setLevel(logging.WARNING)

    def say(line: str) -> None:
        if world.is_main:
            print(line, flush=True)

    return say


def _resume_point(args: argparse.Namespace, cfg, world, say):
    """The checkpoint to resume from, or None; rank 0 locks (and for a new run prepares) the run directory."""
    if world.is_main:
        return _prepare_run_dir(args, cfg, say)
    from gcpo_lite.run.checkpoints import find_checkpoint

    # rank 0 alone locks and prepares the run directory; the others read the same checkpoint
    return find_checkpoint(args.resume) if getattr(args, "resume", None) else None


def _announce(args: argparse.Namespace, cfg, embedded: bool, world, say) -> None:
    """What is about to train, and how many processes share it."""
    if world.distributed:
        say(
            f"gcpo-lite: {world.size} processes ({world.backend}), {cfg.train.batch_size // world.size} "
            f"completions each per step"
        )
    if getattr(args, "resume", None):
        say(f"gcpo-lite: resuming {cfg.train.output_dir}")
    elif embedded:
        say(
            "gcpo-lite: no --config/--model/--dataset given: training the embedded default "
            "(a tiny Qwen2 base with partial skill, 4-bit NF4 + LoRA, built-in task 'addition', G=4, offline)"
        )
    else:
        say(
            f"gcpo-lite: training {cfg.model.name or 'the embedded tiny model'} on "
            f"{cfg.data.dataset or 'addition'}{_dataset_note(args, cfg)} -> {cfg.train.output_dir}"
        )


def _make_trainer(args: argparse.Namespace, cfg, world):
    from gcpo_lite.train.trainer import Trainer

    try:
        return Trainer(cfg, progress=not args.no_progress, world=world)
    except BaseException:
        fresh = not getattr(args, "resume", None)
        if fresh and world.is_main:  # a bad model, dataset or option: leave no empty run behind
            from gcpo_lite.run.directory import abandon_if_empty

            abandon_if_empty(cfg.train.output_dir)
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
