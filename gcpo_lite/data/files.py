"""Local dataset files (.jsonl / .json / .csv / .parquet): checked line by line, then read.

`check_data_file` turns what `datasets` would report as a long traceback (an empty file, non-UTF-8 bytes, a
line that is not a JSON object) into a DataError naming the file and the line. JSON and JSONL files are read
here with the json module, row by row, so no schema guessed from the first rows can refuse a valid file (a key
first seen at row 100,000, or after a 20 MB first row): their columns are every key any row has. CSV and
Parquet go through `datasets`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

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


class JsonRows(list):
    """A JSON / JSONL file's rows as dicts, each with every column (None where its row lacks the key), and
    `column_names`: every key any row has, in the order first seen. rows_to_examples reads it as a Dataset."""

    def __init__(self, rows: list[dict]):
        self.column_names = list(dict.fromkeys(key for row in rows for key in row))
        super().__init__({key: row.get(key) for key in self.column_names} for row in rows)


def check_data_file(path: Path) -> Optional[list[dict]]:
    """Empty files, non-UTF-8 bytes and invalid JSON lines fail here, naming the file and the line.

    Returns the rows of a .json / .jsonl file (parsed anyway to check them), None for .csv / .parquet.
    A UTF-8 byte-order mark (Windows editors write one) is allowed, as `datasets` allows it."""
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: a dataset file needs at least one row")
    if suffix == ".parquet":
        return None  # binary: read_data_file wraps what pyarrow reports
    rows: list[dict] = []
    with open(path, "rb") as f:
        whole = f.read() if suffix == ".json" else None
        lines = whole.splitlines(keepends=True) if whole is not None else f
        filled = _count_rows(path, lines, rows if suffix == ".jsonl" else None)
    if not filled:
        raise DataError(f"{path} has no rows (only blank lines)")
    if suffix == ".csv" and filled == 1:
        raise DataError(f"{path} has a header line but no data rows")
    if whole is not None:
        return _json_document_rows(path, whole)
    return rows if suffix == ".jsonl" else None


def _count_rows(path: Path, lines: Iterable[bytes], rows: Optional[list[dict]]) -> int:
    """The number of non-blank lines, each checked to be UTF-8 (and, given `rows`, a JSON object appended
    to it)."""
    filled = 0
    for lineno, raw in enumerate(lines, 1):
        line = _decode_line(path, lineno, raw)
        if not line.strip():
            continue
        filled += 1
        if rows is not None:
            rows.append(_jsonl_row(path, lineno, line))
    return filled


def _decode_line(path: Path, lineno: int, raw: bytes) -> str:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _utf8_error(path, lineno, raw, e) from None
    return line.removeprefix("\ufeff") if lineno == 1 else line


def _jsonl_row(path: Path, lineno: int, line: str) -> dict:
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
    return row


def _json_document_rows(path: Path, whole: bytes) -> list[dict]:
    """A .json dataset is an array of objects (or one object: one row)."""
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
        return data
    if not isinstance(data, dict):
        raise DataError(
            f"{path} holds a JSON {_json_type(data)}; a .json dataset is an array of objects "
            '[{"prompt": ..., "answer": ...}, ...] (or use .jsonl: one object per line)'
        )
    return [data]


def read_data_file(path: Path, name: str):
    """The rows of the local file `path` (cfg.dataset `name`), after check_data_file: JsonRows for JSON and
    JSONL, a `datasets.Dataset` for CSV and Parquet."""
    if path.is_dir():
        raise DataError(
            f"dataset {name!r} is a directory, not a {path.suffix.lower()} file; pass the file itself"
        )
    if not path.is_file():
        raise DataError(f"dataset file {name!r} not found")
    rows = check_data_file(path)
    if rows is not None:
        return JsonRows(rows)
    import datasets

    try:
        return datasets.load_dataset(FILE_FORMATS[path.suffix.lower()], data_files=str(path), split="train")
    except Exception as e:  # a local file: load_rows' hub advice would not apply
        cause = e.__cause__ or e.__context__ or e  # DatasetGenerationError wraps the reader's error
        why = " ".join(str(cause).split())[:300].rstrip(". ")  # one line: pyarrow's own spans several
        raise DataError(
            f"could not read dataset file {str(path)!r}: {type(cause).__name__}: {why}. "
            f"Check that it is valid {path.suffix.lower()[1:]} with one row per example"
        ) from None
