"""Every config value checked at load time: a ConfigError names the key, the bad value and how to fix it.

Every numeric option has a range in RANGES (finite, with a floor and a cap far above any real run): a value
outside it, NaN or infinite, is refused before it can hang the planner, train on a NaN loss or fail mid-run."""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Literal

from gcpo_lite.config.sections import SECTIONS
from gcpo_lite.config.units import parse_bytes
from gcpo_lite.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The values a numeric option may take: lo to hi, each end included unless open; hint says what is usual."""

    lo: int | float
    hi: int | float
    lo_open: bool = False
    hi_open: bool = False
    hint: str = ""

    def holds(self, v) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        return (v > self.lo if self.lo_open else v >= self.lo) and (
            v < self.hi if self.hi_open else v <= self.hi
        )

    def text(self) -> str:
        return f"{'>' if self.lo_open else '>='} {self.lo} and {'<' if self.hi_open else '<='} {self.hi}"


COUNT_MAX = 1_000_000_000  # steps, rows, intervals: more than any run has
BATCH_MAX = 2**20  # completions in one step, and so every per-step size and group size
TOKENS_MAX = 2**20  # tokens in one prompt or completion (million-token contexts exist)
# the seeds every RNG accepts (numpy's too); seed + rank and seed + epoch stay within torch's
SEED_MAX = 2**32 - 1
# above every vocabulary; the trainer checks the real size once the tokenizer is loaded (data/prompts.py)
TOKEN_ID_LIMIT = 2**24
CHOOSES = "null lets gcpo-lite choose"
# output heads and embeddings under their usual names (models/loading.py also checks the loaded model's own)
NOT_LORA_TARGETS = frozenset(
    {"lm_head", "embed_tokens", "embed_out", "wte", "wpe", "word_embeddings", "output"}
)

# section.key -> its range; tests/config/test_ranges.py walks every numeric field and fails on one missing here
RANGES: dict[str, Range] = {
    "lora.r": Range(1, 65536, hint="e.g. 16"),
    "lora.alpha": Range(1, 2**20, hint="e.g. 2 x lora.r"),
    "lora.dropout": Range(0, 1, hi_open=True, hint="0 = none, e.g. 0.05"),
    "data.max_prompt_length": Range(1, TOKENS_MAX),
    "data.eval_size": Range(0, COUNT_MAX, hint="0 = no held-out eval"),
    "reward.format_weight": Range(0, 1000, hint="0 = off, e.g. 0.1"),
    "reward.correct_threshold": Range(-(10**9), 10**9, hint="e.g. 1.0 for a 0/1 verifier"),
    "reward.timeout_s": Range(0, 10**6, lo_open=True, hint="e.g. 300"),
    "gcpo.num_generations": Range(
        2,
        BATCH_MAX,
        hint="a group needs at least 2 completions to have a contrast; use gcpo.num_generations=8",
    ),
    "gcpo.temperature": Range(0, 100, lo_open=True, hint="1.0 samples the model as it is"),
    "gcpo.top_p": Range(0, 1, lo_open=True, hint="1.0 disables nucleus sampling"),
    "gcpo.max_completion_length": Range(1, TOKENS_MAX),
    "gcpo.epsilon_low": Range(0, 1, hint="sequence level ~3e-4, token level ~0.2; null = that default"),
    "gcpo.epsilon_high": Range(0, 100, hint="sequence level ~4e-4, token level ~0.28; null = that default"),
    "gcpo.beta": Range(0, 100, hint="use 0 (no KL) or a small positive weight like 0.04"),
    "gcpo.num_iterations": Range(1, 1000, hint="usually 1 to 4"),
    "gcpo.dynamic_sampling_max_rounds": Range(0, 1000, hint="e.g. 3"),
    "train.max_steps": Range(0, COUNT_MAX),
    "train.max_minutes": Range(0, 10**8, lo_open=True, hint="null = no time limit"),
    "train.batch_size": Range(1, BATCH_MAX, hint="a multiple of gcpo.num_generations, e.g. 64"),
    "train.learning_rate": Range(0, 1, lo_open=True, hint="LoRA usually takes 1e-6 to 1e-4"),
    "train.weight_decay": Range(0, 10, hint="0 = none, e.g. 0.01"),
    "train.adam_beta1": Range(0, 1, hi_open=True, hint="e.g. 0.9"),
    "train.adam_beta2": Range(0, 1, hi_open=True, hint="e.g. 0.99"),
    "train.warmup_steps": Range(0, COUNT_MAX),
    "train.max_grad_norm": Range(0, 10**6, hint="0 = no clipping, e.g. 1.0"),
    "train.seed": Range(0, SEED_MAX, hint="any whole number in that range, e.g. 0"),
    "train.eval_steps": Range(0, COUNT_MAX, hint="0 = only at the end"),
    "train.eval_temperature": Range(0, 100, hint="0 = greedy"),
    "train.generation_batch_size": Range(1, BATCH_MAX, hint=CHOOSES),
    "train.micro_batch_size": Range(1, BATCH_MAX, hint=CHOOSES),
    "train.length_buckets": Range(1, BATCH_MAX, hint=CHOOSES),
    "train.logits_chunk_size": Range(1, COUNT_MAX, hint=CHOOSES),
    "train.save_steps": Range(0, COUNT_MAX, hint="0 = every train.save_minutes instead"),
    "train.save_minutes": Range(0, 10**8, hint="0 = checkpoint only at the end, e.g. train.save_minutes=10"),
    "train.save_total_limit": Range(1, COUNT_MAX, hint="null keeps every checkpoint"),
    "train.log_completions": Range(0, BATCH_MAX),
    "train.num_threads": Range(1, 4096, hint="null = torch's default"),
    "memory.min_num_generations": Range(2, BATCH_MAX, hint="e.g. 2"),
    "memory.max_num_generations": Range(2, BATCH_MAX, hint="e.g. 16"),
}
DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]{1,4})?")


def field_types(section_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {name: hints[name] for name in section_cls.__dataclass_fields__}


def choices() -> dict[tuple[str, str], tuple]:
    """(section, key) -> allowed values, read off the fields' Literal[...] types."""
    out = {}
    for section, cls in SECTIONS.items():
        for key, typ in field_types(cls).items():
            if typing.get_origin(typ) is Literal:
                out[(section, key)] = typing.get_args(typ)
    return out


def shown(value: Any, limit: int = 80) -> str:
    """repr(value), shortened to about `limit` characters so one bad value stays a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 12]}...{text[-6:]} ({len(text)} chars)"


def check_range(key: str, value) -> None:
    """ConfigError when `value` of the numeric option `key` (section.key) is outside RANGES[key]; None passes."""
    r = RANGES[key]
    if value is None or r.holds(value):
        return
    if isinstance(value, float) and not math.isfinite(value):
        why = "is not a finite number"
    elif value < 0 <= r.lo:
        why = "is negative"
    else:
        why = "is too small" if value < r.hi else "is too large"
    raise ConfigError(
        f"{key}={shown(value)} {why}; it must be {r.text()}" + (f"; {r.hint}" if r.hint else "")
    )


def validate(cfg) -> None:
    """Raise ConfigError naming the key, the bad value and how to fix it (cfg: a Config)."""
    for (section, key), allowed in choices().items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise ConfigError(
                f"{section}.{key}={value!r} is not one of {list(allowed)}; set e.g. {section}.{key}={allowed[0]}"
            )
    for key in RANGES:  # first: the checks below may loop over these values
        section, name = key.split(".")
        check_range(key, getattr(getattr(cfg, section), name))
    if cfg.model.name is not None and not cfg.model.name.strip():
        raise ConfigError(
            "model.name is empty; give a registry name (e.g. qwen2.5-0.5b), a hub id or a model directory, "
            "or leave it out for the embedded tiny model"
        )
    _validate_lists(cfg)
    _validate_reward(cfg.reward)
    _validate_gcpo(cfg)
    _validate_train(cfg)
    _validate_memory(cfg)


def _validate_lists(cfg) -> None:
    g = cfg.gcpo
    targets = cfg.lora.target_modules
    if not targets or not all(isinstance(m, str) and m.strip() for m in targets):
        raise ConfigError(
            f"lora.target_modules={shown(targets)} must be a non-empty list of module names, "
            "e.g. lora.target_modules=[q_proj,k_proj,v_proj,o_proj]"
        )
    head = [m for m in targets if m.strip() in NOT_LORA_TARGETS]
    if head:
        raise ConfigError(
            f"lora.target_modules has {head[0]!r}, the output head or an embedding: the loss reads the head's base "
            "weight through the fused kernels, so a LoRA there would never train (and sampling would see it); "
            "remove it, e.g. lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"
        )
    bad_ids = [
        i
        for i in g.suppress_tokens or []
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < TOKEN_ID_LIMIT
    ]
    if bad_ids:
        raise ConfigError(
            f"gcpo.suppress_tokens has {shown(bad_ids[0])}; it takes token ids (whole numbers from 0 to "
            f"{TOKEN_ID_LIMIT - 1}, below the model's vocabulary size), e.g. gcpo.suppress_tokens=[151643], or null"
        )


def _validate_reward(r) -> None:
    """reward.functions names, one finite weight each; the older verifier/format_weight keys only without it."""
    names = r.functions
    if names is not None and (not names or not all(isinstance(n, str) and n.strip() for n in names)):
        raise ConfigError(
            f"reward.functions={shown(names)} must be a non-empty list of names, e.g. "
            "reward.functions=[math,format] or [my_rewards.py:format_reward]; null = reward.verifier"
        )
    if names is not None and (r.verifier != "auto" or r.format_weight):
        raise ConfigError(
            "reward.verifier and reward.format_weight apply only when reward.functions is null; list the "
            f"verifier and `format` in reward.functions instead (weights in reward.weights), e.g. "
            f"reward.functions=[{r.verifier},format] reward.weights=[1.0,{r.format_weight or 0.1}]"
        )
    if r.weights is None:
        return
    count = len(names) if names is not None else 1 + bool(r.format_weight)
    bad = [w for w in r.weights if isinstance(w, bool) or not isinstance(w, (int, float)) or not abs(w) < 1e9]
    if bad or len(r.weights) != count:
        what = f"has {shown(bad[0])}" if bad else f"has {len(r.weights)} values for {count} reward functions"
        raise ConfigError(
            f"reward.weights={shown(r.weights)} {what}; give one finite number per reward function, e.g. "
            f"reward.weights=[{', '.join(['1.0'] * count)}], or null for 1.0 each"
        )


def _validate_gcpo(cfg) -> None:
    g, t = cfg.gcpo, cfg.train
    if t.batch_size % g.num_generations:
        lo = max(g.num_generations, t.batch_size // g.num_generations * g.num_generations)
        raise ConfigError(
            f"train.batch_size={t.batch_size} must be a positive multiple of gcpo.num_generations="
            f"{g.num_generations} (whole groups per step); use train.batch_size={lo} "
            f"or {lo + g.num_generations}"
        )


def _validate_train(cfg) -> None:
    t = cfg.train
    if not DEVICE.fullmatch(t.device):
        raise ConfigError(
            f"train.device={shown(t.device)} is not a device gcpo-lite runs on; use auto, cpu, cuda or cuda:N "
            "(e.g. cuda:0)"
        )
    sinks = [s.strip() for s in t.report_to.split(",") if s.strip()]
    bad = [s for s in sinks if s not in ("none", "tensorboard", "wandb")]
    if bad:
        raise ConfigError(
            f"train.report_to={t.report_to!r}: unknown {bad}; use none, tensorboard, wandb or tensorboard,wandb"
        )


def _validate_memory(cfg) -> None:
    s = cfg.memory
    if s.memory_budget is not None:
        if parse_bytes(s.memory_budget) <= 0:
            raise ConfigError(f"memory.memory_budget={s.memory_budget!r} must be positive, e.g. 8GiB")
    if not s.min_num_generations <= s.max_num_generations:
        raise ConfigError(
            f"memory.min_num_generations={s.min_num_generations} and max_num_generations="
            f"{s.max_num_generations} must satisfy 2 <= min <= max; e.g. 2 and 16"
        )
    highest = min(s.max_num_generations, cfg.train.batch_size)  # a larger G cannot divide the batch
    if s.auto_num_generations and not any(
        cfg.train.batch_size % g == 0 for g in range(s.min_num_generations, highest + 1)
    ):
        raise ConfigError(
            f"memory.auto_num_generations: no G in [{s.min_num_generations}, "
            f"{s.max_num_generations}] divides train.batch_size={cfg.train.batch_size}; "
            "use a batch size that is a multiple of 8 or 16"
        )
