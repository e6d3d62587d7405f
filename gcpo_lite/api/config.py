"""GCPOConfig: the Python API's config under TRL's GRPOConfig names, so a TRL script swaps the class and runs.

A keyword is: a TRL GRPOConfig / TrainingArguments name with a true gcpo-lite equivalent (table TRL; CONVERT turns
TRL's values into ours where they differ); a gcpo-lite option's bare name when no two sections share it (`r=`);
`overrides=` with dotted keys ({"lora.r": 16} or ["lora.r=16"]); or a TRL name gcpo-lite lacks (REFUSED): an
error saying what gcpo-lite does instead, unless its value changes nothing. Values are coerced and validated as
in YAML; errors name the keyword as typed. TRL counts optimizer updates (num_iterations a rollout) in max_steps,
warmup_steps, save_steps and eval_steps, gcpo-lite rollout steps: above num_iterations=1 those are refused.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional, Union

import yaml

from gcpo_lite.config import Config, ConfigError, apply_overrides, from_dict, load_config
from gcpo_lite.config.renames import current_name, with_current_names
from gcpo_lite.config.sections import SECTIONS
from gcpo_lite.config.validation import shown

Base = Union[None, dict, Config]
STEPS = "steps (TRL: updates)"
BATCH_KEY = "train.batch_size"
BATCH = ("per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation")
BATCH += ("generation_batch_size",)
STEP_COUNTED = ("max_steps", "warmup_steps", "save_steps", "eval_steps")

# TRL name -> (gcpo-lite key, note)
TRL: dict[str, tuple[str, str]] = {
    "output_dir": ("train.output_dir", "the run directory (adapter, config.yaml, metrics.jsonl)"),
    "learning_rate": ("train.learning_rate", "AdamW on the LoRA weights"),
    "weight_decay": ("train.weight_decay", "the same"),
    "adam_beta1": ("train.adam_beta1", "the same"),
    "adam_beta2": ("train.adam_beta2", "the same"),
    "max_grad_norm": ("train.max_grad_norm", "the same (0 = no clipping)"),
    "optim": ("train.optimizer", "adamw_torch(_fused) -> adamw, adamw_(bnb_)8bit, paged_adamw_8bit"),
    "lr_scheduler_type": ("train.lr_scheduler", "linear, cosine, constant_with_warmup -> constant"),
    "warmup_steps": ("train.warmup_steps", "linear warmup, in " + STEPS),
    "max_steps": ("train.max_steps", "one rollout batch each, in " + STEPS),
    "save_steps": ("train.save_steps", "0 = every save_minutes instead; in " + STEPS),
    "eval_steps": ("train.eval_steps", "held-out accuracy; 0 = only at the end; in " + STEPS),
    "save_total_limit": ("train.save_total_limit", "the same (None = keep all)"),
    "seed": ("train.seed", "torch, python and the data order"),
    "report_to": ("train.report_to", "none, tensorboard, wandb or a list of them ('all' refused)"),
    "log_completions": ("train.log_completions", "True = 2 a step, False = 0, or a count"),
    "use_cpu": ("train.device", "True -> cpu, False -> auto"),
    "gradient_checkpointing": ("model.gradient_checkpointing", "the same"),
    "max_prompt_length": ("data.max_prompt_length", "longer prompts are dropped (and counted), not cut"),
    "shuffle_dataset": ("data.shuffle", "the same (seeded by seed)"),
    "num_generations": ("gcpo.num_generations", "G, the group size"),
    "max_completion_length": ("gcpo.max_completion_length", "the same"),
    "temperature": ("gcpo.temperature", "the same; the training log-probs use it too"),
    "top_p": ("gcpo.top_p", "the same"),
    "beta": ("gcpo.beta", "k3 KL to the base with the adapter off (TRL's reference for a PEFT model)"),
    "epsilon": ("gcpo.epsilon_low", "lower clip; epsilon_high follows it unless given, as in TRL"),
    "epsilon_high": ("gcpo.epsilon_high", "upper clip"),
    "importance_sampling_level": ("gcpo.importance_sampling_level", "token | sequence"),
    "loss_type": ("gcpo.loss_type", "grpo -> seq_mean_token_mean, dapo -> token_mean, dr_grpo"),
    "scale_rewards": ("gcpo.scale_rewards", "group, batch, none (True: group, False: none)"),
    "num_iterations": ("gcpo.num_iterations", "optimizer updates per rollout batch (TRL's mu)"),
    "mask_truncated_completions": ("reward.truncated", "True -> mask (out of the loss), False -> score"),
    "reward_weights": ("reward.weights", "one per reward function (None: 1.0 each)"),
    # completions per step, whole job = per_device_train_batch_size x gradient_accumulation_steps x processes
    "per_device_train_batch_size": (BATCH_KEY, "x gradient_accumulation_steps x processes"),
    "gradient_accumulation_steps": (BATCH_KEY, "x per_device_train_batch_size x processes"),
    "steps_per_generation": (BATCH_KEY, "only = gradient_accumulation_steps: one rollout per update"),
    "generation_batch_size": (BATCH_KEY, "only = the step's completions (not train.generation_batch_size)"),
}


def _plain(v):
    return getattr(v, "value", v)  # transformers' str enums (SchedulerType, OptimizerNames) as their strings


def _values(table: dict, refused: Optional[dict] = None, other: Optional[str] = None) -> Callable:
    """TRL's value -> ours by table (ours pass); refused (ValueError): those in refused, with other all else."""

    def convert(v):
        v = _plain(v)
        try:
            why = (refused or {}).get(v) or (other if v not in table and v not in table.values() else None)
            return table.get(v, v) if why is None else _refuse(why)
        except TypeError:  # unhashable: not one of the choices
            return v if other is None else _refuse(other)

    return convert


def _refuse(why: str):
    raise ValueError(why)


def _report_to(v):
    v = "none" if v is None else (",".join(map(str, v)) or "none") if isinstance(v, (list, tuple)) else v
    return _refuse("name the sinks: 'tensorboard', 'wandb' or ['tensorboard', 'wandb']") if v == "all" else v


_BOOL = "give True or False"
_BNPO = "bnpo divides by each device's micro-batch tokens; dapo (token_mean) by the whole step's"
_LOSSES = "gcpo-lite has the losses grpo (seq_mean_token_mean), dapo (token_mean) and dr_grpo"
_LOSS_REFUSED = {"bnpo": _BNPO, **dict.fromkeys(("cispo", "sapo", "luspo"), _LOSSES)}
_OPTIMIZERS = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_8bit": "adamw_8bit"}
_OPTIMIZERS.update(adamw_bnb_8bit="adamw_8bit", paged_adamw_8bit="paged_adamw_8bit")
_SCHEDULES = dict(linear="linear", cosine="cosine", constant="constant", constant_with_warmup="constant")
CONVERT: dict[str, Callable[[Any], Any]] = {  # TRL's value -> gcpo-lite's; ValueError: refused, saying why
    "optim": _values(_OPTIMIZERS, other="gcpo-lite has adamw_torch, adamw_8bit and paged_adamw_8bit"),
    "lr_scheduler_type": _values(_SCHEDULES, other="gcpo-lite has constant(_with_warmup), linear and cosine"),
    "report_to": _report_to,
    "log_completions": lambda v: (2 if v else 0) if isinstance(v, bool) else v,  # 2: gcpo-lite's default
    "use_cpu": _values({True: "cpu", False: "auto"}, other=_BOOL),
    "loss_type": _values({"grpo": "seq_mean_token_mean", "dapo": "token_mean"}, _LOSS_REFUSED),
    "scale_rewards": _values({True: "group", False: "none"}, {"mean": "gcpo-lite has group, batch, none"}),
    "mask_truncated_completions": _values({True: "mask", False: "score"}, other=_BOOL),
}
READ: dict[str, Callable[[Config], Any]] = {  # the effective value in TRL's terms
    "optim": lambda c: {"adamw": "adamw_torch"}.get(c.train.optimizer, c.train.optimizer),
    "use_cpu": lambda c: c.train.device == "cpu",
    "epsilon": lambda c: c.resolved_epsilons()[0],
    "epsilon_high": lambda c: c.resolved_epsilons()[1],
    "mask_truncated_completions": lambda c: c.reward.truncated == "mask",
}

_SAMPLING = "gcpo-lite samples with temperature and top_p only"
_EVAL = "gcpo-lite evaluates every eval_steps steps (0: at the end); eval_size=0 turns eval off"
_LOGS = "gcpo-lite logs every step to metrics.jsonl and report_to's sinks"
_VLLM = "gcpo-lite samples with its own KV-cached sampler (rollout.backend=builtin; see rollout/backends.py)"
_HUB = "push a finished run with `gcpo-lite export RUN_DIR --push-to-hub USER/NAME`"
# TRL name -> (what gcpo-lite does instead, the values that change no training and are accepted; None: all:
# gcpo-lite logs every step; vllm_* and hub_* do nothing while use_vllm and push_to_hub, refused if True, are off)
REFUSED: dict[str, tuple[str, tuple]] = {
    "use_vllm": (_VLLM, (False,)),
    "bf16": ("set compute_dtype='bfloat16' or 'float32' (auto: bf16 where the GPU has it, else fp32)", ()),
    "fp16": ("set compute_dtype='float16'", (False,)),
    "logging_steps": (_LOGS, None),
    "push_to_hub": (_HUB, (False,)),
    "num_train_epochs": ("gcpo-lite counts steps: max_steps= (one rollout batch each) or max_minutes=", ()),
    "warmup_ratio": ("give warmup_steps= (ratio x max_steps)", (0, None)),
    "save_strategy": ("gcpo-lite saves every save_steps steps (0: every save_minutes)", ("steps",)),
    "eval_strategy": (_EVAL, ("steps",)),
    "per_device_eval_batch_size": ("the planner sizes eval batches; eval_size= sets the prompts", ()),
    "num_generations_eval": ("held-out eval samples one completion a prompt at eval_temperature", (None,)),
    "top_k": (_SAMPLING, (0, None)),
    "min_p": (_SAMPLING, (None, 0)),
    "repetition_penalty": (_SAMPLING, (1,)),
    "adam_epsilon": ("gcpo-lite's AdamW uses eps=1e-8", (1e-8,)),
    "delta": ("gcpo-lite clips the ratio to [1 - epsilon, 1 + epsilon_high] only", (None,)),
    "model_init_kwargs": ("gcpo-lite loads the model: name=, revision=, quantize=, compute_dtype=", (None,)),
    "multi_objective_aggregation": ("gcpo-lite sums weighted rewards, then scales", ("sum_then_normalize",)),
    "generation_kwargs": ("gcpo-lite samples with temperature and top_p; suppress_tokens= bans ids", ()),
    "remove_unused_columns": ("gcpo-lite passes every dataset column to the reward functions", (False,)),
}
_PREFIXES = {"vllm_": "use_vllm", "hub_": "push_to_hub"}
_ALL = [(f.name, f"{s}.{f.name}") for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
FLAT = {name: [key for n, key in _ALL if n == name] for name, _ in _ALL}  # bare name -> its dotted keys


def _refusal(name: str) -> Optional[tuple[str, tuple]]:
    prefix = next((p for p in _PREFIXES if name.startswith(p)), None)
    return (REFUSED[_PREFIXES[prefix]][0], None) if prefix else REFUSED.get(name)


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, list(dict.fromkeys([*TRL, *REFUSED, *FLAT, "overrides"])), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"{name}= is no gcpo-lite option nor a TRL one it maps{hint} (any option: overrides={{'section.key': v}})"


def _world_size() -> int:
    env = os.environ.get("WORLD_SIZE", "1")  # torchrun's; TRL's per-device sizes count processes
    return max(1, int(env)) if env.isdigit() else 1


def _batch_size(given: dict) -> int:
    """train.batch_size from TRL's per-device sizes (TRL's defaults for those not given: 8 and 1)."""
    for name, v in given.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name}={shown(v)} should be a whole number >= 1")
    per_device, accum = given.get(BATCH[0], 8), given.get(BATCH[1], 1)
    world = _world_size()
    step = per_device * accum * world
    one = "gcpo-lite makes one rollout per step and trains on all of it"
    if given.get("steps_per_generation", accum) != accum:
        raise ConfigError(f"{BATCH[2]}={given[BATCH[2]]}: {one}, so it must be {BATCH[1]}")
    if given.get("generation_batch_size", step) != step:
        raise ConfigError(
            f"generation_batch_size={given[BATCH[3]]}: {one} ({BATCH[0]}={per_device} x {BATCH[1]}={accum} x "
            f"processes={world} = {step}); give batch_size= instead. Sequences per generate call (memory): "
            "overrides={'train.generation_batch_size': N}"
        )
    return step


def _dotted_overrides(overrides) -> dict[str, Any]:
    """overrides= as {dotted key (current name): value}: a dict of dotted keys or "section.key=value" strings."""
    if overrides is None:
        return {}
    if isinstance(overrides, (list, tuple)):
        nested = apply_overrides({}, [str(o) for o in overrides])  # checks keys; values parsed as YAML
        return {f"{s}.{k}": v for s, body in nested.items() for k, v in body.items()}
    if not isinstance(overrides, dict):
        raise ConfigError("overrides= takes a dict {'lora.r': 16} or a list ['lora.r=16']")
    bad = [k for k in overrides if not isinstance(k, str) or k.count(".") != 1]
    if bad:
        raise ConfigError(f"overrides key {bad[0]!r} must be section.key, e.g. 'lora.r'")
    return {current_name(k): v for k, v in overrides.items()}  # an unknown key fails in from_dict, with hints


def _base_dict(base: Base) -> dict:
    if base is None or isinstance(base, (dict, Config)):
        return base.to_dict() if isinstance(base, Config) else with_current_names(copy.deepcopy(base or {}))
    raise ConfigError(f"base= takes a Config, a dict of sections or None, not {type(base).__name__}")


def _one_keyword(name: str, value) -> Optional[tuple[str, Any]]:
    """(dotted key, value in gcpo-lite's terms) for one keyword; None for a TRL value that changes nothing."""
    if name in TRL:
        try:
            converted = CONVERT[name](value) if name in CONVERT else value
        except ValueError as e:
            raise ConfigError(f"{name}={shown(value)}: {e}") from None
        return TRL[name][0], converted
    refusal = _refusal(name)
    if refusal is not None:
        if refusal[1] is None or _plain(value) in refusal[1]:
            return None
        raise ConfigError(f"{name}={shown(value)}: gcpo-lite has no such option; {refusal[0]}")
    keys = FLAT.get(name, [])
    if len(keys) == 1:
        return keys[0], value
    raise ConfigError(f"{name}= is {' or '.join(keys)}: say which in overrides=" if keys else _unknown(name))


def _map_keywords(kwargs: dict) -> tuple[dict, dict]:
    """({dotted key: value}, {dotted key: the keyword as typed}); every problem in one ConfigError."""
    values, labels, problems = {}, {}, []
    batch = {n: v for n, v in kwargs.items() if n in BATCH and v is not None}
    try:
        if batch:
            values[BATCH_KEY] = _batch_size(batch)
            labels[BATCH_KEY] = ", ".join(f"{n}={v!r}" for n, v in batch.items()) + f" -> {BATCH_KEY}"
    except ConfigError as e:
        problems.append(str(e))
    for name, value in kwargs.items():
        try:
            found = None if name in BATCH else _one_keyword(name, value)
        except ConfigError as e:
            problems.append(str(e))
            continue
        if found and found[0] in labels:
            problems.append(f"{labels[found[0]]} and {name}= both set {found[0]}; keep one")
        elif found:
            values[found[0]], labels[found[0]] = found[1], f"{name}={shown(value)}"
    if problems:
        raise ConfigError("\n".join(problems))
    return values, labels


class GCPOConfig:
    """A run's config under TRL's GRPOConfig names: `GCPOConfig(num_generations=8, loss_type="dapo",
    gold_injection="all_wrong", overrides={"lora.r": 32})`. Reading `args.num_generations` gives the effective
    value; assigning (`args.max_steps = 10`) goes through the same checks. `to_config()`: the validated Config."""

    def __init__(self, *, overrides: Union[None, dict, list] = None, base: Base = None, **kwargs):
        self._setup(kwargs, overrides, base, None, None)

    @classmethod
    def from_yaml(cls, path: Union[str, Path], **kwargs) -> "GCPOConfig":
        """A YAML config file (as `--config` reads it) with keywords on top."""
        load_config(path)  # the file on its own, with the CLI's messages for a missing or invalid file
        self = cls.__new__(cls)
        file = with_current_names(yaml.safe_load(Path(path).read_text()) or {})
        self._setup(kwargs, kwargs.pop("overrides", None), kwargs.pop("base", None), file, str(path))
        return self

    def _setup(self, kwargs: dict, overrides, base: Base, file: Optional[dict], path: Optional[str]) -> None:
        values, labels = _map_keywords(kwargs)
        for key, value in _dotted_overrides(overrides).items():
            if key in labels:
                raise ConfigError(f"{labels[key]} and overrides {key!r} both set {key}; keep one")
            values[key], labels[key] = value, key
        old, state = dict(self.__dict__), dict(_kwargs=dict(kwargs), _overrides=overrides, _base=base)
        self.__dict__.update(state, _file=file, _path=path, _values=values, _labels=labels)
        try:
            self._cfg, self._weights = self._probe()
        except ConfigError:
            self.__dict__ = old
            raise

    def _merged(self, base: Base) -> dict:
        """base < the YAML file < the keywords and overrides, as one dict of sections."""
        data = _base_dict(base)
        mine = [(key.split(".")[0], {key.split(".")[1]: v}) for key, v in self._values.items()]
        for section, body in [*(self._file or {}).items(), *mine]:
            data[section] = {**(data.get(section) or {}), **(body or {})}
        if "epsilon" in self._kwargs and data["gcpo"].get("epsilon_high") is None:
            data["gcpo"]["epsilon_high"] = self._values["gcpo.epsilon_low"]  # TRL's upper clip follows
        return data

    def _probe(self) -> tuple[Config, Optional[list]]:
        """The effective config; weights given without reward.functions are counted in to_config (reward_funcs)."""
        data = self._merged(self._base)
        if "reward.weights" not in self._values or data["reward"].get("functions") is not None:
            return self._build(data), None
        weights = data["reward"].pop("weights")
        count = len(weights) if isinstance(weights, (list, tuple)) else 1
        alone = self._build({"reward": {"functions": ["auto"] * count, "weights": weights}})
        return self._build(data), alone.reward.weights

    def _build(self, data: dict) -> Config:
        try:
            cfg = from_dict(data)
        except ConfigError as e:
            raise self._named(e) from None
        self._check_counting(cfg)
        return cfg

    def _named(self, error: ConfigError) -> ConfigError:
        """The error with the keyword as typed in front, when the first key it names was set by a keyword."""
        text, first = str(error), (len(str(error)), None, None)
        for key, label in self._labels.items():
            found = re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", text)
            first = min(first, (found.start(), key, label)) if found else first
        return error if first[1] == first[2] else ConfigError(f"{first[2]}: {text}")

    def _check_counting(self, cfg: Config) -> None:
        """TRL's step counts are optimizer updates, gcpo-lite's rollout steps; TRL's `constant` skips warmup."""
        mu = cfg.gcpo.num_iterations
        for name in [n for n in STEP_COUNTED if n in self._kwargs and getattr(cfg.train, n) and mu > 1]:
            v = getattr(cfg.train, name)
            raise ConfigError(
                f"{name}={v} with num_iterations={mu}: TRL counts optimizer updates ({mu} a rollout), gcpo-lite "
                f"rollout steps; say which: overrides={{'train.{name}': {-(-v // mu)}}} for TRL's {v} updates, "
                f"or overrides={{'train.{name}': {v}}} for {v} rollout steps"
            )
        if _plain(self._kwargs.get("lr_scheduler_type")) == "constant" and cfg.train.warmup_steps:
            raise ConfigError(
                f"lr_scheduler_type='constant': TRL's skips warmup, gcpo-lite's constant warms up over "
                f"warmup_steps={cfg.train.warmup_steps} first; say lr_scheduler_type='constant_with_warmup' "
                "or warmup_steps=0"
            )

    def to_config(self, base: Base = None, *, reward_functions: Optional[list] = None) -> Config:
        """The validated Config: base (a Config or a dict of sections; default: base=, else gcpo-lite's defaults) <
        the YAML file < the keywords. reward_functions: reward.functions, from the trainer's reward_funcs."""
        data = self._merged(self._base if base is None else base)
        if reward_functions is not None:
            data["reward"] = {**(data.get("reward") or {}), "functions": list(reward_functions)}
        return self._build(data)

    def explicit_keys(self) -> set[str]:
        """The dotted keys the user set: by keyword, in overrides= or in the YAML file."""
        file = {f"{s}.{k}" for s, body in (self._file or {}).items() if isinstance(body, dict) for k in body}
        return set(self._values) | file

    @property
    def base(self) -> Base:
        """Where unset options come from (None: gcpo-lite's defaults); the trainer sets the run's own."""
        return self._base

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("_"):
            return object.__setattr__(self, name, value)
        kwargs = self._kwargs if name == "base" else {**self._kwargs, name: value}
        self._setup(kwargs, self._overrides, value if name == "base" else self._base, self._file, self._path)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in BATCH:  # TRL's view of the step's completions
            accum, step = self._kwargs.get("gradient_accumulation_steps") or 1, self._cfg.train.batch_size
            per_device = self._kwargs.get("per_device_train_batch_size") or step // (accum * _world_size())
            return {"per_device_train_batch_size": per_device, "generation_batch_size": step}.get(name, accum)
        if name in READ:
            return READ[name](self._cfg)
        keys, refusal = [TRL[name][0]] if name in TRL else FLAT.get(name, []), _refusal(name)
        if len(keys) == 1 and keys[0] == "reward.weights" and self._weights is not None:
            return self._weights
        if len(keys) == 1:
            return getattr(getattr(self._cfg, keys[0].split(".")[0]), keys[0].split(".")[1])
        if refusal and refusal[1]:
            return refusal[1][0]  # what gcpo-lite does, in TRL's terms (use_vllm: False)
        raise AttributeError(f"{name} names {' and '.join(keys)}" if keys else _unknown(name))

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self._kwargs.items()]
        parts += [f"overrides={self._overrides!r}"] if self._overrides is not None else []
        parts += [f"base=<{type(self._base).__name__}>"] if self._base is not None else []
        head = f"GCPOConfig.from_yaml({self._path!r}{', ' if parts else ''}" if self._path else "GCPOConfig("
        return head + ", ".join(parts) + ")"
