"""What export reads from a run directory: its config, the adapter to export (the final one or a
checkpoint's, checked by adapter_check before anything is written) and the metrics the model card reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import yaml

from gcpo_lite.config import Config, ConfigError, from_dict

if TYPE_CHECKING:
    from gcpo_lite.export.adapter_check import AdapterCheck

LATEST = "latest"  # --checkpoint latest: the newest checkpoint whose adapter passes the checks

_FIX_CONFIG = (
    "fix it by hand or restore it from a backup (export reads the base model and LoRA settings from it)"
)


def _yaml_problem(e: yaml.YAMLError) -> str:
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def run_config(run_dir: Path) -> Config:
    """RUN_DIR/config.yaml as a Config; a damaged file is a ConfigError naming it."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no config.yaml; pass the directory `gcpo-lite train` wrote")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); {_FIX_CONFIG}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({_yaml_problem(e)}); {_FIX_CONFIG}") from None
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be a config; {_FIX_CONFIG}") from None
    except OSError as e:
        raise ConfigError(f"{path} cannot be read ({e.strerror or e}); check its permissions") from None
    try:
        return from_dict(data or {})
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}; {_FIX_CONFIG}") from None


def _step_of(path: Path) -> int:
    return int(path.name.split("-")[1])


def newest_intact(run_dir: Path, check: AdapterCheck, say=None) -> Optional[Path]:
    """The newest checkpoint that resume would accept and whose adapter passes `check`; each one skipped is
    said (one line) when `say` is given. None when there is none."""
    from gcpo_lite.run.checkpoint_checks import checkpoint_problem
    from gcpo_lite.run.checkpoints import list_checkpoints

    for _, path in reversed(list_checkpoints(run_dir)):
        problem = checkpoint_problem(path) or check.problem(path / "adapter")
        if problem is None:
            return path
        if say:
            say(f"skipping checkpoint {path.name}: {problem}")
    return None


def _checkpoint_at(run_dir: Path, step: int, check: AdapterCheck) -> Path:
    from gcpo_lite.run.checkpoints import find_checkpoint

    path = find_checkpoint(run_dir, step)
    problem = check.problem(path / "adapter")
    if problem:
        raise ConfigError(
            f"checkpoint {path} cannot be exported: {problem}; choose another with --checkpoint N, or "
            f"--checkpoint {LATEST} for the newest intact one"
        )
    return path


def _refuse_final(run_dir: Path, problem: str, check: AdapterCheck) -> ConfigError:
    """The final adapter is damaged: name the newest intact checkpoint to export instead, if any."""
    found = newest_intact(run_dir, check)
    if found is None:
        return ConfigError(
            f"{problem}, and no checkpoint has an intact adapter either; restore {run_dir / 'adapter'} from "
            "a backup"
        )
    return ConfigError(
        f"{problem}; the newest intact checkpoint is {found.name}: export it with --checkpoint {LATEST} "
        f"(or restore {run_dir / 'adapter'} from a backup)"
    )


def _nothing_to_export(run_dir: Path, checkpoint: Union[int, str, None]) -> ConfigError:
    from gcpo_lite.run.checkpoints import list_checkpoints

    final = "no adapter/ and " if checkpoint is None else ""
    if not list_checkpoints(run_dir):
        return ConfigError(f"{run_dir} has {final}no checkpoint; the run saved no weights yet")
    return ConfigError(
        f"{run_dir} has {final}no checkpoint with an intact adapter (each is listed above with why); "
        "restore one from a backup"
    )


def choose_adapter(
    run_dir: Path, checkpoint: Union[int, str, None], check: AdapterCheck, say=print
) -> tuple[Path, Optional[int]]:
    """(adapter folder, its step; None for the final adapter), checked: checkpoint N, the newest intact one
    for "latest", else RUN_DIR/adapter (a damaged one is refused, never replaced silently), else, for a run
    stopped before its end (no adapter/ yet), the newest intact checkpoint, said."""
    if checkpoint is not None and checkpoint != LATEST:
        return _checkpoint_at(run_dir, int(checkpoint), check) / "adapter", int(checkpoint)
    final = run_dir / "adapter"
    if checkpoint is None and final.exists():
        problem = check.problem(final)
        if problem:
            raise _refuse_final(run_dir, problem, check)
        return final, None
    found = newest_intact(run_dir, check, say)
    if found is None:
        raise _nothing_to_export(run_dir, checkpoint)
    if checkpoint is None:
        say(f"{run_dir} has no adapter/ (the run stopped before its end); exporting {found.name}")
    return found / "adapter", _step_of(found)


def final_metrics(run_dir: Path, step: Optional[int] = None) -> dict:
    """The last training row (up to `step`) plus the latest eval_accuracy, from metrics.jsonl (rows that are
    damaged or not objects are skipped: the card is not worth stopping an export for)."""
    out: dict = {}
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return out
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if not isinstance(row, dict):
            continue
        at = row.get("step", 0)
        if step is not None and isinstance(at, (int, float)) and at > step:
            break
        if "loss" in row:
            out.update({k: v for k, v in row.items() if k != "eval_accuracy"})
        if "eval_accuracy" in row:
            out["eval_accuracy"], out["eval_step"] = row["eval_accuracy"], row.get("step")
    return out
