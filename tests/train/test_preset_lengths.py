"""A dataset preset's completion length (train/run_config.py): applied when the user did not set
gcpo.max_completion_length (in the --config file, an override or a flag), never over what they set, never
for the embedded default, a file or a hub id without a preset, and never on resume."""

import logging

import pytest
import yaml

from gcpo_lite.cli import build_parser
from gcpo_lite.commands.train import config_from_args
from gcpo_lite.config import from_dict, save_config
from gcpo_lite.train.run_config import (
    apply_preset_lengths,
    configured,
    explicit_keys,
    length_origin,
    resumed_config,
    run_config,
)

MODEL = "qwen2.5-1.5b"


def train_config(*argv):
    """The Config `gcpo-lite train ARGV` would run with (flags become overrides)."""
    return config_from_args(build_parser().parse_args(["train", *argv]))[0]


def test_the_preset_length_applies_when_the_user_sets_none(caplog):
    caplog.set_level(logging.INFO, logger="gcpo_lite.train.run_config")
    assert train_config("--model", MODEL, "--dataset", "gsm8k").gcpo.max_completion_length == 512
    assert caplog.messages == [
        "gcpo.max_completion_length=512 (the gsm8k preset's default: step-by-step grade-school solutions, "
        "~150-400 tokens from 1.5B-7B models; set it to override)"
    ]
    assert train_config("--model", MODEL, "--dataset", "math").gcpo.max_completion_length == 1024
    assert train_config("--model", MODEL, "--dataset", "openai/gsm8k").gcpo.max_completion_length == 512
    # a real model with no dataset trains on gsm8k: its length too
    assert train_config("--model", MODEL).gcpo.max_completion_length == 512


def test_an_override_wins(caplog):
    caplog.set_level(logging.INFO, logger="gcpo_lite.train.run_config")
    cfg = train_config("--model", MODEL, "--dataset", "math", "gcpo.max_completion_length=300")
    assert cfg.gcpo.max_completion_length == 300 and caplog.messages == []
    cfg = train_config("--model", MODEL, "--dataset", "math", "gcpo.max_completion_length=256")
    assert cfg.gcpo.max_completion_length == 256  # the generic default, asked for by name: kept


def test_a_flag_wins():
    """train has no --max-completion-length; plan's flag goes through the same flag table (FLAG_KEYS)."""
    from gcpo_lite.commands.flags import flag_overrides

    args = build_parser().parse_args(["plan", "--dataset", "math", "--max-completion-length", "640"])
    overrides = flag_overrides(args)
    assert configured(None, overrides).gcpo.max_completion_length == 640
    assert run_config(None, MODEL, "math", overrides)[0].gcpo.max_completion_length == 640


def test_a_key_in_the_config_file_wins(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"dataset": "aime24"}, "gcpo": {"max_completion_length": 256}}))
    assert train_config("--config", str(path)).gcpo.max_completion_length == 256
    path.write_text(yaml.safe_dump({"model": {"name": MODEL}, "data": {"dataset": "aime24"}}))
    assert train_config("--config", str(path)).gcpo.max_completion_length == 3072
    cfg = train_config("--config", str(path), "--dataset", "gsm8k")  # the flag's dataset, its preset
    assert cfg.gcpo.max_completion_length == 512


def test_no_preset_keeps_the_default(tmp_path):
    data = tmp_path / "math.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2"}\n')
    assert train_config("--model", MODEL, "--dataset", str(data)).gcpo.max_completion_length == 256
    assert train_config("--model", MODEL, "--dataset", "someone/data").gcpo.max_completion_length == 256
    assert train_config("--dataset", "addition").gcpo.max_completion_length == 256
    cfg, embedded = run_config(None, None, None, [])  # the embedded default: its own 5 tokens
    assert embedded and cfg.gcpo.max_completion_length == 5


def test_a_resumed_run_keeps_its_value(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(from_dict({"model": {"name": MODEL}, "data": {"dataset": "gsm8k"}}), run_dir / "config.yaml")
    cfg, changed = resumed_config(run_dir, [])
    assert cfg.gcpo.max_completion_length == 256 and not changed
    cfg, _ = resumed_config(run_dir, ["gcpo.max_completion_length=1024"])  # an override still applies
    assert cfg.gcpo.max_completion_length == 1024


def test_the_python_api_passes_its_own_explicit_keys():
    cfg = from_dict({"model": {"name": MODEL}, "data": {"dataset": "math"}})
    said = []
    out = apply_preset_lengths(cfg, set(), say=said.append)
    assert out.gcpo.max_completion_length == 1024 and cfg.gcpo.max_completion_length == 256  # a new Config
    assert said == [
        "gcpo.max_completion_length=1024 (the math preset's default: competition solutions, ~300-700 tokens; "
        "level 5 often past 800; set it to override)"
    ]
    assert apply_preset_lengths(cfg, {"gcpo.max_completion_length"}, say=said.append) is cfg
    assert len(said) == 1


def test_explicit_keys_are_the_files_and_the_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("gcpo:\n  num_generations: 4\nscheduler:\n  max_num_generations: 8\ntrain:\n")
    keys = explicit_keys(path, ["train.seed=3", "data.dataset=gsm8k"])
    assert keys == {"gcpo.num_generations", "memory.max_num_generations", "train.seed", "data.dataset"}
    assert explicit_keys(None, []) == set()


def test_length_origin_says_where_the_length_came_from():
    keys = {"gcpo.max_completion_length"}
    cfg = apply_preset_lengths(from_dict({"data": {"dataset": "gsm8k"}}), set(), say=lambda _: None)
    assert length_origin(cfg, set())._asdict() == {
        "tokens": 512,
        "source": "preset",
        "preset": "gsm8k",
        "reason": "step-by-step grade-school solutions, ~150-400 tokens from 1.5B-7B models",
    }
    assert length_origin(cfg, keys).source == "explicit"
    assert length_origin(from_dict({}), set())[:3] == (256, "default", None)


@pytest.mark.parametrize("rank, said", [("0", 1), ("1", 0)])
def test_under_torchrun_the_first_process_says_it(monkeypatch, caplog, rank, said):
    caplog.set_level(logging.INFO, logger="gcpo_lite.train.run_config")
    monkeypatch.setenv("RANK", rank)
    assert run_config(None, MODEL, "gsm8k", ["data.dataset=gsm8k"])[0].gcpo.max_completion_length == 512
    assert len(caplog.messages) == said
