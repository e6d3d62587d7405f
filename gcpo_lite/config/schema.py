"""Run configuration: nested dataclasses, YAML load, dotted overrides, validation.

A YAML file mirrors the dataclasses below (`gcpo: {num_generations: 8}`); the command
line adds `gcpo.num_generations=4` style overrides on top. Every key is checked: an
unknown one fails with the valid keys of its section, an out-of-range value fails with
how to fix it. Field comments are the documentation (`gcpo-lite train --help` and the
README's option table are generated from them).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from gcpo_lite.config.objective import IS_LEVELS, LOSS_TYPES, resolved_epsilons
from gcpo_lite.config.units import parse_bytes
from gcpo_lite.errors import ConfigError  # noqa: E402,F401 (re-exported: gcpo_lite.config.ConfigError)


@dataclass
class ModelConfig:
    name: Optional[str] = field(
        default=None,
        metadata={"help": "registry short name, hub id or local path; None = the embedded tiny model"},
    )
    revision: Optional[str] = field(default=None, metadata={"help": "hub revision (branch, tag or commit)"})
    quantize: bool = field(
        default=True,
        metadata={"help": "load the base in 4-bit NF4 via bitsandbytes (--no-quantize loads bf16/fp32)"},
    )
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = field(default="nf4", metadata={"help": "nf4 or fp4"})
    bnb_4bit_use_double_quant: bool = field(
        default=True, metadata={"help": "quantize the quantization constants too (~0.4 bit/param saved)"}
    )
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata={"help": "bfloat16 | float16 | float32 | auto (bf16 on GPUs that have it, else fp32)"},
    )
    gradient_checkpointing: bool = field(
        default=True, metadata={"help": "recompute activations in backward: less memory, ~30% more time"}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "run model code shipped with a hub repo; off unless you trust it"}
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = field(
        default="sdpa", metadata={"help": "sdpa | eager | flash_attention_2"}
    )


@dataclass
class LoraConfig:
    r: int = field(default=16, metadata={"help": "adapter rank"})
    alpha: int = field(default=32, metadata={"help": "scaling numerator: the update is (alpha / r) * B @ A"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the adapter input"})
    target_modules: list = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "every attention and MLP projection"},
    )


@dataclass
class DataConfig:
    dataset: Optional[str] = field(
        default=None,
        metadata={
            "help": "built-in task name, hub id or local file (.jsonl/.json/.csv/.parquet); None = built-in "
            "`addition`"
        },
    )
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    eval_split: Optional[str] = field(
        default="test",
        metadata={"help": "held-out split for eval_accuracy (None: carve eval_size rows off train)"},
    )
    prompt_field: Optional[str] = field(
        default=None, metadata={"help": "column with the question (None: the preset's or `prompt`)"}
    )
    answer_field: Optional[str] = field(
        default=None, metadata={"help": "column with the final answer (None: the preset's or `answer`)"}
    )
    solution_field: Optional[str] = field(
        default=None,
        metadata={
            "help": "column with the worked reference solution used as gold (None: the preset's or "
            "`solution`)"
        },
    )
    system_prompt: Optional[str] = field(
        default=None, metadata={"help": "system message put before every question (None: the task's own)"}
    )
    max_prompt_length: int = field(
        default=512,
        metadata={"help": "prompts longer than this many tokens are dropped, and the drops counted"},
    )
    eval_size: int = field(default=200, metadata={"help": "held-out prompts used for eval_accuracy"})
    shuffle: bool = field(
        default=True, metadata={"help": "shuffle the training prompts (seeded by train.seed)"}
    )


@dataclass
class RewardConfig:
    verifier: Literal["auto", "math", "math_verify"] = field(
        default="auto", metadata={"help": "auto (the task's own) | math | math_verify"}
    )
    format_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of the format reward (answer in \boxed{} or the task's answer format); 0 = off"
        },
    )
    last_number_fallback: bool = field(
        default=True,
        metadata={"help": 'math verifier: take the last number when no \boxed{} / #### / "the answer is"'},
    )
    truncated: Literal["zero", "score", "mask"] = field(
        default="zero",
        metadata={
            "help": "a sample that hit max_completion_length without its end token: zero (scores 0 and counts "
            "as wrong) | score (its text is scored as usual) | mask (scored, but left out of the loss, like "
            "DAPO's overlong filtering); counted as truncated_zeroed / truncated_masked"
        },
    )


@dataclass
class GCPOConfig:
    num_generations: int = field(
        default=8,
        metadata={
            "help": "G, completions sampled per prompt (>= 2); `auto` = the largest that fits memory "
            "(scheduler.auto_num_generations)"
        },
    )
    temperature: float = field(
        default=1.0, metadata={"help": "sampling temperature; the training log-probs use the same one"}
    )
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    max_completion_length: int = field(default=256, metadata={"help": "tokens per completion, EOS included"})
    gold_injection: Literal["all_wrong", "never", "always"] = field(
        default="all_wrong", metadata={"help": "all_wrong (GCPO) | never (plain GRPO) | always"}
    )
    gold_overflow: Literal["skip", "truncate"] = field(
        default="skip",
        metadata={
            "help": "gold longer than max_completion_length: skip (not injected, counted as gold_skipped_overflow) "
            "| truncate (its first max_completion_length tokens, which lack the answer and the end token, yet keep "
            "the full reward)"
        },
    )
    scale_rewards: Literal["group", "batch", "none"] = field(
        default="group", metadata={"help": "divide advantages by the std of: group | batch | none"}
    )
    importance_sampling_level: Literal[IS_LEVELS] = field(
        default="sequence", metadata={"help": "sequence (GSPO ratio, geometric mean per completion) | token"}
    )
    epsilon_low: Optional[float] = field(
        default=None, metadata={"help": "lower clip; None = 3e-4 (sequence) or 0.2 (token)"}
    )
    epsilon_high: Optional[float] = field(
        default=None, metadata={"help": "upper clip; None = 4e-4 (sequence) or 0.28 (token)"}
    )
    beta: float = field(
        default=0.0,
        metadata={
            "help": "KL weight (k3 estimator) against the base model with the adapter disabled; 0 = no KL"
        },
    )
    loss_type: Literal[LOSS_TYPES] = field(
        default="seq_mean_token_mean", metadata={"help": "seq_mean_token_mean | token_mean (DAPO) | dr_grpo"}
    )
    num_iterations: int = field(default=1, metadata={"help": "policy updates per rollout batch"})
    dynamic_sampling: bool = field(
        default=False,
        metadata={
            "help": "DAPO's dynamic sampling: drop groups whose rewards are all equal and refill the step with "
            "groups of new prompts (oversampled by the last round's keep rate), for at most "
            "dynamic_sampling_max_rounds extra generation rounds; every generated rollout is counted (rollouts)"
        },
    )
    dynamic_sampling_max_rounds: int = field(
        default=3, metadata={"help": "extra generation rounds a step may take to refill (dynamic_sampling)"}
    )
    suppress_tokens: Optional[list] = field(
        default=None,
        metadata={
            "help": "token ids never sampled and masked out of training log-probs; "
            "None = pad (when it differs from EOS)"
        },
    )


@dataclass
class TrainConfig:
    output_dir: str = field(
        default="runs/gcpo", metadata={"help": "run directory: adapter, config.yaml, metrics.jsonl"}
    )
    max_steps: int = field(
        default=200,
        metadata={
            "help": "training steps: one rollout batch each, trained with gcpo.num_iterations optimizer updates; "
            "the LR schedule advances once per step"
        },
    )
    max_minutes: Optional[float] = field(
        default=None, metadata={"help": "stop after this much wall time, even before max_steps"}
    )
    batch_size: int = field(
        default=64, metadata={"help": "completions per step = prompts per step x num_generations"}
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate on the LoRA weights"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    optimizer: Literal["adamw", "adamw_8bit", "paged_adamw_8bit"] = field(
        default="adamw",
        metadata={
            "help": "adamw (torch, fp32 moments) | adamw_8bit (bitsandbytes, 8-bit moments; CPU or CUDA) | "
            "paged_adamw_8bit (8-bit moments in CUDA unified memory; CUDA only); `plan` budgets the same one"
        },
    )
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.99, metadata={"help": "AdamW beta2"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warmup steps"})
    lr_scheduler: Literal["constant", "linear", "cosine"] = field(
        default="constant", metadata={"help": "constant | linear | cosine (after warmup)"}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping; 0 = off"})
    seed: int = field(default=0, metadata={"help": "seeds torch, python and the data order"})
    eval_steps: int = field(
        default=25, metadata={"help": "held-out eval every N steps (0 = only at the end)"}
    )
    eval_temperature: float = field(default=0.0, metadata={"help": "0 = greedy held-out eval"})
    generation_batch_size: Optional[int] = field(
        default=None, metadata={"help": "sequences per generate call; None = the whole step"}
    )
    micro_batch_size: Optional[int] = field(
        default=None, metadata={"help": "sequences per forward/backward; None = the whole step"}
    )
    kernels: Literal["auto", "native", "reference"] = field(
        default="auto",
        metadata={
            "help": "log-prob / loss kernels: auto | native | reference (env GCPO_LITE_KERNELS overrides)"
        },
    )
    fused_loss: bool = field(
        default=True,
        metadata={
            "help": "train through the fused op gcpo_loss_from_hidden (hidden states -> loss, chunked lm_head); "
            "false: per-token log-probs first, then the loss (the composition: same loss and gradients)"
        },
    )
    length_buckets: Optional[int] = field(
        default=None,
        metadata={
            "help": "each training micro-batch runs as up to this many parts of rows of similar length, each "
            "padded to its own longest row (same gradients, less padding); None = 4 on CPU, 1 on CUDA"
        },
    )
    share_prompts: bool = field(
        default=True,
        metadata={
            "help": "in the update, run each distinct prompt of a micro-batch once and its G rows' completions on "
            "its keys and values (loss and gradients equal the per-row forward's to fp32 rounding; with "
            "lora.dropout > 0 a prompt's rows share one dropout mask)"
        },
    )
    logits_chunk_size: Optional[int] = field(
        default=None, metadata={"help": "tokens per lm_head chunk in the loss; None = the kernel's default"}
    )
    save_steps: int = field(default=0, metadata={"help": "checkpoint every N steps (0 = only at the end)"})
    save_total_limit: Optional[int] = field(
        default=3,
        metadata={"help": "checkpoints kept in RUN_DIR/checkpoints (oldest deleted first); None = all"},
    )
    report_to: str = field(
        default="none",
        metadata={
            "help": "extra metric sinks: none | tensorboard | wandb | tensorboard,wandb (optional packages)"
        },
    )
    log_completions: int = field(
        default=2, metadata={"help": "sampled completions written to completions.jsonl per step"}
    )
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    num_threads: Optional[int] = field(
        default=None, metadata={"help": "torch CPU threads; None = torch's default"}
    )


@dataclass
class SchedulerConfig:
    memory_budget: Optional[str] = field(
        default=None,
        metadata={
            "help": "memory the run may use, e.g. 8GiB or 7.5GB; None = free GPU memory (CPU: available "
            "RAM); see `gcpo-lite plan`"
        },
    )
    auto_num_generations: bool = field(
        default=False,
        metadata={
            "help": "let the planner set gcpo.num_generations: the largest G in [min_num_generations, "
            "max_num_generations] dividing train.batch_size whose group fits one generate call"
        },
    )
    min_num_generations: int = field(
        default=2,
        metadata={
            "help": "smallest G auto_num_generations may pick (below 4 it warns: gold injection needs a "
            "group to contrast)"
        },
    )
    max_num_generations: int = field(default=16, metadata={"help": "largest G auto_num_generations may pick"})
    oom_backoff: bool = field(
        default=True,
        metadata={
            "help": "on out-of-memory, halve the generation batch / micro-batch and redo the same work (no "
            "sample lost)"
        },
    )
    dequantized_base: bool = field(
        default=True,
        metadata={
            "help": "keep a dequantized copy (compute dtype) of the frozen 4-bit base for the decoder layers "
            "that fit the memory budget with 20% to spare, so matmuls skip bitsandbytes' per-call "
            "dequantization; false = always dequantize on the fly (the least memory)"
        },
    )
    cpu_allocator: Literal["caching", "system"] = field(
        default="caching",
        metadata={
            "help": "CPU runs: caching = large tensors from reused mappings, at most the plan's allocator slack "
            "cached (resident memory = live + slack, as planned); system = glibc's heap, which fragments "
            "(measured up to 3.4x the phase's live bytes); caching needs the native extension"
        },
    )


@dataclass
class RolloutConfig:
    backend: Literal["builtin"] = field(
        default="builtin",
        metadata={
            "help": "what turns prompts into completions and their sampling log-probs (gcpo_lite/"
            "rollout/backends.py): builtin = gcpo-lite's KV-cached sampler on the training model"
        },
    )
    share_prefill: bool = field(
        default=True,
        metadata={"help": "prefill each distinct prompt once and copy its KV cache to its G samples (exact)"},
    )
    drop_finished: bool = field(
        default=True,
        metadata={"help": "drop finished sequences from the decode batch, compacting the KV cache (exact)"},
    )
    merge_lora: bool = field(
        default=True,
        metadata={
            "help": "while sampling, each LoRA projection over a dequantized base layer (scheduler."
            "dequantized_base) runs one matmul on W + scaling * B @ A (a second copy of those layers, held only "
            "during the rollout and counted in the plan); log-probs equal the unmerged path's to fp32 rounding"
        },
    )


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    gcpo: GCPOConfig = field(default_factory=GCPOConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)

    def __post_init__(self):
        validate(self)

    @property
    def prompts_per_step(self) -> int:
        return self.train.batch_size // self.gcpo.num_generations

    def resolved_epsilons(self) -> tuple[float, float]:
        """(epsilon_low, epsilon_high) with the per-level defaults filled in."""
        g = self.gcpo
        return resolved_epsilons(g.importance_sampling_level, g.epsilon_low, g.epsilon_high)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_cpu_allocator(self, allocator: str) -> "Config":
        """A new, validated Config with scheduler.cpu_allocator set (the allocator the run really got)."""
        data = self.to_dict()
        data["scheduler"]["cpu_allocator"] = allocator
        return from_dict(data)

    def with_batch_size(self, batch_size: int) -> "Config":
        """A new, validated Config with train.batch_size set (one torchrun process's share of the step)."""
        data = self.to_dict()
        data["train"]["batch_size"] = batch_size
        return from_dict(data)

    def with_num_generations(self, num_generations: int) -> "Config":
        """A new, validated Config with G set (how a planner-chosen G enters the run's effective config);
        this one is not changed."""
        data = self.to_dict()
        data["gcpo"]["num_generations"] = num_generations
        return from_dict(data)


def choices() -> dict[tuple[str, str], tuple]:
    """(section, key) -> allowed values, read off the fields' Literal[...] types."""
    out = {}
    for section, cls in _sections().items():
        for key, typ in _field_types(cls).items():
            if typing.get_origin(typ) is Literal:
                out[(section, key)] = typing.get_args(typ)
    return out


def validate(cfg: Config) -> None:
    """Raise ConfigError naming the key, the bad value and how to fix it."""
    for (section, key), allowed in choices().items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise ConfigError(
                f"{section}.{key}={value!r} is not one of {list(allowed)}; set e.g. {section}.{key}={allowed[0]}"
            )
    if cfg.model.name is not None and not cfg.model.name.strip():
        raise ConfigError(
            "model.name is empty; give a registry name (e.g. qwen2.5-0.5b), a hub id or a model directory, "
            "or leave it out for the embedded tiny model"
        )
    g, t = cfg.gcpo, cfg.train
    targets = cfg.lora.target_modules
    if not targets or not all(isinstance(m, str) and m.strip() for m in targets):
        raise ConfigError(
            f"lora.target_modules={_shown(targets)} must be a non-empty list of module names, "
            "e.g. lora.target_modules=[q_proj,k_proj,v_proj,o_proj]"
        )
    bad_ids = [i for i in g.suppress_tokens or [] if isinstance(i, bool) or not isinstance(i, int) or i < 0]
    if bad_ids:
        raise ConfigError(
            f"gcpo.suppress_tokens has {_shown(bad_ids[0])}; it takes token ids (whole numbers >= 0), "
            "e.g. gcpo.suppress_tokens=[151643], or null"
        )
    if g.num_generations < 2:
        raise ConfigError(
            f"gcpo.num_generations={g.num_generations}: a group needs at least 2 completions "
            "to have a contrast; use gcpo.num_generations=8 (or at least 2)"
        )
    if t.batch_size < 1 or t.batch_size % g.num_generations:
        lo = max(g.num_generations, t.batch_size // g.num_generations * g.num_generations)
        raise ConfigError(
            f"train.batch_size={t.batch_size} must be a positive multiple of gcpo.num_generations="
            f"{g.num_generations} (whole groups per step); use train.batch_size={lo} "
            f"or {lo + g.num_generations}"
        )
    for key in ("epsilon_low", "epsilon_high"):
        v = getattr(g, key)
        if v is not None and v < 0:
            raise ConfigError(
                f"gcpo.{key}={v} is negative; clip ranges are >= 0 (sequence level: ~3e-4, token: ~0.2)"
            )
    if g.beta < 0:
        raise ConfigError(
            f"gcpo.beta={g.beta} is negative; use 0 (no KL) or a small positive weight like 0.04"
        )
    positive = {
        ("gcpo", "temperature"): g.temperature,
        ("gcpo", "max_completion_length"): g.max_completion_length,
        ("gcpo", "num_iterations"): g.num_iterations,
        ("train", "learning_rate"): t.learning_rate,
        ("lora", "r"): cfg.lora.r,
        ("data", "max_prompt_length"): cfg.data.max_prompt_length,
    }
    for (section, key), v in positive.items():
        if not v > 0:
            raise ConfigError(f"{section}.{key}={v} must be > 0")
    if not 0 < g.top_p <= 1:
        raise ConfigError(f"gcpo.top_p={g.top_p} must be in (0, 1]; 1.0 disables nucleus sampling")
    if t.max_steps < 0:
        raise ConfigError(f"train.max_steps={t.max_steps} must be >= 0")
    for key in (
        "generation_batch_size",
        "micro_batch_size",
        "logits_chunk_size",
        "num_threads",
        "length_buckets",
    ):
        v = getattr(t, key)
        if v is not None and v < 1:
            raise ConfigError(f"train.{key}={v} must be >= 1, or null to let gcpo-lite choose")
    if t.save_steps < 0 or (t.save_total_limit is not None and t.save_total_limit < 1):
        raise ConfigError(
            f"train.save_steps={t.save_steps} must be >= 0 and train.save_total_limit="
            f"{t.save_total_limit} >= 1 (or null to keep every checkpoint)"
        )
    sinks = [s.strip() for s in t.report_to.split(",") if s.strip()]
    bad = [s for s in sinks if s not in ("none", "tensorboard", "wandb")]
    if bad:
        raise ConfigError(
            f"train.report_to={t.report_to!r}: unknown {bad}; use none, tensorboard, wandb or tensorboard,wandb"
        )
    _validate_scheduler(cfg)
    if t.eval_temperature < 0:
        raise ConfigError(f"train.eval_temperature={t.eval_temperature} must be >= 0 (0 = greedy)")


def _validate_scheduler(cfg: Config) -> None:
    s = cfg.scheduler
    if s.memory_budget is not None:
        if parse_bytes(s.memory_budget) <= 0:
            raise ConfigError(f"scheduler.memory_budget={s.memory_budget!r} must be positive, e.g. 8GiB")
    if not 2 <= s.min_num_generations <= s.max_num_generations:
        raise ConfigError(
            f"scheduler.min_num_generations={s.min_num_generations} and max_num_generations="
            f"{s.max_num_generations} must satisfy 2 <= min <= max; e.g. 2 and 16"
        )
    if s.auto_num_generations and not any(
        cfg.train.batch_size % g == 0 for g in range(s.min_num_generations, s.max_num_generations + 1)
    ):
        raise ConfigError(
            f"scheduler.auto_num_generations: no G in [{s.min_num_generations}, "
            f"{s.max_num_generations}] divides train.batch_size={cfg.train.batch_size}; "
            "use a batch size that is a multiple of 8 or 16"
        )


# ---------------------------------------------------------------- loading and overrides


def _sections() -> dict[str, type]:
    return {
        f.name: f.type if isinstance(f.type, type) else globals()[f.type] for f in dataclasses.fields(Config)
    }


def _field_types(section_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}


def _unknown_key(where: str, key: Any, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1) if isinstance(key, str) else []
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {where}{key!r}.{hint} Valid keys: {', '.join(sorted(valid))}")


def _coerce(value: Any, typ: Any, name: str) -> Any:
    """Turn a YAML / command-line value into the field's type, or fail saying what was expected."""
    origin = typing.get_origin(typ)
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    optional = origin is typing.Union and type(None) in typing.get_args(typ)
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~"))):
        return None
    base = args[0] if optional else typ
    if typing.get_origin(base) is Literal:  # a choice: a string here, checked against the choices in validate
        base = str
    if isinstance(value, str) and base is not str:
        try:
            value = yaml.safe_load(value) if value.strip() else value
        except (yaml.YAMLError, RecursionError):
            pass  # not YAML: kept as the string, which the checks below refuse with the field's type
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if base is str:
            if isinstance(
                value, (list, dict)
            ):  # `output_dir: [a]` or an unquoted `a: b` would become "['a']"
                raise TypeError
            return str(value)
        if base is list or typing.get_origin(base) is list:
            if isinstance(value, (list, tuple)):
                return list(value)
            raise TypeError
    except (TypeError, ValueError):
        pass
    else:
        return value
    tname = getattr(base, "__name__", str(base))
    hint = (
        f"; quote it: {name}: 'a: b' in a file, {name}=\"'a: b'\" on the command line" if base is str else ""
    )
    raise ConfigError(f"{name}={_shown(value)} should be {_a(tname)}{' or null' if optional else ''}{hint}")


def _expand_auto_group_size(data: dict) -> dict:
    """`gcpo.num_generations: auto` = scheduler.auto_num_generations, with a valid G until the planner picks.

    The stand-in is the largest G in the scheduler's range that divides train.batch_size."""
    gcpo = data.get("gcpo") if isinstance(data.get("gcpo"), dict) else None
    if not gcpo or str(gcpo.get("num_generations")).lower() != "auto":
        return data
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    sched = data.setdefault("scheduler", {}) or {}
    data["scheduler"] = sched
    sched["auto_num_generations"] = True
    lo = _coerce(sched.get("min_num_generations", 2), int, "scheduler.min_num_generations")
    hi = _coerce(sched.get("max_num_generations", 16), int, "scheduler.max_num_generations")
    train = data.get("train") if isinstance(data.get("train"), dict) else {}
    batch = _coerce(train.get("batch_size", TrainConfig.batch_size), int, "train.batch_size")
    fits = [g for g in range(max(2, lo), hi + 1) if batch % g == 0]
    if not fits:
        raise ConfigError(
            f"gcpo.num_generations=auto: no G in [{lo}, {hi}] (scheduler.min/max_num_generations) "
            f"divides train.batch_size={batch}; change the batch size or the range"
        )
    data["gcpo"]["num_generations"] = max(fits)
    return data


def from_dict(data: dict | None) -> Config:
    """Build and validate a Config from a nested dict (as YAML gives it)."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"a config file must be a mapping of sections, got {_a(type(data).__name__)}")
    data = _expand_auto_group_size(data)
    sections = _sections()
    kwargs = {}
    for name, body in data.items():
        if name not in sections:
            raise _unknown_key("section ", name, list(sections))
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"section {name!r} must be a mapping of keys, got {body!r}")
        types = _field_types(sections[name])
        values = {}
        for key, value in body.items():
            if key not in types:
                raise _unknown_key(f"{name}.", key, list(types))
            values[key] = _coerce(value, types[key], f"{name}.{key}")
        kwargs[name] = sections[name](**values)
    return Config(**kwargs)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings to a nested dict (values parsed as YAML)."""
    _check_shape(data)
    data = {k: dict(v or {}) for k, v in (data or {}).items()}
    sections = _sections()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"override {_shown(item)} is not of the form section.key=value (e.g. gcpo.num_generations=4)"
            )
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2:
            raise ConfigError(
                f"override {dotted!r} must name section.key, e.g. train.learning_rate=1e-5; "
                f"sections: {', '.join(sections)}"
            )
        section, key = parts
        if section not in sections:
            raise _unknown_key("section ", section, list(sections))
        types = _field_types(sections[section])
        if key not in types:
            raise _unknown_key(f"{section}.", key, list(types))
        try:
            data.setdefault(section, {})[key] = yaml.safe_load(raw) if raw.strip() else ""
        except (yaml.YAMLError, RecursionError) as e:
            why = str(getattr(e, "problem", None) or e).splitlines()[0]
            raise ConfigError(
                f"override {_shown(item)}: the value is not valid YAML ({why}); close brackets and quotes, "
                f"e.g. lora.target_modules=[q_proj,v_proj] or data.system_prompt='a: b'"
            ) from None
    return data


def _shown(value: Any, limit: int = 80) -> str:
    """repr(value), shortened to about `limit` characters so one bad value stays a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 12]}...{text[-6:]} ({len(text)} chars)"


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line for a YAML error: the problem and where (PyYAML's own message spans several lines)."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _check_shape(data) -> None:
    """A config is a mapping of sections, each a mapping of keys (or empty)."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(
            f"a config must be a mapping of sections (model:, train:, ...), got "
            f"{_a(type(data).__name__)}; see configs/ for the layout"
        )
    for name, body in data.items():
        if body is not None and not isinstance(body, dict):
            raise ConfigError(
                f"config section {name!r} must be a mapping of keys, got {body!r}; write e.g. "
                f"`{name}:` followed by indented `key: value` lines"
            )


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read YAML (if any), apply dotted overrides, validate."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(
                f"--config {str(p)!r} is a directory; pass a YAML file, e.g. configs/tiny_addition_cpu.yaml"
            )
        if not p.is_file():
            raise ConfigError(
                f"config file {str(p)!r} not found; configs ship in configs/ (e.g. configs/tiny_addition_cpu.yaml)"
            )
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(
                f"config file {str(p)!r} is not valid YAML ({_yaml_problem(e)}); fix that line, or start "
                "from one of configs/*.yaml"
            ) from None
        except RecursionError:
            raise ConfigError(
                f"config file {str(p)!r} is nested too deeply to be a config; start from one of configs/*.yaml"
            ) from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"config file {str(p)!r} is not UTF-8 text ({e.reason}); re-save it as UTF-8"
            ) from None
        except OSError as e:
            raise ConfigError(
                f"config file {str(p)!r} cannot be read ({e.strerror or e}); check its permissions"
            ) from None
    return from_dict(apply_overrides(data, overrides or []))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def describe_options() -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every option, from the fields' metadata.

    `gcpo-lite train --help` and the README's option table (options_markdown) are made from it."""
    rows = []
    for name, cls in _sections().items():
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{name}.{f.name}", repr(default), f.metadata.get("help", "")))
    return rows


def options_markdown() -> str:
    """The README's option tables, one per section (python -m gcpo_lite.config prints them)."""
    out = []
    for section in _sections():
        out += [f"**{section}**", "", "| key | default | meaning |", "|---|---|---|"]
        for key, default, text in describe_options():
            if key.startswith(section + "."):
                cell = text.replace("|", "\\|")  # a literal | would split the table cell
                out.append(f"| `{key}` | `{default}` | {cell} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
