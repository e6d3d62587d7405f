"""GCPOConfig: TRL's GRPOConfig names mapped onto gcpo-lite's keys, bare option names, overrides, refusals."""

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from gcpo_lite.api import config as api
from gcpo_lite.api.config import FLAT, REFUSED, TRL, GCPOConfig
from gcpo_lite.config import Config, ConfigError
from gcpo_lite.config.sections import SECTIONS
from gcpo_lite.demo.default_run import EMBEDDED_DEFAULT


def value_at(cfg: Config, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def all_keys() -> set[str]:
    return {f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


# (keywords as a TRL script writes them, the gcpo-lite key, the value it gets)
TRL_CASES = [
    ({"output_dir": "out/run"}, "train.output_dir", "out/run"),
    ({"learning_rate": 2e-5}, "train.learning_rate", 2e-5),
    ({"weight_decay": 0.01}, "train.weight_decay", 0.01),
    ({"adam_beta1": 0.8}, "train.adam_beta1", 0.8),
    ({"adam_beta2": 0.95}, "train.adam_beta2", 0.95),
    ({"max_grad_norm": 0.5}, "train.max_grad_norm", 0.5),
    ({"optim": "adamw_torch"}, "train.optimizer", "adamw"),
    ({"optim": "adamw_torch_fused"}, "train.optimizer", "adamw"),
    ({"optim": "adamw_bnb_8bit"}, "train.optimizer", "adamw_8bit"),
    ({"optim": "paged_adamw_8bit"}, "train.optimizer", "paged_adamw_8bit"),
    ({"lr_scheduler_type": "cosine"}, "train.lr_scheduler", "cosine"),
    ({"lr_scheduler_type": "linear"}, "train.lr_scheduler", "linear"),
    ({"lr_scheduler_type": "constant_with_warmup", "warmup_steps": 3}, "train.lr_scheduler", "constant"),
    ({"warmup_steps": 5}, "train.warmup_steps", 5),
    ({"max_steps": 7}, "train.max_steps", 7),
    ({"save_steps": 3}, "train.save_steps", 3),
    ({"eval_steps": 4}, "train.eval_steps", 4),
    ({"save_total_limit": None}, "train.save_total_limit", None),
    ({"seed": 42}, "train.seed", 42),
    ({"report_to": ["tensorboard", "wandb"]}, "train.report_to", "tensorboard,wandb"),
    ({"report_to": "none"}, "train.report_to", "none"),
    ({"log_completions": True}, "train.log_completions", 2),
    ({"log_completions": False}, "train.log_completions", 0),
    ({"use_cpu": True}, "train.device", "cpu"),
    ({"use_cpu": False}, "train.device", "auto"),
    ({"gradient_checkpointing": False}, "model.gradient_checkpointing", False),
    ({"max_prompt_length": 128}, "data.max_prompt_length", 128),
    ({"shuffle_dataset": False}, "data.shuffle", False),
    ({"num_generations": 4}, "gcpo.num_generations", 4),
    ({"max_completion_length": 64}, "gcpo.max_completion_length", 64),
    ({"temperature": 0.7}, "gcpo.temperature", 0.7),
    ({"top_p": 0.9}, "gcpo.top_p", 0.9),
    ({"beta": 0.04}, "gcpo.beta", 0.04),
    ({"epsilon": 0.2}, "gcpo.epsilon_low", 0.2),
    ({"epsilon_high": 0.28}, "gcpo.epsilon_high", 0.28),
    ({"importance_sampling_level": "token"}, "gcpo.importance_sampling_level", "token"),
    ({"loss_type": "grpo"}, "gcpo.loss_type", "seq_mean_token_mean"),
    ({"loss_type": "dapo"}, "gcpo.loss_type", "token_mean"),
    ({"loss_type": "dr_grpo"}, "gcpo.loss_type", "dr_grpo"),
    ({"loss_type": "token_mean"}, "gcpo.loss_type", "token_mean"),  # gcpo-lite's own name too
    ({"scale_rewards": True}, "gcpo.scale_rewards", "group"),
    ({"scale_rewards": False}, "gcpo.scale_rewards", "none"),
    ({"scale_rewards": "batch"}, "gcpo.scale_rewards", "batch"),
    ({"num_iterations": 2}, "gcpo.num_iterations", 2),
    ({"mask_truncated_completions": True}, "reward.truncated", "mask"),
    ({"mask_truncated_completions": False}, "reward.truncated", "score"),
    ({"reward_weights": [2.0]}, "reward.weights", [2.0]),
    ({"per_device_train_batch_size": 16}, "train.batch_size", 16),
    ({"gradient_accumulation_steps": 2}, "train.batch_size", 16),  # TRL's per-device default 8 x 2
    ({"per_device_train_batch_size": 8, "gradient_accumulation_steps": 4}, "train.batch_size", 32),
    ({"gradient_accumulation_steps": 2, "steps_per_generation": 2}, "train.batch_size", 16),
    ({"per_device_train_batch_size": 16, "generation_batch_size": 16}, "train.batch_size", 16),
]


@pytest.mark.parametrize("kwargs, key, expected", TRL_CASES, ids=lambda c: str(c)[:60])
def test_trl_names_land_on_their_keys(kwargs, key, expected):
    args = GCPOConfig(**kwargs)
    assert value_at(args.to_config(), key) == expected
    assert key in args.explicit_keys()


def test_every_trl_name_is_tested_and_every_target_exists():
    """A renamed gcpo-lite option breaks this test, not users; a new TRL mapping needs a case above."""
    assert {name for kwargs, _, _ in TRL_CASES for name in kwargs} == set(TRL)
    keys = all_keys()
    assert [(name, key) for name, (key, _) in TRL.items() if key not in keys] == []
    assert all(note for _, note in TRL.values())


def test_trl_names_shared_with_gcpo_lite_mean_the_same_option():
    """Where a TRL name is also a gcpo-lite name, both mean one option (generation_batch_size is the
    documented exception: TRL's is the step's completions); no refused TRL name hides a gcpo-lite option."""
    differ = {name for name, (key, _) in TRL.items() if name in FLAT and FLAT[name] != [key]}
    assert differ == {"generation_batch_size"}
    assert set(REFUSED) & set(FLAT) == set()


def test_trl_reads_give_the_effective_value_in_trl_terms():
    args = GCPOConfig(loss_type="dapo", mask_truncated_completions=True, optim="adamw_torch", use_cpu=True)
    assert args.mask_truncated_completions is True and args.optim == "adamw_torch" and args.use_cpu is True
    assert args.loss_type == "token_mean"  # a gcpo-lite name reads back gcpo-lite's value
    assert (args.epsilon, args.epsilon_high) == (3e-4, 4e-4)  # the resolved clip range
    assert args.use_vllm is False and args.fp16 is False  # what gcpo-lite does, in TRL's terms
    assert GCPOConfig(epsilon=0.1).epsilon_high == 0.1  # TRL: the upper clip follows epsilon
    assert GCPOConfig(epsilon=0.1, epsilon_high=0.3).to_config().resolved_epsilons() == (0.1, 0.3)


def test_flat_unique_names_reach_their_section():
    args = GCPOConfig(
        gold_injection="never", dynamic_sampling=True, verifier="math", r=8, name="qwen2.5-0.5b"
    )
    cfg = args.to_config()
    assert (cfg.gcpo.gold_injection, cfg.gcpo.dynamic_sampling, cfg.reward.verifier) == (
        "never",
        True,
        "math",
    )
    assert (cfg.lora.r, cfg.model.name) == (8, "qwen2.5-0.5b")
    keys = {"gcpo.gold_injection", "gcpo.dynamic_sampling", "reward.verifier", "lora.r", "model.name"}
    assert args.explicit_keys() == keys
    assert (args.r, args.gold_injection, args.dynamic_sampling) == (8, "never", True)


def test_every_unique_name_is_accepted_at_its_default():
    defaults = Config()
    for name, keys in FLAT.items():
        if len(keys) == 1 and name not in TRL:
            args = GCPOConfig(**{name: value_at(defaults, keys[0])})
            assert args.explicit_keys() == {keys[0]}, name
            assert value_at(args.to_config(), keys[0]) == value_at(defaults, keys[0]), name


def test_a_name_two_sections_share_is_refused_with_both_keys():
    shared = [name for name, keys in FLAT.items() if len(keys) > 1]
    assert shared  # share_prompts: train.share_prompts and rollout.share_prompts
    for name in shared:
        with pytest.raises(ConfigError) as e:
            GCPOConfig(**{name: True})
        assert all(key in str(e.value) for key in FLAT[name])
        with pytest.raises(AttributeError):
            getattr(GCPOConfig(), name)
    cfg = GCPOConfig(overrides={"rollout.share_prompts": False}).to_config()
    assert cfg.rollout.share_prompts is False and cfg.train.share_prompts is True


def test_overrides_as_a_dict_or_a_list():
    args = GCPOConfig(overrides={"lora.r": 32, "train.learning_rate": "1e-4"}, num_generations=4)
    cfg = args.to_config()
    assert (cfg.lora.r, cfg.train.learning_rate, cfg.gcpo.num_generations) == (32, 1e-4, 4)
    assert args.explicit_keys() == {"lora.r", "train.learning_rate", "gcpo.num_generations"}
    args = GCPOConfig(
        overrides=["lora.r=32", "lora.target_modules=[q_proj,v_proj]", "gcpo.epsilon_high=null"]
    )
    cfg = args.to_config()
    assert (
        cfg.lora.r == 32 and cfg.lora.target_modules == ["q_proj", "v_proj"] and cfg.gcpo.epsilon_high is None
    )
    assert args.explicit_keys() == {"lora.r", "lora.target_modules", "gcpo.epsilon_high"}


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"overrides": {"lora.rr": 8}}, "Did you mean 'r'"),
        ({"overrides": {"lora": 8}}, "must be section.key"),
        ({"overrides": ["lora.r"]}, "section.key=value"),
        ({"overrides": "lora.r=8"}, "takes a dict"),
        ({"overrides": {"lora.r": 8}, "r": 4}, "both set lora.r"),
        ({"optim": "adamw_torch", "optimizer": "adamw"}, "both set train.optimizer"),
        ({"per_device_train_batch_size": 8, "batch_size": 8}, "both set train.batch_size"),
    ],
)
def test_bad_overrides_and_one_key_set_twice(kwargs, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        GCPOConfig(**kwargs)


@pytest.mark.parametrize(
    "name, suggestion",
    [("num_generation", "num_generations"), ("learning_rat", "learning_rate"), ("lora_rank", None)],
)
def test_an_unknown_name_suggests_close_ones(name, suggestion):
    with pytest.raises(ConfigError) as e:
        GCPOConfig(**{name: 1})
    assert f"{name}= is no gcpo-lite option" in str(e.value) and "overrides=" in str(e.value)
    assert suggestion is None or f"did you mean {suggestion}" in str(e.value)
    with pytest.raises(AttributeError):
        getattr(GCPOConfig(), name)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"bf16": True}, "compute_dtype='bfloat16'"),
        ({"fp16": True}, "compute_dtype='float16'"),
        ({"use_vllm": True}, "KV-cached sampler"),
        ({"push_to_hub": True}, "gcpo-lite export"),
        ({"num_train_epochs": 3}, "max_steps="),
        ({"warmup_ratio": 0.1}, "warmup_steps="),
        ({"eval_strategy": "epoch"}, "eval_size=0"),
        ({"top_k": 50}, "temperature and top_p"),
        ({"generation_kwargs": {"suppress_tokens": [1]}}, "suppress_tokens="),
        ({"loss_type": "bnpo"}, "dapo"),
        ({"loss_type": "cispo"}, "gcpo-lite has the losses"),
        ({"scale_rewards": "mean"}, "group, batch, none"),
        ({"report_to": "all"}, "name the sinks"),
        ({"optim": "sgd"}, "adamw_torch"),
        ({"lr_scheduler_type": "polynomial"}, "cosine"),
        ({"mask_truncated_completions": "zero"}, "True or False"),
        ({"generation_batch_size": 64}, "batch_size="),
        ({"steps_per_generation": 4}, "gradient_accumulation_steps"),
        ({"per_device_train_batch_size": 0}, "whole number >= 1"),
        ({"num_iterations": 2, "max_steps": 100}, "'train.max_steps': 50"),
        ({"num_iterations": 4, "save_steps": 10}, "'train.save_steps': 3"),
        ({"lr_scheduler_type": "constant", "warmup_steps": 10}, "constant_with_warmup"),
    ],
)
def test_refused_trl_names_and_values_say_what_to_do_instead(kwargs, needle):
    with pytest.raises(ConfigError) as e:
        GCPOConfig(**kwargs)
    assert needle in str(e.value)
    assert any(str(e.value).startswith(name) for name in kwargs)  # it names the keyword as typed


def test_every_refused_name_accepts_only_the_values_that_change_nothing():
    for name, (why, changes_nothing) in REFUSED.items():
        for value in changes_nothing if changes_nothing is not None else (10, "anything"):
            args = GCPOConfig(**{name: value})
            assert args.explicit_keys() == set() and args.to_config() == Config(), name
        if changes_nothing is None:
            continue
        with pytest.raises(ConfigError, match="gcpo-lite has no such option") as e:
            GCPOConfig(**{name: "something else"})
        assert why in str(e.value)


def test_vllm_and_hub_settings_do_nothing_while_their_switch_is_off():
    args = GCPOConfig(use_vllm=False, vllm_mode="colocate", push_to_hub=False, hub_model_id="me/model")
    assert args.explicit_keys() == set()
    with pytest.raises(ConfigError, match="KV-cached sampler"):
        GCPOConfig(use_vllm=True, vllm_mode="colocate")


def test_several_problems_come_in_one_error():
    with pytest.raises(ConfigError) as e:
        GCPOConfig(bf16=True, num_generation=4, share_prompts=False)
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and lines[0].startswith("bf16=True") and lines[1].startswith("num_generation=")


@pytest.mark.parametrize(
    "kwargs, starts",
    [
        ({"num_generations": 1}, "num_generations=1: gcpo.num_generations=1 is too small"),
        ({"learning_rate": "x"}, "learning_rate='x': train.learning_rate='x' should be a float"),
        ({"loss_type": "grpo2"}, "loss_type='grpo2': gcpo.loss_type='grpo2' is not one of"),
        ({"batch_size": 30}, "batch_size=30: train.batch_size=30 must be a positive multiple"),
        ({"per_device_train_batch_size": 3}, "per_device_train_batch_size=3 -> train.batch_size: train"),
        ({"report_to": "trackio"}, "report_to='trackio': train.report_to='trackio'"),
        ({"overrides": {"gcpo.num_generations": 1}}, "gcpo.num_generations=1 is too small"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_keyword(kwargs, starts):
    with pytest.raises(ConfigError) as e:
        GCPOConfig(**kwargs)
    assert str(e.value).startswith(starts)


def test_values_are_coerced_as_yaml_and_overrides_are():
    args = GCPOConfig(learning_rate="1e-5", max_steps="12", num_generations="auto")
    cfg = args.to_config()
    assert cfg.train.learning_rate == 1e-5 and cfg.train.max_steps == 12
    assert cfg.memory.auto_num_generations and cfg.gcpo.num_generations == 16  # the largest G dividing 64


def test_explicit_keys_are_what_the_user_set(tmp_path):
    args = GCPOConfig(max_completion_length=64, use_vllm=False, overrides={"lora.r": 8})
    assert args.explicit_keys() == {"gcpo.max_completion_length", "lora.r"}
    assert GCPOConfig().explicit_keys() == set()
    assert "gcpo.max_completion_length" not in GCPOConfig(num_generations=4).explicit_keys()


def test_from_yaml_takes_the_file_then_keywords(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"gcpo": {"num_generations": 4}, "train": {"batch_size": 16}}))
    args = GCPOConfig.from_yaml(path, learning_rate=2e-4, overrides={"lora.r": 8})
    cfg = args.to_config()
    assert (cfg.gcpo.num_generations, cfg.train.batch_size, cfg.train.learning_rate, cfg.lora.r) == (
        4,
        16,
        2e-4,
        8,
    )
    assert args.explicit_keys() == {
        "gcpo.num_generations",
        "train.batch_size",
        "train.learning_rate",
        "lora.r",
    }
    assert args.num_generations == 4
    assert repr(args).startswith(f"GCPOConfig.from_yaml({str(path)!r}, learning_rate=0.0002")
    assert GCPOConfig.from_yaml(path, num_generations=8).to_config().gcpo.num_generations == 8
    with pytest.raises(ConfigError, match="not found"):
        GCPOConfig.from_yaml(tmp_path / "missing.yaml")


def test_to_config_starts_from_a_base():
    args = GCPOConfig(max_completion_length=16)
    cfg = args.to_config(EMBEDDED_DEFAULT)
    assert (cfg.gcpo.num_generations, cfg.train.batch_size, cfg.gcpo.max_completion_length) == (4, 1024, 16)
    assert args.to_config(cfg) == cfg and args.num_generations == 8  # the reads follow args.base, not a call
    args.base = EMBEDDED_DEFAULT
    assert (
        args.num_generations == 4
        and args.to_config() == cfg
        and args.explicit_keys() == {"gcpo.max_completion_length"}
    )
    assert GCPOConfig(base=cfg).learning_rate == 3e-3
    with pytest.raises(ConfigError, match="base= takes"):
        GCPOConfig(base=[1])
    with pytest.raises(ConfigError, match="^max_steps=100 with num_iterations=2"):
        GCPOConfig(max_steps=100).to_config({"gcpo": {"num_iterations": 2}})


def test_reward_weights_wait_for_the_reward_functions():
    args = GCPOConfig(reward_weights=[1.0, 0.5])  # two functions, which the trainer brings
    assert args.reward_weights == [1.0, 0.5]
    with pytest.raises(ConfigError, match=r"^reward_weights=\[1.0, 0.5\]: .*2 values for 1 reward functions"):
        args.to_config()
    cfg = args.to_config(reward_functions=["math", "format"])
    assert cfg.reward.functions == ["math", "format"] and cfg.reward.weights == [1.0, 0.5]
    with pytest.raises(ConfigError, match=r"^reward_weights=\['x'\]"):
        GCPOConfig(reward_weights=["x"])


def test_assigning_goes_through_the_same_checks():
    args = GCPOConfig(num_generations=4)
    args.max_steps = 10
    args.loss_type = "dapo"
    assert args.to_config().train.max_steps == 10 and args.to_config().gcpo.loss_type == "token_mean"
    with pytest.raises(ConfigError, match="^num_generations=1"):
        args.num_generations = 1
    with pytest.raises(ConfigError, match="compute_dtype"):
        args.bf16 = True
    assert (
        args.num_generations == 4
        and repr(args) == "GCPOConfig(num_generations=4, max_steps=10, loss_type='dapo')"
    )


def test_per_device_sizes_count_the_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    args = GCPOConfig(per_device_train_batch_size=8, gradient_accumulation_steps=2, num_generations=8)
    assert args.to_config().train.batch_size == 64  # the whole job's completions per step
    assert args.per_device_train_batch_size == 8 and args.gradient_accumulation_steps == 2
    assert args.generation_batch_size == 64 and args.steps_per_generation == 2
    assert GCPOConfig(batch_size=64).per_device_train_batch_size == 16  # TRL's view at one update per step


def test_the_module_imports_only_the_config_layer_and_no_torch():
    modules = set()
    for node in ast.walk(ast.parse(Path(api.__file__).read_text())):
        if isinstance(node, ast.ImportFrom):
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    ours = {m for m in modules if m.startswith("gcpo_lite")}
    assert ours and all(m == "gcpo_lite.config" or m.startswith("gcpo_lite.config.") for m in ours)
    assert not any(m.split(".")[0] == "torch" for m in modules)
