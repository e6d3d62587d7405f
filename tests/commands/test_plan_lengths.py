"""`gcpo-lite plan` sizes for the completion length `gcpo-lite train` would use with the same flags (a dataset
preset's default unless one is given) and says where it came from."""

import json

import pytest

from gcpo_lite.cli import main
from gcpo_lite.data.presets import PRESETS

GiB = 1 << 30
BUDGET = ["--model", "qwen2.5-1.5b", "--memory-budget", "8GB"]


def plan_json(capsys, *argv) -> dict:
    assert main(["plan", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_presets_length_fits_a_15b_model_in_8gb(capsys, preset):
    d = plan_json(capsys, *BUDGET, "--dataset", preset)
    tokens = PRESETS[preset].max_completion_length
    assert d["feasible"] and d["shape"]["completion_tokens"] == tokens
    assert d["completion_length"] == {
        "tokens": tokens,
        "source": "preset",
        "preset": preset,
        "reason": PRESETS[preset].length_note,
    }
    assert d["predicted_peak_bytes"] <= d["budget_bytes"] <= 8e9


def test_the_table_says_the_length_and_its_origin(capsys):
    assert main(["plan", *BUDGET, "--dataset", "gsm8k"]) == 0
    out = capsys.readouterr().out
    assert "512-token completions" in out
    assert "completions of up to 512 tokens (gcpo.max_completion_length): the gsm8k preset's default: " in out
    assert main(["plan", *BUDGET, "--dataset", "gsm8k", "--max-completion-length", "300"]) == 0
    assert "completions of up to 300 tokens (gcpo.max_completion_length): as set" in capsys.readouterr().out
    assert main(["plan", "--memory-budget", "8GB"]) == 0
    assert "completions of up to 256 tokens (gcpo.max_completion_length): the default" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--dataset", "math", "--max-completion-length", "300"], (300, "explicit")),
        (["--dataset", "math", "gcpo.max_completion_length=300"], (300, "explicit")),
        (["--dataset", "someone/data"], (256, "default")),
        ([], (512, "preset")),  # a real model with no dataset trains on gsm8k, as `train` does
    ],
)
def test_what_the_user_gives_wins(capsys, argv, expected):
    d = plan_json(capsys, *BUDGET, *argv)
    assert (d["shape"]["completion_tokens"], d["completion_length"]["source"]) == expected


def test_a_config_files_key_wins(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: openr1\ngcpo:\n  max_completion_length: 700\n")
    d = plan_json(capsys, *BUDGET, "--config", str(path))
    assert d["completion_length"] == {"tokens": 700, "source": "explicit", "preset": "openr1", "reason": ""}


def test_a_plan_that_does_not_fit_says_the_length_was_the_presets(capsys):
    argv = ["plan", "--model", "qwen2.5-7b", "--dataset", "math", "--memory-budget", "8GB"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1024-token completions are the math preset's default; --max-completion-length T" in err
    assert main([*argv, "--max-completion-length", "1024"]) == 2  # chosen by the user: no such note
    assert "preset" not in capsys.readouterr().err
    assert main([*argv, "--json"]) == 2
    d = json.loads(capsys.readouterr().out)
    assert not d["feasible"] and d["completion_length"]["source"] == "preset"
