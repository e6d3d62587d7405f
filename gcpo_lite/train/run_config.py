"""The config a training run uses: the embedded default, a --config file with flags and overrides on top, or
(on resume) the run's own config.yaml. The CLI and a Python caller get the same Config from the same inputs.

A run on a dataset preset (gsm8k, math, ...) that does not set gcpo.max_completion_length gets the preset's
completion length (data/presets.py) instead of the generic 256: `apply_preset_lengths`. "Set" means named in
the --config file or in the overrides (flags become overrides); the embedded default and a resumed run keep
their own value."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import yaml

from gcpo_lite.config import Config, ConfigError, apply_overrides, from_dict, load_config
from gcpo_lite.config.renames import RENAMED
from gcpo_lite.data.presets import preset_length
from gcpo_lite.demo.default_run import EMBEDDED_DEFAULT
from gcpo_lite.models.registry import EMBEDDED_BASE_NAME, EMBEDDED_NAME

log = logging.getLogger(__name__)

REAL_MODEL_DATASET = "gsm8k"  # what a real model trains on when no dataset is given
LENGTH_KEY = "gcpo.max_completion_length"

# what a resumed run may change and still match an uninterrupted one step for step: how long it runs and what
# it writes, never what a step computes
RESUME_EXACT_KEYS = frozenset(
    {
        "train.max_steps",
        "train.max_minutes",
        "train.save_steps",
        "train.save_minutes",
        "train.save_total_limit",
        "train.report_to",
        "train.eval_steps",
    }
)


def run_config(
    config_path: Optional[str],
    model: Optional[str],
    dataset: Optional[str],
    overrides: list[str],
    say: Optional[Callable[[str], None]] = None,
) -> tuple[Config, bool]:
    """(Config, used_embedded_default). With no config file, model or dataset: the embedded default run.
    `overrides` are `section.key=value` strings (the flags' own included), applied last. say(line) tells of a
    preset's completion length being used (default: logged by the first process)."""
    if config_path is None and model is None and dataset is None:
        return from_dict(apply_overrides(EMBEDDED_DEFAULT, overrides)), True
    return configured(config_path, overrides, say), False


def configured(
    config_path: Optional[str], overrides: list[str], say: Optional[Callable[[str], None]] = None
) -> Config:
    """The config of a --config file (or none) with overrides on top, as a new run gets it: a real model
    without a dataset trains on REAL_MODEL_DATASET, and a dataset preset's completion length applies unless
    gcpo.max_completion_length is set (`gcpo-lite plan` sizes for the same config)."""
    cfg = load_config(config_path, overrides)
    if cfg.data.dataset is None and cfg.model.name not in (None, EMBEDDED_NAME, EMBEDDED_BASE_NAME):
        # A real model solves the built-in tasks outright (every group all-correct: nothing to learn).
        cfg = load_config(config_path, [f"data.dataset={REAL_MODEL_DATASET}"] + overrides)
    return apply_preset_lengths(cfg, explicit_keys(config_path, overrides), say)


def explicit_keys(config_path: Optional[str | Path], overrides: list[str]) -> set[str]:
    """`section.key` of every setting the user gave: the keys of the --config YAML file and of the overrides
    (flags included), under their current names. Call it after load_config has accepted both."""
    keys = {_current_name(item.split("=", 1)[0].strip()) for item in overrides if "=" in item}
    data = yaml.safe_load(Path(config_path).read_text()) if config_path is not None else None
    for section, body in (data if isinstance(data, dict) else {}).items():
        if isinstance(body, dict):
            keys |= {_current_name(f"{section}.{key}") for key in body}
    return keys


def _current_name(dotted: str) -> str:
    """`section.key` under its current name (config/renames.py, without its notice: load_config gave it)."""
    section, _, key = dotted.partition(".")
    return RENAMED.get(dotted) or f"{RENAMED.get(section, section)}.{key}"


def apply_preset_lengths(
    cfg: Config, explicit_keys: set[str], say: Optional[Callable[[str], None]] = None
) -> Config:
    """cfg with gcpo.max_completion_length set to its dataset preset's default when LENGTH_KEY is not in
    `explicit_keys` (the keys the user gave); cfg itself when it is, or when the dataset has no preset (a
    built-in task, a local file, another hub id). say(line) tells the user (default: logged, rank 0 only)."""
    found = preset_length(cfg.data.dataset)
    if found is None or LENGTH_KEY in explicit_keys:
        return cfg
    (say or _log_once)(
        f"{LENGTH_KEY}={found.tokens} (the {found.preset} preset's default: {found.reason}; set it to override)"
    )
    gcpo = dataclasses.replace(cfg.gcpo, max_completion_length=found.tokens)
    return dataclasses.replace(cfg, gcpo=gcpo)  # validated again


def _log_once(line: str) -> None:
    """Under torchrun every process builds the config: the first one (RANK 0) speaks for the job."""
    if os.environ.get("RANK", "0") == "0":
        log.info(line)


class LengthOrigin(NamedTuple):
    tokens: int  # gcpo.max_completion_length
    source: str  # explicit (the user's --config, flag or override) | preset (its default) | default
    preset: Optional[str] = None  # the dataset's preset, when it has one
    reason: str = ""  # the preset's reason for its length


def length_origin(cfg: Config, explicit_keys: set[str]) -> LengthOrigin:
    """Where cfg's gcpo.max_completion_length came from (what `gcpo-lite plan` shows)."""
    tokens, found = cfg.gcpo.max_completion_length, preset_length(cfg.data.dataset)
    preset = found.preset if found else None
    if LENGTH_KEY in explicit_keys:
        return LengthOrigin(tokens, "explicit", preset)
    if found is not None and found.tokens == tokens:
        return LengthOrigin(tokens, "preset", preset, found.reason)
    return LengthOrigin(tokens, "default", preset)


def resumed_config(run_dir: str | Path, overrides: list[str]) -> tuple[Config, list[str]]:
    """(the run's own config.yaml with overrides on top, the settings that changed and break exactness);
    output_dir stays the run directory: another one (--output-dir, train.output_dir=) is refused."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(
            f"--resume {run_dir}: no config.yaml there; pass the run directory of a gcpo-lite train run"
        )
    data = _run_config_file(run_dir / "config.yaml")
    _check_output_dir(run_dir, apply_overrides({}, overrides).get("train", {}).get("output_dir"))
    cfg = from_dict(apply_overrides(data, overrides + [f"train.output_dir={run_dir}"]))
    changed = changed_keys(from_dict(data), cfg)
    return cfg, [c for c in changed if c not in RESUME_EXACT_KEYS] and changed


def _run_config_file(path: Path) -> dict:
    """A run's config.yaml as a dict; a damaged one (not YAML, not UTF-8, empty) is a ConfigError naming it."""
    how = (
        "restore it from a backup or fix it by hand (the run's settings, written when it started), or start "
        "a new run with --overwrite"
    )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path} is damaged: not valid YAML ({problem}{where}); {how}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path} is damaged: not UTF-8 text ({e.reason} at byte {e.start}); {how}"
        ) from None
    except RecursionError:
        raise ConfigError(f"{path} is damaged: nested too deeply to be a config; {how}") from None
    except OSError as e:
        raise ConfigError(f"{path} cannot be read ({e.strerror or e}); check its permissions") from None
    if not isinstance(data, dict) or not data:  # a run's own is never empty: one cut short by a full disk
        what = "is empty" if not data else f"holds {type(data).__name__}, not the run's settings"
        raise ConfigError(f"{path} is damaged: it {what}; {how}")
    return data


def _check_output_dir(run_dir: Path, asked) -> None:
    """--resume continues RUN_DIR in place: an --output-dir (train.output_dir=) elsewhere is refused."""
    if asked is None or Path(str(asked)).resolve() == run_dir.resolve():
        return
    raise ConfigError(
        f"--resume continues {run_dir} in place, so --output-dir {asked} would be ignored; drop --output-dir "
        f"(to continue elsewhere, copy the run directory there and --resume the copy)"
    )


def changed_keys(old: Config, new: Config) -> list[str]:
    """section.key of every setting that differs between two Configs, train.output_dir aside."""
    before, after = old.to_dict(), new.to_dict()
    return [
        f"{sec}.{k}"
        for sec, body in after.items()
        for k, v in body.items()
        if before[sec][k] != v and f"{sec}.{k}" != "train.output_dir"
    ]
