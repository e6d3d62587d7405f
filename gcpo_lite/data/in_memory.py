"""Datasets handed over in memory (a Python API's `train_dataset=` / `eval_dataset=`, as TRL's GRPOTrainer takes).

`as_rows(obj, source)` accepts a `datasets.Dataset` as it is, or a list of dicts (one per row; its columns are
every key any row has, None where a row lacks one, as files.JsonRows reads a JSON file). A DatasetDict, a list
holding anything but dicts, or any other type is a DataError naming what it got and what to pass instead.
"""

from __future__ import annotations

from gcpo_lite.config.validation import shown
from gcpo_lite.data.errors import DataError
from gcpo_lite.data.files import JsonRows

_WHAT_TO_PASS = (
    "pass a datasets.Dataset (Dataset.from_list, from_dict or from_pandas make one) or a list of dicts, one per "
    'row (e.g. {"prompt": ..., "answer": ...})'
)


def _list_rows(rows, source: str) -> JsonRows:
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
    if bad is not None:
        row = rows[bad]
        raise DataError(
            f"{source}[{bad}] is a {type(row).__name__} ({shown(row, 40)}), not a dict of columns; {_WHAT_TO_PASS}"
        )
    return JsonRows(list(rows))


def as_rows(obj, source: str):
    """`obj` as rows rows_to_examples reads (a `datasets.Dataset`, or JsonRows for a list of dicts); `source`
    ("train_dataset" or "eval_dataset") names it in errors."""
    if isinstance(obj, (list, tuple)):
        return _list_rows(obj, source)
    import datasets

    if isinstance(obj, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        split = "train" if source == "train_dataset" else "test"
        raise DataError(
            f"{source} is a DatasetDict (splits: {', '.join(map(str, obj))}); pass one split, e.g. "
            f"{source}=dataset[{split!r}]"
        )
    if isinstance(obj, datasets.Dataset):
        return obj
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}".removeprefix("builtins.")
    raise DataError(f"{source} is a {kind}; {_WHAT_TO_PASS}")
