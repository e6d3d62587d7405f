"""The CLI imports only the chosen command's module: `gcpo-lite --help` lists the commands from cli.COMMANDS
alone, and `gcpo-lite plan` or `gcpo-lite train --help` load no other command (each in a fresh process)."""

import subprocess
import sys

import pytest

from gcpo_lite.cli import COMMANDS, build_parser

COMMAND_MODULES = {module for module, _ in COMMANDS.values()}


def command_modules_after(code: str) -> set[str]:
    """The command modules a fresh interpreter holds after running `code` (SystemExit from --help is fine)."""
    script = (
        "import sys\n"
        "from gcpo_lite.cli import build_parser, main\n"
        f"try:\n    {code}\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split()) & COMMAND_MODULES


def test_top_level_help_imports_no_command():
    assert command_modules_after("main(['--help'])") == set()
    assert command_modules_after("build_parser()") == set()


@pytest.mark.parametrize(
    "code, module",
    [
        ("main(['plan', '--memory-budget', '8GiB', '--json'])", "gcpo_lite.commands.plan"),
        ("build_parser().parse_args(['plan', '--json'])", "gcpo_lite.commands.plan"),
        ("main(['train', '--help'])", "gcpo_lite.commands.train"),
        ("main(['build-ext', '--help'])", "gcpo_lite.commands.build_ext"),
    ],
)
def test_a_command_imports_only_its_own_module(code, module):
    assert command_modules_after(code) == {module}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_declares_its_arguments(name, capsys):
    """What building every parser up front used to check: each module imports and its --help prints."""
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([name, "--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith(f"usage: gcpo-lite {name} ")
    assert len(help_text.splitlines()) > 3  # a description and the command's own options


def test_a_parser_parses_more_than_once():
    """A test or benchmark that keeps one parser declares a command's arguments once, however often it parses."""
    parse = build_parser().parse_args
    assert parse(["plan", "--lora-r", "8"]).lora_r == 8
    assert parse(["plan", "--lora-r", "4"]).lora_r == 4


def test_overrides_may_sit_between_flags():
    """Issue 28: users type overrides anywhere on the line, not only after the last flag."""
    args = build_parser().parse_args(["train", "train.seed=1", "--max-steps", "3", "gcpo.num_generations=4"])
    assert args.max_steps == 3
    assert args.overrides == ["train.seed=1", "gcpo.num_generations=4"]
    args = build_parser().parse_args(["plan", "lora.r=8", "--json", "train.batch_size=16"])
    assert args.json and args.overrides == ["lora.r=8", "train.batch_size=16"]


def test_an_unknown_flag_between_overrides_is_still_refused(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train", "a.b=1", "--bogus", "c.d=2"])
    assert e.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


SLOW_EXIT = """\
import atexit, os, signal, sys, time
import gcpo_lite.commands.plan as plan
from gcpo_lite.cli import main

atexit.register(time.sleep, 3)  # a library's slow cleanup at exit: a second Ctrl-C lands in it


def interrupted(args):
    os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C
    time.sleep(5)


plan.run = interrupted
sys.argv = ["gcpo-lite", "plan"]
sys.exit(main())
"""


def test_a_second_ctrl_c_while_exiting_prints_no_traceback(tmp_path):
    """Issue 28: Ctrl-C twice, 50 ms apart: the second one lands in the exit's atexit callbacks."""
    import signal
    import time

    script = tmp_path / "slow_exit.py"
    script.write_text(SLOW_EXIT)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = proc.stderr.readline()  # "gcpo-lite plan: interrupted": main has returned, atexit runs next
    assert "interrupted" in line, line
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert proc.returncode in (130, -signal.SIGINT), err


LOST_IN_A_FINALIZER = """\
import os, signal, sys, time
import gcpo_lite.commands.plan as plan
from gcpo_lite.cli import main


class Finalized:
    def __del__(self):  # the Ctrl-C lands here, as it can in a library's finalizer while a model loads
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):
            pass


def runs_on(args):
    Finalized()
    for _ in range(100):
        time.sleep(0.05)
    print("finished regardless")
    return 0


plan.run = runs_on
sys.argv = ["gcpo-lite", "plan"]
sys.exit(main())
"""


def test_a_ctrl_c_that_lands_in_a_finalizer_still_stops(tmp_path):
    """Python drops a KeyboardInterrupt raised in a __del__ ("Exception ignored in: ..."): the command ran on."""
    script = tmp_path / "finalizer.py"
    script.write_text(LOST_IN_A_FINALIZER)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "finished regardless" not in done.stdout
    assert done.returncode == 130 and "gcpo-lite plan: interrupted" in done.stderr, done.stderr
