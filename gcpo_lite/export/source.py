"""What export reads from a run directory: its config, the adapter to export (the final one or a
checkpoint's) and the metrics the model card reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import yaml

from gcpo_lite.config import Config, ConfigError, from_dict


def run_config(run_dir: Path) -> Config:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no config.yaml; pass the directory `gcpo-lite train` wrote")
    return from_dict(yaml.safe_load(path.read_text()) or {})


def adapter_source(run_dir: Path, checkpoint: Optional[int] = None) -> Path:
    """checkpoints/step-N/adapter for checkpoint N, else RUN_DIR/adapter, else the latest checkpoint's."""
    from gcpo_lite.run.checkpoints import find_checkpoint, list_checkpoints

    if checkpoint is not None:
        return find_checkpoint(run_dir, checkpoint) / "adapter"
    if (run_dir / "adapter" / "adapter_config.json").is_file():
        return run_dir / "adapter"
    if list_checkpoints(run_dir):
        return find_checkpoint(run_dir) / "adapter"
    raise ConfigError(f"{run_dir} has neither adapter/ nor checkpoints/; the run saved no weights yet")


def source_step(src: Path, checkpoint: Optional[int] = None) -> Optional[int]:
    """The step of the adapter at src: N for checkpoints/step-N/adapter, None for the final adapter."""
    if checkpoint is not None:
        return checkpoint
    if src.parent.parent.name == "checkpoints":
        return int(src.parent.name.split("-")[1])
    return None


def final_metrics(run_dir: Path, step: Optional[int] = None) -> dict:
    """The last training row (up to `step`) plus the latest eval_accuracy, from metrics.jsonl."""
    out: dict = {}
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if step is not None and row.get("step", 0) > step:
            break
        if "loss" in row:
            out.update({k: v for k, v in row.items() if k != "eval_accuracy"})
        if "eval_accuracy" in row:
            out["eval_accuracy"], out["eval_step"] = row["eval_accuracy"], row.get("step")
    return out
