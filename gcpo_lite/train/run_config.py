"""The config a training run uses: the embedded default, a --config file with flags and overrides on top, or
(on resume) the run's own config.yaml. The CLI and a Python caller get the same Config from the same inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import yaml

from gcpo_lite.config import Config, ConfigError, apply_overrides, from_dict, load_config
from gcpo_lite.demo.default_run import EMBEDDED_DEFAULT
from gcpo_lite.models.registry import EMBEDDED_BASE_NAME, EMBEDDED_NAME

REAL_MODEL_DATASET = "gsm8k"  # what a real model trains on when no dataset is given

# what a resumed run may change and still match an uninterrupted one step for step: how long it runs and what
# it writes, never what a step computes
RESUME_EXACT_KEYS = frozenset(
    {
        "train.max_steps",
        "train.max_minutes",
        "train.save_steps",
        "train.save_total_limit",
        "train.report_to",
        "train.eval_steps",
    }
)


def run_config(
    config_path: Optional[str], model: Optional[str], dataset: Optional[str], overrides: list[str]
) -> tuple[Config, bool]:
    """(Config, used_embedded_default). With no config file, model or dataset: the embedded default run.
    `overrides` are `section.key=value` strings (the flags' own included), applied last."""
    if config_path is None and model is None and dataset is None:
        return from_dict(apply_overrides(EMBEDDED_DEFAULT, overrides)), True
    cfg = load_config(config_path, overrides)
    if cfg.data.dataset is None and cfg.model.name not in (None, EMBEDDED_NAME, EMBEDDED_BASE_NAME):
        # A real model solves the built-in tasks outright (every group all-correct: nothing to learn).
        cfg = load_config(config_path, [f"data.dataset={REAL_MODEL_DATASET}"] + overrides)
    return cfg, False


def resumed_config(run_dir: str | Path, overrides: list[str]) -> tuple[Config, list[str]]:
    """(the run's own config.yaml with overrides on top, the settings that changed and break exactness);
    output_dir stays the run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(
            f"--resume {run_dir}: no config.yaml there; pass the run directory of a gcpo-lite train run"
        )
    data = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    cfg = from_dict(apply_overrides(data, overrides + [f"train.output_dir={run_dir}"]))
    changed = changed_keys(from_dict(data), cfg)
    return cfg, [c for c in changed if c not in RESUME_EXACT_KEYS] and changed


def changed_keys(old: Config, new: Config) -> list[str]:
    """section.key of every setting that differs between two Configs, train.output_dir aside."""
    before, after = old.to_dict(), new.to_dict()
    return [
        f"{sec}.{k}"
        for sec, body in after.items()
        for k, v in body.items()
        if before[sec][k] != v and f"{sec}.{k}" != "train.output_dir"
    ]
