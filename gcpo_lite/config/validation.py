"""Every config value checked at load time: a ConfigError names the key, the bad value and how to fix it."""

from __future__ import annotations

import typing
from typing import Any, Literal

from gcpo_lite.config.sections import SECTIONS
from gcpo_lite.config.units import parse_bytes
from gcpo_lite.errors import ConfigError


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


def validate(cfg) -> None:
    """Raise ConfigError naming the key, the bad value and how to fix it (cfg: a Config)."""
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
    _validate_lists(cfg)
    _validate_gcpo(cfg)
    _validate_positive(cfg)
    _validate_train(cfg)
    _validate_memory(cfg)
    if cfg.train.eval_temperature < 0:
        raise ConfigError(f"train.eval_temperature={cfg.train.eval_temperature} must be >= 0 (0 = greedy)")


def _validate_lists(cfg) -> None:
    g = cfg.gcpo
    targets = cfg.lora.target_modules
    if not targets or not all(isinstance(m, str) and m.strip() for m in targets):
        raise ConfigError(
            f"lora.target_modules={shown(targets)} must be a non-empty list of module names, "
            "e.g. lora.target_modules=[q_proj,k_proj,v_proj,o_proj]"
        )
    bad_ids = [i for i in g.suppress_tokens or [] if isinstance(i, bool) or not isinstance(i, int) or i < 0]
    if bad_ids:
        raise ConfigError(
            f"gcpo.suppress_tokens has {shown(bad_ids[0])}; it takes token ids (whole numbers >= 0), "
            "e.g. gcpo.suppress_tokens=[151643], or null"
        )


def _validate_gcpo(cfg) -> None:
    g, t = cfg.gcpo, cfg.train
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


def _validate_positive(cfg) -> None:
    g, t = cfg.gcpo, cfg.train
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


def _validate_train(cfg) -> None:
    t = cfg.train
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


def _validate_memory(cfg) -> None:
    s = cfg.memory
    if s.memory_budget is not None:
        if parse_bytes(s.memory_budget) <= 0:
            raise ConfigError(f"memory.memory_budget={s.memory_budget!r} must be positive, e.g. 8GiB")
    if not 2 <= s.min_num_generations <= s.max_num_generations:
        raise ConfigError(
            f"memory.min_num_generations={s.min_num_generations} and max_num_generations="
            f"{s.max_num_generations} must satisfy 2 <= min <= max; e.g. 2 and 16"
        )
    if s.auto_num_generations and not any(
        cfg.train.batch_size % g == 0 for g in range(s.min_num_generations, s.max_num_generations + 1)
    ):
        raise ConfigError(
            f"memory.auto_num_generations: no G in [{s.min_num_generations}, "
            f"{s.max_num_generations}] divides train.batch_size={cfg.train.batch_size}; "
            "use a batch size that is a multiple of 8 or 16"
        )
