import pytest
import yaml

from gcpo_lite.config import Config, ConfigError, apply_overrides, describe_options, from_dict, load_config


def test_defaults_validate_and_resolve_epsilons():
    cfg = Config()
    assert cfg.gcpo.num_generations == 8 and cfg.gcpo.gold_injection == "all_wrong"
    assert cfg.resolved_epsilons() == (3e-4, 4e-4)
    tok = from_dict({"gcpo": {"importance_sampling_level": "token"}})
    assert tok.resolved_epsilons() == (0.2, 0.28)
    explicit = from_dict({"gcpo": {"epsilon_low": 0.1, "epsilon_high": 0.3}})
    assert explicit.resolved_epsilons() == (0.1, 0.3)


def test_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"gcpo": {"num_generations": 4}, "train": {"batch_size": 16}}))
    cfg = load_config(
        path,
        [
            "train.learning_rate=2e-4",
            "lora.target_modules=[q_proj,v_proj]",
            "model.name=qwen2.5-1.5b",
            "gcpo.epsilon_high=null",
        ],
    )
    assert cfg.gcpo.num_generations == 4 and cfg.train.batch_size == 16
    assert cfg.train.learning_rate == 2e-4
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.model.name == "qwen2.5-1.5b" and cfg.gcpo.epsilon_high is None


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["gcpo.num_generation=4"], "Did you mean 'num_generations'"),
        (["gcpoo.beta=1"], "unknown config key section 'gcpoo'"),
        (["train.nope=1"], "Valid keys:"),
        (["gcpo.num_generations=1"], "at least 2"),
        (["train.batch_size=30"], "multiple of gcpo.num_generations=8"),
        (["gcpo.epsilon_low=-0.1"], "negative"),
        (["gcpo.epsilon_high=-1"], "negative"),
        (["gcpo.beta=-0.5"], "negative"),
        (["gcpo.loss_type=grpo"], "not one of"),
        (["gcpo.scale_rewards=yes"], "not one of"),
        (["gcpo.gold_injection=sometimes"], "not one of"),
        (["gcpo.importance_sampling_level=seq"], "not one of"),
        (["gcpo.top_p=1.5"], "top_p"),
        (["gcpo.temperature=0"], "must be > 0"),
        (["train.max_steps=-1"], ">= 0"),
        (["train.micro_batch_size=0"], ">= 1"),
        (["gcpo.num_generations=abc"], "should be an int"),
        (["model.quantize=maybe"], "should be a bool"),
        (["novalue"], "section.key=value"),
        (["a.b.c=1"], "must name section.key"),
    ],
)
def test_validation_errors_say_how_to_fix(overrides, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert needle in str(e.value)


def test_unknown_key_lists_valid_keys_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "train.'lr'" in str(e.value) or "'lr'" in str(e.value)
    assert "learning_rate" in str(e.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_every_option_is_documented():
    rows = describe_options()
    assert len(rows) > 40
    undocumented = [k for k, _, comment in rows if not comment]
    assert undocumented == []


def test_overrides_do_not_mutate_input():
    base = {"train": {"batch_size": 16}}
    out = apply_overrides(base, ["train.batch_size=32"])
    assert base["train"]["batch_size"] == 16 and out["train"]["batch_size"] == 32


def test_readme_option_table_is_the_generated_one():
    from pathlib import Path

    from gcpo_lite.config import options_markdown

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- options:begin -->\n", 1)[1].split("<!-- options:end -->", 1)[0]
    assert block == options_markdown(), (
        "README's option table is stale: paste `python -m gcpo_lite.config` into it"
    )
    assert all(f"| `{key}` |" in block for key, _, _ in describe_options())
    # a "\b" in a plain string is a backspace: it garbles --help and the table alike, so equality misses it
    for key, _, text in describe_options():
        assert control_characters(text) == "", (
            f"{key}'s help has control characters {control_characters(text)}"
        )
    assert control_characters(block) == "", f"README's option table has {control_characters(block)}"


def control_characters(text: str) -> str:
    """The characters below 0x20 other than newline and tab, written as escapes (\\x08 for a backspace)."""
    return " ".join(sorted({f"\\x{ord(c):02x}" for c in text if ord(c) < 0x20 and c not in "\n\t"}))


def test_embedded_preset_matches_its_config_file():
    from pathlib import Path

    from gcpo_lite.demo.default_run import EMBEDDED_DEFAULT

    path = Path(__file__).resolve().parents[2] / "configs" / "tiny_addition_cpu.yaml"
    assert load_config(path).to_dict() == from_dict(EMBEDDED_DEFAULT).to_dict()


def test_every_shipped_config_loads():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert len(configs) >= 2
    for path in configs:
        assert path.read_text().startswith("#"), f"{path.name} must open with a comment giving its command"
        assert "gcpo-lite train --config" in path.read_text().split("\n\n")[0], path.name
        load_config(path)


def test_num_generations_auto_turns_on_the_planner():
    cfg = load_config(None, ["gcpo.num_generations=auto", "train.batch_size=48"])
    assert cfg.memory.auto_num_generations is True
    assert cfg.train.batch_size % cfg.gcpo.num_generations == 0 and cfg.gcpo.num_generations == 16
    cfg = from_dict(
        {
            "gcpo": {"num_generations": "auto"},
            "memory": {"max_num_generations": 6},
            "train": {"batch_size": 64},
        }
    )
    assert cfg.gcpo.num_generations == 4 and cfg.memory.auto_num_generations


def test_renamed_keys_still_load_with_one_notice_each(caplog):
    """One name per idea: `scheduler` is `memory` (the memory planner), rollout.share_prefill is
    rollout.share_prompts (prompt sharing in both phases). Configs written before still load."""
    import logging

    with caplog.at_level(logging.WARNING, logger="gcpo_lite.config.loading"):
        cfg = from_dict({"scheduler": {"memory_budget": "6GiB"}, "rollout": {"share_prefill": False}})
        over = load_config(None, ["scheduler.oom_backoff=false", "rollout.share_prefill=false"])
    assert cfg.memory.memory_budget == "6GiB" and cfg.rollout.share_prompts is False
    assert over.memory.oom_backoff is False and over.rollout.share_prompts is False
    notices = [r.message for r in caplog.records if "the old name still loads" in r.message]
    assert len(notices) == 4, notices
    with pytest.raises(ConfigError, match="both 'scheduler' and 'memory'"):
        from_dict({"memory": {}, "scheduler": {}})
    with pytest.raises(ConfigError, match="both rollout.share_prefill and rollout.share_prompts"):
        from_dict({"rollout": {"share_prompts": True, "share_prefill": False}})


def test_the_section_table_is_configs_own_fields():
    """config/sections.py's SECTIONS (what loading and validation walk) lists Config's fields, in order, with
    their classes: a section added to one and not the other would load, validate or document nothing."""
    import dataclasses
    import typing

    from gcpo_lite.config.sections import SECTIONS

    hints = typing.get_type_hints(Config)
    assert [(f.name, hints[f.name]) for f in dataclasses.fields(Config)] == list(SECTIONS.items())
