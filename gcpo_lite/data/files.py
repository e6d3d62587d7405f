"""Local dataset files (.jsonl / .json / .csv / .parquet): checked line by line, then read with `datasets`.

`check_data_file` turns what `datasets` would report as a long traceback (an empty file, non-UTF-8 bytes, a
line that is not a JSON object) into a DataError naming the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from gcpo_lite.data.errors import DataError

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}

_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def _json_type(value) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def _utf8_error(path: Path, lineno: int, line: bytes, e: UnicodeDecodeError) -> DataError:
    return DataError(
        f"{path}: line {lineno} is not UTF-8 text (byte 0x{line[e.start]:02x} at column {e.start + 1}: "
        f"{e.reason}); re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
    )


def check_data_file(path: Path) -> None:
    """Empty files, non-UTF-8 bytes and invalid JSON lines fail here, naming the file and the line.

    A UTF-8 byte-order mark (Windows editors write one) is allowed, as `datasets` allows it."""
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: a dataset file needs at least one row")
    if suffix == ".parquet":
        return  # binary: read_data_file wraps what pyarrow reports
    with open(path, "rb") as f:
        whole = f.read() if suffix == ".json" else None
        lines = whole.splitlines(keepends=True) if whole is not None else f
        filled = _count_rows(path, lines, check_objects=suffix == ".jsonl")
    if not filled:
        raise DataError(f"{path} has no rows (only blank lines)")
    if suffix == ".csv" and filled == 1:
        raise DataError(f"{path} has a header line but no data rows")
    if whole is not None:
        _check_json_document(path, whole)


def _count_rows(path: Path, lines: Iterable[bytes], check_objects: bool) -> int:
    """The number of non-blank lines, each checked to be UTF-8 (and a JSON object when check_objects)."""
    filled = 0
    for lineno, raw in enumerate(lines, 1):
        line = _decode_line(path, lineno, raw)
        if not line.strip():
            continue
        filled += 1
        if check_objects:
            _check_jsonl_line(path, lineno, line)
    return filled


def _decode_line(path: Path, lineno: int, raw: bytes) -> str:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _utf8_error(path, lineno, raw, e) from None
    return line.removeprefix("\ufeff") if lineno == 1 else line


def _check_jsonl_line(path: Path, lineno: int, line: str) -> None:
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


def _check_json_document(path: Path, whole: bytes) -> None:
    """A .json dataset is an array of objects (or one object `datasets` reads as columns)."""
    try:
        data = json.loads(whole)  # bytes: a byte-order mark is detected and skipped
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno} ({e.msg})") from None
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


def read_data_file(path: Path, name: str):
    """The `datasets.Dataset` of the local file `path` (cfg.dataset `name`), after check_data_file."""
    import datasets

    if not path.is_file():
        raise DataError(f"dataset file {name!r} not found")
    check_data_file(path)
    try:
        return datasets.load_dataset(FILE_FORMATS[path.suffix.lower()], data_files=str(path), split="train")
    except Exception as e:  # a local file: load_rows' hub advice would not apply
        cause = e.__cause__ or e.__context__ or e  # DatasetGenerationError wraps the reader's error
        why = str(cause)[:300].rstrip(". ")
        raise DataError(
            f"could not read dataset file {str(path)!r}: {type(cause).__name__}: {why}. "
            f"Check that it is valid {path.suffix.lower()[1:]} with one row per example"
        ) from None
