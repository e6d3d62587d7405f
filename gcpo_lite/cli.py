"""`gcpo-lite` command line: train | eval | plan | export | plot | doctor | build-ext.

Each subcommand lives in a module with `add_arguments(parser)` and `run(args) -> int`;
COMMANDS maps names to modules, imported only when that command runs.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import warnings

COMMANDS: dict[str, tuple[str, str]] = {  # name -> (module, one-line help)
    "train": (
        "gcpo_lite.commands.train",
        "train a LoRA adapter with GCPO (no arguments: the offline embedded demo)",
    ),
    "eval": (
        "gcpo_lite.commands.evaluate",
        "score a model (+ adapter) on a dataset: accuracy (mean@k), pass@k, per-sample JSONL",
    ),
    "export": (
        "gcpo_lite.commands.export",
        "write a run's adapter (PEFT) + tokenizer + model card; --merge for a full model; --push-to-hub",
    ),
    "plot": (
        "gcpo_lite.commands.plot",
        "PNG curves of a run: reward, accuracy, gold rate, loss, lengths (needs matplotlib)",
    ),
    "doctor": (
        "gcpo_lite.commands.doctor",
        "check versions, CUDA/GPU memory, bitsandbytes, kernel backend, disk space",
    ),
    "build-ext": (
        "gcpo_lite.commands.build_ext",
        "compile the native kernels now (JIT, cached) and say whether they load",
    ),
    "plan": (
        "gcpo_lite.commands.plan",
        "memory plan: per-component prediction and the batch sizes that fit a budget (offline)",
    ),
}


def quiet_libraries() -> None:
    """Keep library chatter (progress bars for weight loading, deprecation notes) out of the run's output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings(
        "ignore", category=UserWarning, module=r"(torch|transformers|peft|bitsandbytes)\b.*"
    )
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gcpo-lite", description="Low-resource GCPO trainer for small reasoning LLMs."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(mod.__doc__ or help_text).strip().splitlines()[0],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args_in = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_in  # anywhere on the line: keep tracebacks instead of one-sentence errors
    args_in = [a for a in args_in if a != "--debug"]
    command = args_in[0] if args_in and not args_in[0].startswith("-") else "gcpo-lite"
    try:
        return _dispatch(args_in)
    except KeyboardInterrupt:
        print(f"gcpo-lite {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = user_error(e)
        if message is None or debug:
            raise
        print(f"gcpo-lite {command}: error: {message}", file=sys.stderr)
        return 2


def _dispatch(args_in: list[str]) -> int:
    if args_in[:1] == ["plan"]:  # offline and < 2 s: skip importing torch / transformers for the parser
        from gcpo_lite.commands.plan import main as plan_main

        return plan_main(args_in[1:])
    quiet_libraries()
    parser = build_parser()
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    args = parser.parse_args(args_in)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return int(args._module.run(args) or 0)


def _is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno == errno.ENOSPC


def user_error(e: BaseException) -> str | None:
    """The one-sentence message for an error the user can fix, or None for a bug (keep its traceback)."""
    from gcpo_lite.config import ConfigError

    if isinstance(e, ConfigError):  # every error a user has to fix subclasses it, and says how
        return str(e)
    if _is_disk_full(e):
        where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
        return (
            f"no space left on device{where}; free some space or choose another --output-dir "
            "(a run resumes from its last checkpoint with --resume)"
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
