"""Datasets -> lists of Example: built-in tasks, named hub presets, hub ids and local files.

`load_examples(cfg.data, seed)` returns (train, eval). Built-in tasks need no network.
Everything else goes through the `datasets` library:
  - a preset name (gsm8k, math, math500, aime24, aime25, openr1) knows its hub id, config,
    columns and how to get the final answer (GSM8K's `#### x`, MATH's last `\\boxed{}`), and
    appends MATH_INSTRUCTION ("... put your final answer within \\boxed{}") to each question;
  - a hub id (`owner/name`, optionally `owner/name:config`) or a local dataset directory;
  - a local .jsonl / .json / .csv / .parquet file.
`--prompt-field / --answer-field / --solution-field` (data.*_field) override any mapping.
`filter_by_prompt_length(examples, tokenizer, max_tokens)` drops over-long prompts and says how many.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from gcpo_lite.config import ConfigError, DataConfig
from gcpo_lite.data.tasks import DEFAULT_TASK, TASKS, Example
from gcpo_lite.run.hub import HubError, ensure_fetchable
from gcpo_lite.verify.answer import last_boxed

log = logging.getLogger(__name__)

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class DataError(ConfigError):
    """A dataset problem a user has to fix; the message says how (the CLI prints it without a traceback)."""


# ---------------------------------------------------------------- presets


def _gsm8k_answer(solution: str) -> Optional[str]:
    m = re.search(r"####\s*(.+?)\s*$", solution.strip())
    return m.group(1).replace(",", "").strip() if m else None


def _gsm8k_solution(solution: str) -> str:
    """Drop the calculator annotations (<<48/2=24>>) and the `#### x` line; gold.py adds a \\boxed{} ending."""
    text = re.sub(r"<<[^<>]*>>", "", solution)
    return re.sub(r"\n?####.*$", "", text.strip()).strip()


def _openr1_solution(row: dict) -> Optional[str]:
    """The first R1 trace that math-verify judged correct (the dataset's own labels), else the original solution."""
    generations = row.get("generations") or []
    verdicts = row.get("correctness_math_verify") or []
    for text, ok in zip(generations, verdicts):
        if ok and text:
            return text
    return row.get("solution")


def _openr1_has_answer(row: dict) -> bool:
    """Proof problems carry a placeholder answer that no verifier can check."""
    return str(row.get("answer") or "").strip().lower() not in ("", "proof", "notfound", "none")


# The instruction DeepSeek-R1, Qwen2.5-Math and OpenR1 use, in the user turn (R1-Distill models are told not
# to use a system prompt): it asks for the final answer in the format the verifier reads first.
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Preset:
    hub_id: str
    config: Optional[str]  # the hub dataset's config (subset) name
    prompt_field: str
    answer_field: Optional[str]  # None: the answer is derived from the solution (answer_from)
    solution_field: Optional[str]
    splits: tuple  # ((our split name, hub split name), ...): benchmarks with one split map both to it
    answer_from: str = "field"  # field | boxed (last \boxed{} of the solution) | gsm8k (after ####)
    eval_only: bool = False  # a benchmark: training on it contaminates it
    solution_fn: Optional[Callable[[dict], Optional[str]]] = None  # builds the gold solution from a row
    keep_row: Optional[Callable[[dict], bool]] = None  # rows it rejects are skipped (and counted)
    instruction: Optional[str] = None  # appended to every question (None: MATH_INSTRUCTION)
    note: str = ""


PRESETS: dict[str, Preset] = {
    "gsm8k": Preset(
        "openai/gsm8k",
        "main",
        "question",
        None,
        "answer",
        (("train", "train"), ("test", "test")),
        answer_from="gsm8k",
        note="grade-school word problems; 7473 train / 1319 test",
    ),
    "math": Preset(
        "DigitalLearningGmbH/MATH-lighteval",
        "default",
        "problem",
        None,
        "solution",
        (("train", "train"), ("test", "test")),
        answer_from="boxed",
        note="Hendrycks MATH, answers in \\boxed{}; 7500 train / 5000 test",
    ),
    "math500": Preset(
        "HuggingFaceH4/MATH-500",
        None,
        "problem",
        "answer",
        "solution",
        (("train", "test"), ("test", "test")),
        eval_only=True,
        note="500-problem MATH test subset (eval only)",
    ),
    "aime24": Preset(
        "HuggingFaceH4/aime_2024",
        None,
        "problem",
        "answer",
        "solution",
        (("train", "train"), ("test", "train")),
        eval_only=True,
        note="AIME 2024 I+II, 30 problems",
    ),
    "aime25": Preset(
        "math-ai/aime25",
        None,
        "problem",
        "answer",
        None,
        (("train", "test"), ("test", "test")),
        eval_only=True,
        note="AIME 2025 I+II, 30 problems, no solutions",
    ),
    "openr1": Preset(
        "open-r1/OpenR1-Math-220k",
        "default",
        "problem",
        "answer",
        "solution",
        (("train", "train"),),
        solution_fn=_openr1_solution,
        keep_row=_openr1_has_answer,
        note="94k NuminaMath problems; gold = a verified DeepSeek-R1 trace (<think>...</think>)",
    ),
}
ALIASES = {
    "math-500": "math500",
    "aime2024": "aime24",
    "aime_2024": "aime24",
    "aime2025": "aime25",
    "aime_2025": "aime25",
    "openr1-math": "openr1",
    "openr1-math-220k": "openr1",
    "hendrycks_math": "math",
}
_BY_HUB_ID = {p.hub_id.lower(): name for name, p in PRESETS.items()}


def dataset_name(cfg: DataConfig) -> str:
    return cfg.dataset or DEFAULT_TASK


def is_builtin(cfg: DataConfig) -> bool:
    return dataset_name(cfg) in TASKS


def find_preset(name: str) -> Optional[Preset]:
    """The preset for a preset name, alias or the preset's own hub id (openai/gsm8k gets gsm8k's mapping).

    A local file or directory of that name wins: `./math` is read from disk, not the hub."""
    if Path(name).expanduser().exists():
        return None
    key = name.lower()
    key = ALIASES.get(key, key)
    if key in PRESETS:
        return PRESETS[key]
    return PRESETS[_BY_HUB_ID[key]] if key in _BY_HUB_ID else None


# ---------------------------------------------------------------- rows -> examples


def _columns_error(source: str, role: str, column: str, columns: list[str]) -> DataError:
    return DataError(
        f"{source}: no column {column!r} for the {role}; available columns: {', '.join(columns)}. "
        f"Pass --{role}-field COLUMN (data.{role}_field=COLUMN)"
    )


def rows_to_examples(rows, cfg: DataConfig, source: str, preset: Optional[Preset] = None) -> list[Example]:
    """Map a `datasets.Dataset` (or list of dicts with `column_names`) to Examples.

    Rows without an answer, or with a null or empty prompt, are skipped and counted."""
    columns = list(rows.column_names)
    p = preset
    prompt_col = cfg.prompt_field or (p.prompt_field if p else "prompt")
    solution_col = cfg.solution_field or (p.solution_field if p else "solution")
    answer_col = cfg.answer_field or (p.answer_field if p else "answer")
    answer_from = "field" if cfg.answer_field or not p else p.answer_from
    if not p and not cfg.answer_field and answer_col not in columns and solution_col in columns:
        answer_from = "boxed"  # hendrycks-style data: the final answer is the solution's last \boxed{}
    if prompt_col not in columns:
        raise _columns_error(source, "prompt", prompt_col, columns)
    if answer_from == "field" and (answer_col is None or answer_col not in columns):
        raise _columns_error(source, "answer", answer_col or "answer", columns)
    if cfg.solution_field and cfg.solution_field not in columns:
        raise _columns_error(source, "solution", cfg.solution_field, columns)
    needs_solution = answer_from != "field"
    if needs_solution and (solution_col is None or solution_col not in columns):
        raise _columns_error(source, "solution", solution_col or "solution", columns)
    has_solution = solution_col is not None and solution_col in columns
    use_fn = p is not None and p.solution_fn is not None and not cfg.solution_field
    examples, skipped, skipped_prompts = [], 0, 0
    for row in rows:
        if p is not None and p.keep_row is not None and not p.keep_row(row):
            skipped += 1
            continue
        solution = p.solution_fn(row) if use_fn else (row[solution_col] if has_solution else None)
        solution = None if solution is None else str(solution)
        if answer_from == "gsm8k":
            answer = _gsm8k_answer(solution or "")
            solution = _gsm8k_solution(solution) if solution else None
        elif answer_from == "boxed":
            answer = last_boxed(solution or "")
        else:
            answer = row[answer_col]
        if answer is None or str(answer).strip() == "":
            skipped += 1
            continue
        prompt = row[prompt_col]
        if prompt is None or str(prompt).strip() == "":  # a JSON null must not train as the text "None"
            skipped_prompts += 1
            continue
        if isinstance(prompt, (dict, list, tuple)):  # would train as its Python repr "[{'role': ...}]"
            raise DataError(
                f"{source}: the prompt column {prompt_col!r} holds a {type(prompt).__name__}, not text. "
                f"Pass --prompt-field COLUMN (data.prompt_field=COLUMN) naming a column of question text"
            )
        prompt = str(prompt)
        if p is not None and not cfg.prompt_field:
            prompt = f"{prompt.rstrip()}\n\n{p.instruction or MATH_INSTRUCTION}"
        examples.append(
            Example(prompt=prompt, answer=str(answer).strip(), solution=solution, system=cfg.system_prompt)
        )
    total = skipped + skipped_prompts + len(examples)
    if skipped:
        log.warning("%s: skipped %d of %d rows with no checkable final answer", source, skipped, total)
    if skipped_prompts:
        log.warning("%s: skipped %d of %d rows with a null or empty prompt", source, skipped_prompts, total)
    return examples


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


def _utf8_error(path: Path, lineno: int, line: bytes, e: UnicodeDecodeError) -> DataError:
    return DataError(
        f"{path}: line {lineno} is not UTF-8 text (byte 0x{line[e.start]:02x} at column {e.start + 1}: "
        f"{e.reason}); re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
    )


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def _json_type(value) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def check_data_file(path: Path) -> None:
    """Empty files, non-UTF-8 bytes and invalid JSON lines fail here, naming the file and the line.

    A UTF-8 byte-order mark (Windows editors write one) is allowed, as `datasets` allows it."""
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: a dataset file needs at least one row")
    if suffix == ".parquet":
        return  # binary: load_rows wraps what pyarrow reports
    filled = 0  # non-blank lines
    with open(path, "rb") as f:
        whole = f.read() if suffix == ".json" else None
        lines = whole.splitlines(keepends=True) if whole is not None else f
        for lineno, raw in enumerate(lines, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _utf8_error(path, lineno, raw, e) from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            filled += 1
            if suffix == ".jsonl":
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise DataError(
                        f"{path}: line {lineno} is not valid JSON ({e.msg} at column {e.colno}): "
                        f"{line.strip()[:60]!r}; fix or remove that line"
                    ) from None
                if not isinstance(row, dict):
                    raise DataError(
                        f"{path}: line {lineno} is a JSON {_json_type(row)}, not an object "
                        '{"prompt": ..., "answer": ...}'
                    )
    if not filled:
        raise DataError(f"{path} has no rows (only blank lines)")
    if suffix == ".csv" and filled == 1:
        raise DataError(f"{path} has a header line but no data rows")
    if whole is not None:
        try:
            data = json.loads(whole)  # bytes: a byte-order mark is detected and skipped
        except ValueError as e:
            raise DataError(
                f"{path}: not valid JSON at line {e.lineno}, column {e.colno} ({e.msg})"
            ) from None
        if isinstance(data, list):
            if not data:
                raise DataError(f"{path} has no rows (an empty JSON array)")
            bad = next((i for i, row in enumerate(data) if not isinstance(row, dict)), None)
            if bad is not None:
                raise DataError(
                    f"{path}: item {bad} of the top-level array is a JSON {_json_type(data[bad])}, not an "
                    'object; a .json dataset is an array of objects [{"prompt": ..., "answer": ...}, ...]'
                )
        elif not isinstance(data, dict):
            raise DataError(
                f"{path} holds a JSON {_json_type(data)}; a .json dataset is an array of objects "
                '[{"prompt": ..., "answer": ...}, ...] (or use .jsonl: one object per line)'
            )


def load_rows(cfg: DataConfig, split: str):
    """The `datasets.Dataset` for one split of cfg.dataset (preset, hub id, local dir or file)."""
    import datasets

    name = dataset_name(cfg)
    path = Path(name).expanduser()
    try:
        if path.suffix.lower() in FILE_FORMATS:
            if not path.is_file():
                raise DataError(f"dataset file {name!r} not found")
            check_data_file(path)
            try:
                return datasets.load_dataset(
                    FILE_FORMATS[path.suffix.lower()], data_files=str(path), split="train"
                )
            except Exception as e:  # a local file: the hub advice below would not apply
                cause = e.__cause__ or e.__context__ or e  # DatasetGenerationError wraps the reader's error
                why = str(cause)[:300].rstrip(". ")
                raise DataError(
                    f"could not read dataset file {str(path)!r}: {type(cause).__name__}: {why}. "
                    f"Check that it is valid {path.suffix.lower()[1:]} with one row per example"
                ) from None
        if path.is_dir() and (path / "dataset_info.json").is_file():  # Dataset.save_to_disk: one split
            return datasets.load_from_disk(str(path))
        if path.is_dir() and (path / "dataset_dict.json").is_file():  # DatasetDict.save_to_disk
            saved = datasets.load_from_disk(str(path))
            if split not in saved:
                raise DataError(
                    f"{name!r} has no split {split!r}; its splits: {', '.join(saved)}. "
                    f"Set data.train_split / data.eval_split"
                )
            return saved[split]
        if name.startswith(("/", ".", "~")) or name.count("/") > 1:  # a path, and nothing is there
            raise DataError(
                f"dataset path {name!r} does not exist. Use a built-in task ({', '.join(TASKS)}), a preset "
                f"({', '.join(PRESETS)}), a hub id (owner/name or owner/name:config), or a local "
                ".jsonl/.json/.csv/.parquet file"
            )
        preset = find_preset(name)
        hub_id, config = _hub_id_and_config(name, preset)
        if (
            not Path(hub_id).expanduser().exists()
        ):  # a hub id: one fast probe, a clear error instead of retries
            ensure_fetchable(hub_id, repo_type="dataset")
        return datasets.load_dataset(hub_id, config, split=_split_name(preset, split))
    except (DataError, HubError):
        raise
    except Exception as e:  # network, unknown id, missing split: say which and how to fix
        presets = ", ".join(PRESETS)
        raise DataError(
            f"could not load dataset {name!r} split {split!r}: {type(e).__name__}: {e}. "
            f"Use a built-in task ({', '.join(TASKS)}), a preset ({presets}), a hub id "
            "(owner/name or owner/name:config) reachable from this machine (set HF_HUB_OFFLINE=1 "
            "to use only the local cache), or a local .jsonl/.json/.csv/.parquet file"
        ) from None


def load_split(cfg: DataConfig, split: str, seed: int = 0) -> list[Example]:
    """All examples of one split (no shuffling, no carving): what `gcpo-lite eval` scores.

    Built-in tasks generate their splits from `seed`: pass the training run's train.seed."""
    name = dataset_name(cfg)
    if name in TASKS:
        train, test = TASKS[name].make_splits(seed)
        return train if split == cfg.train_split else test
    return rows_to_examples(load_rows(cfg, split), cfg, name, find_preset(name))


def load_examples(cfg: DataConfig, seed: int, tokenizer=None) -> tuple[list[Example], list[Example]]:
    """(train, eval): eval is the held-out split, or eval_size rows carved off train when there is none.

    With a tokenizer, prompts longer than cfg.max_prompt_length tokens are dropped from both
    (the count is logged; call filter_by_prompt_length yourself to get it)."""
    name = dataset_name(cfg)
    preset = find_preset(name)
    if name in TASKS:
        train, held_out = TASKS[name].make_splits(seed)
    else:
        train = rows_to_examples(load_rows(cfg, cfg.train_split), cfg, name, preset)
        held_out: Optional[list[Example]] = None
        is_file = _single_split(name)
        if preset and preset.eval_only:
            log.warning(
                "%s is a benchmark (%s); training on it contaminates its eval numbers", name, preset.note
            )
            held_out = list(train)
        elif (
            cfg.eval_split
            and not is_file
            and _split_name(preset, cfg.eval_split) != _split_name(preset, cfg.train_split)
        ):
            try:
                held_out = rows_to_examples(load_rows(cfg, cfg.eval_split), cfg, name, preset)
            except DataError as e:
                log.info("no %r split (%s); carving %d eval rows off train", cfg.eval_split, e, cfg.eval_size)
                held_out = None
        if held_out is None:
            train = list(train)
            random.Random(seed).shuffle(train)
            held_out, train = train[: cfg.eval_size], train[cfg.eval_size :]
    if cfg.system_prompt:
        for ex in train + held_out:
            ex.system = cfg.system_prompt
    if tokenizer is not None:
        train, dropped_train = filter_by_prompt_length(train, tokenizer, cfg.max_prompt_length)
        held_out, dropped_eval = filter_by_prompt_length(held_out, tokenizer, cfg.max_prompt_length)
        if dropped_train or dropped_eval:
            log.warning(
                "dropped %d train and %d eval prompts longer than data.max_prompt_length=%d tokens",
                dropped_train,
                dropped_eval,
                cfg.max_prompt_length,
            )
    if cfg.shuffle:
        random.Random(seed).shuffle(train)
    if not train:
        raise DataError(
            f"dataset {name!r} has no training rows left (after carving {cfg.eval_size} for eval "
            f"and the max_prompt_length={cfg.max_prompt_length} filter)"
        )
    return train, held_out[: cfg.eval_size]


def filter_by_prompt_length(
    examples: list[Example],
    tokenizer,
    max_tokens: int,
    to_ids: Optional[Callable[[object, Example], list[int]]] = None,
) -> tuple[list[Example], int]:
    """(examples whose prompt has at most max_tokens tokens, number dropped).

    to_ids(tokenizer, example) gives the prompt's ids; pass prompts.prompt_ids to count the
    chat template too. The default counts the question (and system message) alone, batched."""
    if not examples:
        return [], 0
    if to_ids is not None:
        lengths = [len(to_ids(tokenizer, ex)) for ex in examples]
    else:
        texts = [((ex.system + "\n") if ex.system else "") + ex.prompt for ex in examples]
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    kept = [ex for ex, n in zip(examples, lengths) if n <= max_tokens]
    return kept, len(examples) - len(kept)


def with_hub_id(name: str, hub_id: str) -> Preset:
    """A copy of preset `name` reading from another hub id or local directory (mirrors, tests)."""
    return replace(PRESETS[name], hub_id=hub_id)


# ---------------------------------------------------------------- the training order


class PromptStream:
    """The training prompts, served in order and reshuffled (seeded) at the start of each new epoch.

    Its position is (epoch, cursor, the current order); state_dict() holds it as plain ints (safe for
    torch.load(weights_only=True)) plus a fingerprint of the prompts, so a checkpoint refuses other data."""

    def __init__(self, examples: list[Example], seed: int, shuffle: bool = True):
        self.examples = list(examples)  # epoch-0 order, as loaded: what state_dict's order indexes
        self.order = list(examples)
        self.seed, self.shuffle = seed, shuffle
        self.cursor, self.epoch = 0, 0

    def __len__(self) -> int:
        return len(self.examples)

    def next(self, n: int) -> list[Example]:
        out = []
        while len(out) < n:
            if self.cursor >= len(self.order):
                self.cursor, self.epoch = 0, self.epoch + 1
                if self.shuffle:
                    random.Random(self.seed + self.epoch).shuffle(self.order)  # in place: depends on history
            out.append(self.order[self.cursor])
            self.cursor += 1
        return out

    @functools.cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for ex in self.examples:
            h.update(f"{ex.prompt}\x00{ex.answer}\x01".encode())
        return h.hexdigest()[:16]

    def fingerprint(self) -> str:
        """Of the prompts and answers in their epoch-0 order (fixed for the stream's life)."""
        return self._fingerprint

    def state_dict(self) -> dict:
        index = {id(ex): i for i, ex in enumerate(self.examples)}
        return {
            "cursor": self.cursor,
            "epoch": self.epoch,
            "order": [index[id(ex)] for ex in self.order],
            "fingerprint": self.fingerprint(),
        }

    def load_state_dict(self, state: dict) -> None:
        order = [
            int(i) for i in (state["order"].tolist() if hasattr(state["order"], "tolist") else state["order"])
        ]
        if state["fingerprint"] != self.fingerprint() or len(order) != len(self.examples):
            raise DataError(
                "the training data differs from the data this checkpoint was trained on (dataset, split, "
                "seed or max_prompt_length changed); resume with the run's own config.yaml"
            )
        self.order = [self.examples[i] for i in order]
        self.cursor, self.epoch = int(state["cursor"]), int(state["epoch"])
