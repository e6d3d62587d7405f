"""Datasets -> lists of Example: built-in tasks, named hub presets, hub ids and local files.

`load_examples(cfg.data, seed)` returns (train, eval). Built-in tasks need no network.
Everything else goes through the `datasets` library:
  - a preset name (gsm8k, math, math500, aime24, aime25, openr1) knows its hub id, config,
    columns and how to get the final answer (GSM8K's `#### x`, MATH's last `\\boxed{}`), and
    appends MATH_INSTRUCTION ("... put your final answer within \\boxed{}") to each question
    (presets.py);
  - a hub id (`owner/name`, optionally `owner/name:config`) or a local dataset directory;
  - a local .jsonl / .json / .csv / .parquet file (files.py);
  - rows handed over in memory (`train_rows` / `eval_rows`: a `datasets.Dataset` or a list of dicts,
    in_memory.py), which replace cfg.dataset and its held-out split.
`--prompt-field / --answer-field / --solution-field` (data.*_field) override any mapping (examples.py).
A prompt column may hold text or chat messages (chat.py); every other column rides along in
Example.columns. `needs_answer=False` (a run whose rewards need no final answer) keeps rows without one.
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
from gcpo_lite.data.in_memory import as_rows
from gcpo_lite.data.presets import PRESETS, Preset, find_preset
from gcpo_lite.data.prompts import check_chat_template
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


def load_split(cfg: DataConfig, split: str, seed: int = 0, *, needs_answer: bool = True) -> list[Example]:
    """All examples of one split (no shuffling, no carving): what `gcpo-lite eval` scores.

    Built-in tasks generate their splits from `seed`: pass the training run's train.seed."""
    name = dataset_name(cfg)
    if name in TASKS:
        train, test = TASKS[name].make_splits(seed)
        return train if split == cfg.train_split else test
    return rows_to_examples(load_rows(cfg, split), cfg, name, find_preset(name), needs_answer=needs_answer)


def _held_out_split(
    cfg: DataConfig, name: str, preset: Optional[Preset], train: list[Example], needs_answer: bool
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
            rows = load_rows(cfg, cfg.eval_split)
            return rows_to_examples(rows, cfg, name, preset, needs_answer=needs_answer)
        except DataError as e:
            log.info("no %r split (%s); carving %d eval rows off train", cfg.eval_split, e, cfg.eval_size)
    return None


def _in_memory_examples(rows, cfg: DataConfig, source: str, needs_answer: bool) -> list[Example]:
    """The examples of a train_dataset / eval_dataset handed over in memory (no preset)."""
    rows = as_rows(rows, source)
    if len(rows) == 0:
        if source == "train_dataset":
            raise DataError("train_dataset has no rows; pass at least one row with a prompt")
        return []
    return rows_to_examples(rows, cfg, source, None, needs_answer=needs_answer)


def eval_examples_from_rows(rows, cfg: DataConfig, tokenizer, needs_answer: bool = True) -> list[Example]:
    """Held-out examples from rows handed over in memory (GCPOTrainer.evaluate(eval_dataset=...)), read as
    load_examples reads eval_rows: the system prompt set, the chat template checked, over-long prompts dropped."""
    examples = _in_memory_examples(rows, cfg, "eval_dataset", needs_answer)
    for ex in examples if cfg.system_prompt else ():
        ex.system = cfg.system_prompt
    check_chat_template(tokenizer, examples)
    return filter_by_prompt_length(examples, tokenizer, cfg.max_prompt_length)[0]


def _loaded(
    cfg: DataConfig, seed: int, needs_answer: bool, train_rows, with_held_out: bool
) -> tuple[list[Example], Optional[list[Example]]]:
    """(train, the held-out split's examples, or None when eval rows must be carved off train or come from
    eval_rows), before the prompt-length filter."""
    if train_rows is not None:
        if cfg.dataset:
            log.info("train_dataset given: data.dataset=%r is not read", cfg.dataset)
        return _in_memory_examples(train_rows, cfg, "train_dataset", needs_answer), None
    name = dataset_name(cfg)
    if name in TASKS:
        return TASKS[name].make_splits(seed)
    preset = find_preset(name)
    train = rows_to_examples(load_rows(cfg, cfg.train_split), cfg, name, preset, needs_answer=needs_answer)
    return train, _held_out_split(cfg, name, preset, train, needs_answer) if with_held_out else None


def _train_and_held_out(
    cfg: DataConfig, seed: int, needs_answer: bool, train_rows, eval_rows
) -> tuple[list[Example], list[Example]]:
    """(train, eval) before the prompt-length filter: eval_rows, else the held-out split, else eval_size rows
    carved off the (seeded-shuffled) train examples."""
    train, held_out = _loaded(cfg, seed, needs_answer, train_rows, with_held_out=eval_rows is None)
    if eval_rows is not None:
        held_out = _in_memory_examples(eval_rows, cfg, "eval_dataset", needs_answer)
    elif held_out is None:
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


def load_examples(
    cfg: DataConfig,
    seed: int,
    tokenizer=None,
    *,
    needs_answer: bool = True,
    train_rows=None,
    eval_rows=None,
) -> tuple[list[Example], list[Example]]:
    """(train, eval): eval is the held-out split, or eval_size rows carved off train when there is none.

    train_rows / eval_rows (a `datasets.Dataset` or a list of dicts) replace cfg.dataset / its held-out split
    (named "train_dataset" / "eval_dataset" in errors; no preset applies); with train_rows and no eval_rows,
    eval_size rows are carved off train. needs_answer=False (no reward needs a final answer) keeps rows without
    one (answer None) and lets the answer column be missing. With a tokenizer, prompts longer than
    cfg.max_prompt_length tokens are dropped from both (the count is logged; call filter_by_prompt_length
    yourself to get it), and chat-form prompts need its chat template."""
    name = "train_dataset" if train_rows is not None else dataset_name(cfg)
    train, held_out = _train_and_held_out(cfg, seed, needs_answer, train_rows, eval_rows)
    if cfg.system_prompt:
        for ex in train + held_out:
            ex.system = cfg.system_prompt
    if tokenizer is not None:
        check_chat_template(tokenizer, train + held_out)
        train, held_out = _drop_long_prompts(train, held_out, tokenizer, cfg.max_prompt_length)
    if cfg.shuffle:
        random.Random(seed).shuffle(train)
    if not train:
        raise DataError(
            f"dataset {name!r} has no training rows left (after carving {cfg.eval_size} for eval "
            f"and the max_prompt_length={cfg.max_prompt_length} filter)"
        )
    return train, held_out[: cfg.eval_size]
