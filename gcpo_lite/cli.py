"""`gcpo-lite` command line: train | eval | plan | export | plot | doctor | build-ext.

Each subcommand lives in a module with `add_arguments(parser)` and `run(args) -> int`;
COMMANDS maps names to modules and one-line helps. A module is imported only when its command is
chosen: `gcpo-lite --help` lists the commands from COMMANDS alone, and `gcpo-lite plan ...` imports
commands/plan.py and no other command (nor torch).
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
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
    """Keep library chatter (progress bars for weight loading, deprecation notes) out of the run's output.

    Imports no library (a command that loads none, like plan, stays fast): one not loaded yet reads these
    settings from the environment when it is; one already loaded is set directly."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # transformers' own bars follow the hub's setting
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings(
        "ignore", category=UserWarning, module=r"(torch|transformers|peft|bitsandbytes)\b.*"
    )
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        if "huggingface_hub" in sys.modules:
            sys.modules["huggingface_hub"].utils.disable_progress_bars()
        if "transformers" in sys.modules:
            transformers = sys.modules["transformers"]
            transformers.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass


class _CommandParsers(argparse._SubParsersAction):
    """The subcommands, each declaring its arguments only once it is chosen: parsing `plan ...` imports
    commands/plan.py and no other command module. (argparse has no public hook between choosing a
    subcommand and parsing its arguments; this action is the step that does both.)"""

    def __call__(self, parser, namespace, values, option_string=None):
        name, arg_strings = values[0], values[1:]
        command = self.choices[name]  # argparse has checked the name is a choice
        declare_command(command, name)
        setattr(namespace, self.dest, name)
        # a command taking overrides parses them intermixed with its flags, as users type them: `train a.b=1
        # --max-steps 3 c.d=2` gives [a.b=1, c.d=2] (the others parse as before: their messages are unchanged)
        takes_overrides = any(a.dest == "overrides" for a in command._actions)
        parse = command.parse_known_intermixed_args if takes_overrides else command.parse_known_args
        sub, extras = parse(arg_strings, None)
        for key, value in vars(sub).items():
            setattr(namespace, key, value)
        if extras:  # the top-level parser reports them ("unrecognized arguments: ...")
            vars(namespace).setdefault(argparse._UNRECOGNIZED_ARGS_ATTR, []).extend(extras)


def declare_command(parser: argparse.ArgumentParser, name: str) -> None:
    """Import command `name`'s module and declare its arguments on its subparser (once per parser)."""
    if parser.get_default("_module") is not None:
        return
    module = importlib.import_module(COMMANDS[name][0])
    parser.description = (module.__doc__ or COMMANDS[name][1]).strip().splitlines()[0]
    module.add_arguments(parser)
    parser.set_defaults(_module=module)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; a command's module is imported when a parse chooses it."""
    parser = argparse.ArgumentParser(
        prog="gcpo-lite", description="Low-resource GCPO trainer for small reasoning LLMs."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", action=_CommandParsers)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args_in = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_in  # anywhere on the line: keep tracebacks instead of one-sentence errors
    args_in = [a for a in args_in if a != "--debug"]
    command = args_in[0] if args_in and not args_in[0].startswith("-") else "gcpo-lite"
    program = argv is None  # main runs the process (the console script, python -m gcpo_lite)
    _keep_interrupts(program)
    try:
        return _dispatch(args_in)
    except KeyboardInterrupt:
        _exiting(program)
        print(f"gcpo-lite {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = user_error(e)
        if message is None or debug:
            raise
        print(f"gcpo-lite {command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        _exiting(program)


def _keep_interrupts(program: bool) -> None:
    """A Ctrl-C that lands in a finalizer (a library's __del__ or weakref callback, say while a model loads)
    raises there, where Python drops it with an "Exception ignored in ..." traceback and the command runs on.
    Drop it quietly and interrupt the main thread again, from outside the finalizer. The checkpointer's
    StepInterrupted dropped the same way needs nothing: its stop is recorded (the step ends, then saves)."""
    if not program:
        return
    default = sys.unraisablehook

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, KeyboardInterrupt):
            later = threading.Timer(0.05, _thread.interrupt_main)  # once this hook has returned
            later.daemon = True
            later.start()
        elif type(exc).__name__ != "StepInterrupted":  # by name: run/stop.py imports torch
            default(unraisable)

    sys.unraisablehook = hook


def _exiting(program: bool) -> None:
    """The process is about to exit: from here a Ctrl-C (say the second of a double Ctrl-C) that lands in the
    exit's cleanup (atexit callbacks, finalizers) ends it at once with 130, without the "Exception ignored in
    atexit callback ... KeyboardInterrupt" traceback. Only when main runs the process: a caller's handler
    is left alone."""
    if not program or threading.current_thread() is not threading.main_thread():
        return

    def now(signum, frame):
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(130)

    signal.signal(signal.SIGINT, now)


def _dispatch(args_in: list[str]) -> int:
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


def user_error(e: BaseException) -> str | None:
    """The one-sentence message for an error the user can fix, or None for a bug (keep its traceback)."""
    from gcpo_lite.config import ConfigError
    from gcpo_lite.run.disk import free_space, is_disk_full

    if isinstance(e, ConfigError):  # every error a user has to fix subclasses it, and says how
        return str(e)
    if is_disk_full(e):  # OSError ENOSPC, torch.save's or safetensors' own (training names the file itself)
        file = getattr(e, "filename", None)
        free = free_space(file) if file else None
        where = (f" writing {file}" if file else "") + (f" ({free} free there)" if free else "")
        return (
            f"no space left on device{where}; free some space or choose another --output-dir "
            "(a run resumes from its last checkpoint with --resume)"
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
