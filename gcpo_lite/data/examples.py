"""Dataset rows -> Examples (prompt, final answer, gold solution), and the prompt-length filter.

The columns come from data.*_field, else the preset's mapping, else prompt / answer / solution; a
missing column is a DataError listing the columns there are. The final answer is a column, the last
`\\boxed{}` of the solution, or GSM8K's `#### x`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

from gcpo_lite.config import DataConfig
from gcpo_lite.config.validation import shown
from gcpo_lite.data.errors import DataError
from gcpo_lite.data.presets import MATH_INSTRUCTION, Preset, gsm8k_answer, gsm8k_solution
from gcpo_lite.data.tasks import Example
from gcpo_lite.verify.answer import last_boxed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Columns:
    """Where a dataset's rows keep each field, resolved once per dataset."""

    prompt: str
    answer: Optional[str]  # read only when answer_from == "field"
    solution: Optional[str]
    answer_from: str  # field | boxed | gsm8k, as Preset.answer_from
    has_solution: bool  # the solution column is there
    use_fn: bool  # the preset's solution_fn builds the solution


def _columns_error(source: str, role: str, column: str, columns: list[str]) -> DataError:
    return DataError(
        f"{source}: no column {column!r} for the {role}; available columns: {', '.join(columns)}. "
        f"Pass --{role}-field COLUMN (data.{role}_field=COLUMN)"
    )


def _resolve_columns(columns: list[str], cfg: DataConfig, source: str, p: Optional[Preset]) -> _Columns:
    """The fields to read, from cfg's *_field over the preset's mapping; a DataError when one is missing."""
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
    return _Columns(
        prompt=prompt_col,
        answer=answer_col,
        solution=solution_col,
        answer_from=answer_from,
        has_solution=solution_col is not None and solution_col in columns,
        use_fn=p is not None and p.solution_fn is not None and not cfg.solution_field,
    )


def _not_text(where: str, role: str, column: str, value) -> DataError:
    """A row whose answer or solution is a dict or a list that no text stands for (it would train as its repr)."""
    how = {
        "answer": "give each row's final answer as text or a number (a list of them is read as the comma-"
        "separated answer '1, 2'), or pass --answer-field COLUMN (data.answer_field=COLUMN)",
        "solution": "pass --solution-field COLUMN (data.solution_field=COLUMN) naming a column of worked "
        "solutions as text",
    }[role]
    return DataError(
        f"{where}: the {role} column {column!r} holds a {type(value).__name__} ({shown(value, 40)}), not text; "
        f"{how}"
    )


def _answer_text(answer, column: str, where: str) -> Optional[str]:
    """The final answer as text (None when there is none). A list of numbers or strings is the comma-separated
    answer "1, 2" (the verifier compares comma lists unordered); a dict, or a list of anything else, is refused."""
    if isinstance(answer, (list, tuple)):
        if not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in answer):
            raise _not_text(where, "answer", column, answer)
        return ", ".join(str(a).strip() for a in answer)
    if isinstance(answer, dict):
        raise _not_text(where, "answer", column, answer)
    return None if answer is None else str(answer).strip()


def _answer_and_solution(
    row, cols: _Columns, p: Optional[Preset], where: str
) -> tuple[Optional[str], Optional[str]]:
    """(the row's final answer, None or blank when it has none; its gold solution text or None); `where`
    names the row in errors."""
    solution = p.solution_fn(row) if cols.use_fn else (row[cols.solution] if cols.has_solution else None)
    if isinstance(solution, (dict, list, tuple)):
        raise _not_text(where, "solution", cols.solution or "solution", solution)
    solution = None if solution is None else str(solution)
    if cols.answer_from == "gsm8k":
        answer = gsm8k_answer(solution or "")
        solution = gsm8k_solution(solution) if solution else None
    elif cols.answer_from == "boxed":
        answer = last_boxed(solution or "")
    else:
        answer = _answer_text(row[cols.answer], cols.answer, where)
    return answer, solution


def _prompt_text(row, cols: _Columns, cfg: DataConfig, p: Optional[Preset], source: str) -> Optional[str]:
    """The question (a preset's gets its instruction appended); None for a null or blank prompt."""
    prompt = row[cols.prompt]
    if prompt is None or str(prompt).strip() == "":  # a JSON null must not train as the text "None"
        return None
    if isinstance(prompt, (dict, list, tuple)):  # would train as its Python repr "[{'role': ...}]"
        raise DataError(
            f"{source}: the prompt column {cols.prompt!r} holds a {type(prompt).__name__}, not text. "
            f"Pass --prompt-field COLUMN (data.prompt_field=COLUMN) naming a column of question text"
        )
    prompt = str(prompt)
    if p is not None and not cfg.prompt_field:
        prompt = f"{prompt.rstrip()}\n\n{p.instruction or MATH_INSTRUCTION}"
    return prompt


def rows_to_examples(rows, cfg: DataConfig, source: str, preset: Optional[Preset] = None) -> list[Example]:
    """Map a `datasets.Dataset` (or list of dicts with `column_names`) to Examples.

    Rows without an answer, or with a null or empty prompt, are skipped and counted; a row whose answer or
    solution is not text (a dict, a nested list) is a DataError naming it (row N, counting from 1)."""
    p = preset
    cols = _resolve_columns(list(rows.column_names), cfg, source, p)
    examples, skipped, skipped_prompts, listed = [], 0, 0, 0
    for n, row in enumerate(rows, 1):
        if p is not None and p.keep_row is not None and not p.keep_row(row):
            skipped += 1
            continue
        answer, solution = _answer_and_solution(row, cols, p, f"{source}: row {n}")
        listed += cols.answer_from == "field" and isinstance(row[cols.answer], (list, tuple))
        if answer is None or str(answer).strip() == "":
            skipped += 1
            continue
        prompt = _prompt_text(row, cols, cfg, p, source)
        if prompt is None:
            skipped_prompts += 1
            continue
        examples.append(
            Example(prompt=prompt, answer=str(answer).strip(), solution=solution, system=cfg.system_prompt)
        )
    total = skipped + skipped_prompts + len(examples)
    if skipped:
        log.warning("%s: skipped %d of %d rows with no checkable final answer", source, skipped, total)
    if skipped_prompts:
        log.warning("%s: skipped %d of %d rows with a null or empty prompt", source, skipped_prompts, total)
    if listed:
        log.warning(
            "%s: %d rows hold a list in the answer column %r, each read as one comma-separated answer "
            "('1, 2': every value, in any order)",
            source,
            listed,
            cols.answer,
        )
    return examples


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
