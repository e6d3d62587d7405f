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
