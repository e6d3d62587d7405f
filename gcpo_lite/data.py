"""Datasets -> lists of Example: built-in tasks, local files and hub datasets.

`load_examples(cfg.data, seed)` returns (train, eval). Built-in tasks need no network.
Files and hub ids go through the `datasets` library with field mappings
(prompt_field / answer_field / solution_field).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

from .config import ConfigError, DataConfig
from .tasks import DEFAULT_TASK, TASKS, Example

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class DataError(ValueError):
    """A dataset problem a user has to fix; the message says how."""


def dataset_name(cfg: DataConfig) -> str:
    return cfg.dataset or DEFAULT_TASK


def is_builtin(cfg: DataConfig) -> bool:
    return dataset_name(cfg) in TASKS


def _rows_to_examples(rows, cfg: DataConfig, source: str) -> list[Example]:
    columns = list(rows.column_names)
    fields = {"prompt": cfg.prompt_field or "prompt", "answer": cfg.answer_field or "answer",
              "solution": cfg.solution_field or "solution"}
    for role in ("prompt", "answer"):
        if fields[role] not in columns:
            raise DataError(f"{source}: no column {fields[role]!r} for the {role}; available columns: "
                            f"{', '.join(columns)}. Pass --{role}-field COLUMN (data.{role}_field=COLUMN)")
    if cfg.solution_field and cfg.solution_field not in columns:
        raise DataError(f"{source}: no column {cfg.solution_field!r} for the solution; available columns: "
                        f"{', '.join(columns)}")
    has_solution = fields["solution"] in columns
    return [Example(prompt=str(r[fields["prompt"]]), answer=str(r[fields["answer"]]),
                    solution=(str(r[fields["solution"]]) if has_solution and r[fields["solution"]] is not None else None),
                    system=cfg.system_prompt)
            for r in rows]


def _load_split(cfg: DataConfig, split: str):
    import datasets
    name = dataset_name(cfg)
    path = Path(name)
    try:
        if path.suffix.lower() in FILE_FORMATS:
            if not path.is_file():
                raise DataError(f"dataset file {name!r} not found")
            return datasets.load_dataset(FILE_FORMATS[path.suffix.lower()], data_files=str(path), split="train")
        return datasets.load_dataset(name, split=split)
    except DataError:
        raise
    except Exception as e:  # network, unknown id, missing split: say which and how to fix
        raise DataError(f"could not load dataset {name!r} split {split!r}: {type(e).__name__}: {e}. "
                        f"Use a built-in task ({', '.join(TASKS)}), a local .jsonl/.json/.csv/.parquet file, "
                        "or a hub id reachable from this machine") from None


def load_examples(cfg: DataConfig, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, eval) examples; eval is the held-out split, or eval_size rows carved off train."""
    name = dataset_name(cfg)
    if name in TASKS:
        train, held_out = TASKS[name].make_splits(seed)
    else:
        train = _rows_to_examples(_load_split(cfg, cfg.train_split), cfg, name)
        held_out: Optional[list[Example]] = None
        if cfg.eval_split and not Path(name).suffix:
            try:
                held_out = _rows_to_examples(_load_split(cfg, cfg.eval_split), cfg, name)
            except DataError:
                held_out = None
        if held_out is None:
            rng = random.Random(seed)
            train = list(train)
            rng.shuffle(train)
            held_out, train = train[:cfg.eval_size], train[cfg.eval_size:]
    if cfg.system_prompt:
        for ex in train + held_out:
            ex.system = cfg.system_prompt
    if cfg.shuffle:
        random.Random(seed).shuffle(train)
    if not train:
        raise DataError(f"dataset {name!r} has no training rows left (after carving {cfg.eval_size} for eval)")
    return train, held_out[:cfg.eval_size]
