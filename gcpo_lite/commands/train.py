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
from gcpo_lite.train.run_config import resumed_config, run_config

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
    p.add_argument(
        "--reward-fn",
        action="append",
        metavar="FN",
        help="a reward function, repeatable (reward.functions): a built-in (math, math_verify, last_integer, "
        "format, auto) or your own in TRL's convention as FILE.py:NAME or package.module:NAME; weights go in "
        "reward.weights=[1.0,0.2]",
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
    """`gcpo-lite train`: the same session GCPOTrainer.train() runs (api/session.py), from flags."""
    if getattr(args, "resume", None) and getattr(args, "overwrite", False):
        raise ConfigError(
            "--resume continues a run and --overwrite starts a new one (moving the old aside); pass one"
        )
    cfg, embedded = config_from_args(args)
    from gcpo_lite.api.session import Session, run_session

    session = Session(
        cfg,
        resume=getattr(args, "resume", None),
        overwrite=getattr(args, "overwrite", False),
        progress=not args.no_progress,
        embedded=embedded,
        config_file=args.config,
        dataset_named=getattr(args, "dataset", None) is not None,
        say=lambda line: print(line, flush=True),
    )
    return run_session(session).code
