"""Datasets -> lists of Example: built-in tasks, named hub presets, hub ids and local files.

`load_examples(cfg.data, seed)` returns (train, eval). Built-in tasks need no network.
Everything else goes through the `datasets` library:
  - a preset name (gsm8k, math, math500, aime24, aime25, openr1) knows its hub id, config,
    columns and how to get the final answer (GSM8K's `#### x`, MATH's last `\\boxed{}`), and
    appends MATH_INSTRUCTION ("... put your final answer within \\boxed{}") to each question
    (presets.py);
  - a hub id (`owner/name`, optionally `owner/name:config`) or a local dataset directory;
  - a local .jsonl / .json / .csv / .parquet file (files.py).
`--prompt-field / --answer-field / --solution-field` (data.*_field) override any mapping (examples.py).
`filter_by_prompt_length(examples, tokenizer, max_tokens)` drops over-long prompts and says how many.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Optional

from gcpo_lite.config import DataConfig
from gcpo_lite.data.errors import DataError
from gcpo_lite.data.examples import filter_by_prompt_length, rows_to_examples
from gcpo_lite.data.files import FILE_FORMATS, read_data_file
from gcpo_lite.data.presets import PRESETS, Preset, find_preset
from gcpo_lite.data.tasks import DEFAULT_TASK, TASKS, Example
from gcpo_lite.run.hub import HubError, ensure_fetchable

log = logging.getLogger(__name__)


def dataset_name(cfg: DataConfig) -> str:
    return cfg.dataset or DEFAULT_TASK


def is_builtin(cfg: DataConfig) -> bool:
    return dataset_name(cfg) in TASKS


# ---------------------------------------------------------------- loading


def _split_name(preset: Optional[Preset], split: str) -> str:
    return dict(preset.splits).get(split, split) if preset else split


def _hub_id_and_config(name: str, preset: Optional[Preset]) -> tuple[str, Optional[str]]:
    if preset:
        return preset.hub_id, preset.config
    if ":" in name and not Path(name).exists():
        hub_id, config = name.split(":", 1)  # owner/name:config
        return hub_id, config or None
    return name, None


def _single_split(name: str) -> bool:
    """A file or a saved single Dataset has no splits: eval rows are carved off train."""
    path = Path(name).expanduser()
    return path.suffix.lower() in FILE_FORMATS or (path / "dataset_info.json").is_file()


def _is_saved(path: Path) -> bool:
    """A directory that Dataset.save_to_disk or DatasetDict.save_to_disk wrote."""
    return path.is_dir() and (
        (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()
    )


def _load_saved(path: Path, name: str, split: str):
    import datasets

    if (path / "dataset_info.json").is_file():  # Dataset.save_to_disk: one split
        return datasets.load_from_disk(str(path))
    saved = datasets.load_from_disk(str(path))  # DatasetDict.save_to_disk
    if split not in saved:
        raise DataError(
            f"{name!r} has no split {split!r}; its splits: {', '.join(saved)}. "
            f"Set data.train_split / data.eval_split"
        )
    return saved[split]


def _no_such_path(name: str) -> DataError:
    return DataError(
        f"dataset path {name!r} does not exist. Use a built-in task ({', '.join(TASKS)}), a preset "
        f"({', '.join(PRESETS)}), a hub id (owner/name or owner/name:config), or a local "
        ".jsonl/.json/.csv/.parquet file"
    )


def _not_a_dataset(name: str, path: Path) -> DataError:
    """An existing file or directory that is not a dataset gcpo-lite reads: what it is, and what it reads."""
    files = "a .jsonl, .json, .csv or .parquet file (one row per example, with prompt and answer columns)"
    if not path.is_dir():
        kind = f"a {path.suffix} file" if path.suffix else "a file with no extension"
        kind = kind if path.is_file() else "not a regular file (a device, pipe or socket)"
        return DataError(
            f"dataset {name!r} is {kind}; gcpo-lite reads {files} or a folder written by Dataset.save_to_disk: "
            "convert it (or rename it, if it already is one of these)"
        )
    return DataError(
        f"dataset {name!r} is a directory, but not a saved dataset (it has no dataset_info.json or "
        "dataset_dict.json): gcpo-lite reads a folder only when Dataset.save_to_disk or DatasetDict.save_to_disk "
        f"wrote it; pass {files} instead"
    )


def _load_error(name: str, split: str, e: Exception) -> DataError:
    """Network, unknown id, missing split: say which and how to fix."""
    presets = ", ".join(PRESETS)
    return DataError(
        f"could not load dataset {name!r} split {split!r}: {type(e).__name__}: {' '.join(str(e).split())}. "
        f"Use a built-in task ({', '.join(TASKS)}), a preset ({presets}), a hub id "
        "(owner/name or owner/name:config) reachable from this machine (set HF_HUB_OFFLINE=1 "
        "to use only the local cache), or a local .jsonl/.json/.csv/.parquet file"
    )


def load_rows(cfg: DataConfig, split: str):
    """The rows of one split of cfg.dataset (preset, hub id, local dir or file): a `datasets.Dataset`, or
    files.JsonRows for a JSON / JSONL file."""
    import datasets

    name = dataset_name(cfg)
    path = Path(name).expanduser()
    try:
        if _is_saved(path):
            return _load_saved(path, name, split)
        if path.suffix.lower() in FILE_FORMATS:
            return read_data_file(path, name)
        path_like = name.startswith(("/", ".", "~")) or name.count("/") > 1  # never a hub id or a preset
        if (path_like and path.exists()) or (path.is_file() and not find_preset(name)):
            raise _not_a_dataset(name, path)  # (a bare name's folder goes to `datasets`, as before)
        if path_like:  # and nothing is there
            raise _no_such_path(name)
        preset = find_preset(name)
        hub_id, config = _hub_id_and_config(name, preset)
        if (
            not Path(hub_id).expanduser().exists()
        ):  # a hub id: one fast probe, a clear error instead of retries
            ensure_fetchable(hub_id, repo_type="dataset")
        return datasets.load_dataset(hub_id, config, split=_split_name(preset, split))
    except (DataError, HubError):
        raise
    except Exception as e:
        raise _load_error(name, split, e) from None


def load_split(cfg: DataConfig, split: str, seed: int = 0) -> list[Example]:
    """All examples of one split (no shuffling, no carving): what `gcpo-lite eval` scores.

    Built-in tasks generate their splits from `seed`: pass the training run's train.seed."""
    name = dataset_name(cfg)
    if name in TASKS:
        train, test = TASKS[name].make_splits(seed)
        return train if split == cfg.train_split else test
    return rows_to_examples(load_rows(cfg, split), cfg, name, find_preset(name))


def _held_out_split(
    cfg: DataConfig, name: str, preset: Optional[Preset], train: list[Example]
) -> Optional[list[Example]]:
    """The eval examples from their own split; None when they must be carved off train."""
    is_file = _single_split(name)
    if preset and preset.eval_only:
        log.warning("%s is a benchmark (%s); training on it contaminates its eval numbers", name, preset.note)
        return list(train)
    if (
        cfg.eval_split
        and not is_file
        and _split_name(preset, cfg.eval_split) != _split_name(preset, cfg.train_split)
    ):
        try:
            return rows_to_examples(load_rows(cfg, cfg.eval_split), cfg, name, preset)
        except DataError as e:
            log.info("no %r split (%s); carving %d eval rows off train", cfg.eval_split, e, cfg.eval_size)
    return None


def _train_and_held_out(
    cfg: DataConfig, seed: int, name: str, preset: Optional[Preset]
) -> tuple[list[Example], list[Example]]:
    """(train, eval) of a dataset loaded through `datasets`, before the prompt-length filter."""
    train = rows_to_examples(load_rows(cfg, cfg.train_split), cfg, name, preset)
    held_out = _held_out_split(cfg, name, preset, train)
    if held_out is None:
        train = list(train)
        random.Random(seed).shuffle(train)
        held_out, train = train[: cfg.eval_size], train[cfg.eval_size :]
    return train, held_out


def _drop_long_prompts(
    train: list[Example], held_out: list[Example], tokenizer, max_tokens: int
) -> tuple[list[Example], list[Example]]:
    train, dropped_train = filter_by_prompt_length(train, tokenizer, max_tokens)
    held_out, dropped_eval = filter_by_prompt_length(held_out, tokenizer, max_tokens)
    if dropped_train or dropped_eval:
        log.warning(
            "dropped %d train and %d eval prompts longer than data.max_prompt_length=%d tokens",
            dropped_train,
            dropped_eval,
            max_tokens,
        )
    return train, held_out


def load_examples(cfg: DataConfig, seed: int, tokenizer=None) -> tuple[list[Example], list[Example]]:
    """(train, eval): eval is the held-out split, or eval_size rows carved off train when there is none.

    With a tokenizer, prompts longer than cfg.max_prompt_length tokens are dropped from both
    (the count is logged; call filter_by_prompt_length yourself to get it)."""
    name = dataset_name(cfg)
    preset = find_preset(name)
    if name in TASKS:
        train, held_out = TASKS[name].make_splits(seed)
    else:
        train, held_out = _train_and_held_out(cfg, seed, name, preset)
    if cfg.system_prompt:
        for ex in train + held_out:
            ex.system = cfg.system_prompt
    if tokenizer is not None:
        train, held_out = _drop_long_prompts(train, held_out, tokenizer, cfg.max_prompt_length)
    if cfg.shuffle:
        random.Random(seed).shuffle(train)
    if not train:
        raise DataError(
            f"dataset {name!r} has no training rows left (after carving {cfg.eval_size} for eval "
            f"and the max_prompt_length={cfg.max_prompt_length} filter)"
        )
    return train, held_out[: cfg.eval_size]
