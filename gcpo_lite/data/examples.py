"""Dataset rows -> Examples (prompt, final answer, gold solution, the row's other columns), and the
prompt-length filter.

The columns come from data.*_field, else the preset's mapping, else prompt / answer / solution; a
missing column is a DataError listing the columns there are. The final answer is a column, the last
`\\boxed{}` of the solution, or GSM8K's `#### x`; a run whose rewards need no final answer
(needs_answer=False) takes rows without one (answer None). A prompt is text, or a list of {"role",
"content"} chat messages (chat.py: TRL's conversational format; no preset instruction is appended to it).
Every other column of a row is kept, unchanged, in Example.columns (user reward functions' keyword arguments).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

from gcpo_lite.config import DataConfig
from gcpo_lite.config.validation import shown
from gcpo_lite.data.chat import chat_messages, has_system, last_user_content, template_messages
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
    has_answer: bool  # the answer column is there (it may be missing when the run needs no answer)
    has_solution: bool  # the solution column is there
    use_fn: bool  # the preset's solution_fn builds the solution


def _columns_error(source: str, role: str, column: str, columns: list[str]) -> DataError:
    return DataError(
        f"{source}: no column {column!r} for the {role}; available columns: {', '.join(columns)}. "
        f"Pass --{role}-field COLUMN (data.{role}_field=COLUMN)"
    )


def _resolve_columns(
    columns: list[str], cfg: DataConfig, source: str, p: Optional[Preset], needs_answer: bool = True
) -> _Columns:
    """The fields to read, from cfg's *_field over the preset's mapping; a DataError when one is missing (the
    answer's column, or the solution the answer comes from, only when `needs_answer` or when named in cfg)."""
    prompt_col = cfg.prompt_field or (p.prompt_field if p else "prompt")
    solution_col = cfg.solution_field or (p.solution_field if p else "solution")
    answer_col = cfg.answer_field or (p.answer_field if p else "answer")
    answer_from = "field" if cfg.answer_field or not p else p.answer_from
    if not p and not cfg.answer_field and answer_col not in columns and solution_col in columns:
        answer_from = "boxed"  # hendrycks-style data: the final answer is the solution's last \boxed{}
    if prompt_col not in columns:
        raise _columns_error(source, "prompt", prompt_col, columns)
    has_answer = answer_col is not None and answer_col in columns
    if answer_from == "field" and not has_answer and (needs_answer or cfg.answer_field):
        raise _columns_error(source, "answer", answer_col or "answer", columns)
    if cfg.solution_field and cfg.solution_field not in columns:
        raise _columns_error(source, "solution", cfg.solution_field, columns)
    needs_solution = answer_from != "field" and needs_answer
    if needs_solution and (solution_col is None or solution_col not in columns):
        raise _columns_error(source, "solution", solution_col or "solution", columns)
    return _Columns(
        prompt=prompt_col,
        answer=answer_col,
        solution=solution_col,
        answer_from=answer_from,
        has_answer=has_answer,
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
        answer = _answer_text(row[cols.answer], cols.answer, where) if cols.has_answer else None
    return answer, solution


def _prompt_value(row, cols: _Columns, cfg: DataConfig, p: Optional[Preset], where: str):
    """(the question text, the chat messages or None); None for a null or blank prompt. A preset's question
    gets its instruction appended (a chat-form prompt never does); `where` names the row in errors."""
    prompt = row[cols.prompt]
    if isinstance(prompt, (list, tuple)):  # chat form: TRL's conversational format
        messages = chat_messages(prompt, where, cols.prompt)
        return last_user_content(messages), messages
    if prompt is None or str(prompt).strip() == "":  # a JSON null must not train as the text "None"
        return None
    if isinstance(prompt, dict):  # would train as its Python repr "{'role': ...}"
        raise DataError(
            f"{where}: the prompt column {cols.prompt!r} holds a {type(prompt).__name__}, not text or a list of "
            f"chat messages. Pass --prompt-field COLUMN (data.prompt_field=COLUMN) naming a column of question "
            f'text (or of [{{"role": "user", "content": ...}}] message lists)'
        )
    prompt = str(prompt)
    if p is not None and not cfg.prompt_field:
        prompt = f"{prompt.rstrip()}\n\n{p.instruction or MATH_INSTRUCTION}"
    return prompt, None


@dataclass
class _Counts:
    """What rows_to_examples skipped or noticed, for its one warning of each kind per dataset."""

    no_answer: int = 0  # rows skipped: no checkable final answer (or a preset's keep_row refused them)
    no_prompt: int = 0  # rows skipped: null or blank prompt
    listed: int = 0  # answers given as a list (read as one comma-separated answer)
    chat: int = 0  # chat-form prompts kept
    own_system: int = 0  # of them, with their own system message while data.system_prompt is set


def _row_example(
    row, where: str, cols: _Columns, cfg: DataConfig, p: Optional[Preset], needs_answer: bool, counts: _Counts
) -> Optional[Example]:
    """One row's Example, or None when it is skipped (counted in `counts`)."""
    if p is not None and p.keep_row is not None and not p.keep_row(row):
        counts.no_answer += 1
        return None
    answer, solution = _answer_and_solution(row, cols, p, where)
    counts.listed += (
        cols.answer_from == "field" and cols.has_answer and isinstance(row[cols.answer], (list, tuple))
    )
    answer = None if answer is None or str(answer).strip() == "" else str(answer).strip()
    if answer is None and needs_answer:
        counts.no_answer += 1
        return None
    prompt = _prompt_value(row, cols, cfg, p, where)
    if prompt is None:
        counts.no_prompt += 1
        return None
    text, messages = prompt
    counts.chat += messages is not None
    counts.own_system += bool(messages is not None and cfg.system_prompt and has_system(messages))
    columns = {key: value for key, value in row.items() if key != cols.prompt}
    return Example(text, answer, solution, system=cfg.system_prompt, messages=messages, columns=columns)


def _log_counts(source: str, counts: _Counts, kept: int, answer_column: Optional[str]) -> None:
    total = counts.no_answer + counts.no_prompt + kept
    if counts.no_answer:
        log.warning(
            "%s: skipped %d of %d rows with no checkable final answer", source, counts.no_answer, total
        )
    if counts.no_prompt:
        log.warning("%s: skipped %d of %d rows with a null or empty prompt", source, counts.no_prompt, total)
    if counts.listed:
        log.warning(
            "%s: %d rows hold a list in the answer column %r, each read as one comma-separated answer "
            "('1, 2': every value, in any order)",
            source,
            counts.listed,
            answer_column,
        )
    if counts.own_system:
        log.warning(
            "%s: %d of %d chat prompts have their own system message, kept as it is; data.system_prompt is put "
            "only before the others",
            source,
            counts.own_system,
            counts.chat,
        )


def rows_to_examples(
    rows, cfg: DataConfig, source: str, preset: Optional[Preset] = None, *, needs_answer: bool = True
) -> list[Example]:
    """Map a `datasets.Dataset` (or list of dicts with `column_names`) to Examples.

    A prompt is text, or a list of {"role", "content"} chat messages (Example.messages). Each Example keeps the
    row's other columns, unchanged, in Example.columns. Rows with a null or empty prompt, and (when
    `needs_answer`) rows without an answer, are skipped and counted; with needs_answer=False the answer column
    may be missing and answerless rows are kept (answer None). A row whose answer or solution is not text (a
    dict, a nested list), or whose chat messages are malformed, is a DataError naming it (row N, from 1)."""
    cols = _resolve_columns(list(rows.column_names), cfg, source, preset, needs_answer)
    examples, counts = [], _Counts()
    for n, row in enumerate(rows, 1):
        example = _row_example(row, f"{source}: row {n}", cols, cfg, preset, needs_answer, counts)
        if example is not None:
            examples.append(example)
    _log_counts(source, counts, len(examples), cols.answer)
    return examples


def filter_by_prompt_length(
    examples: list[Example],
    tokenizer,
    max_tokens: int,
    to_ids: Optional[Callable[[object, Example], list[int]]] = None,
) -> tuple[list[Example], int]:
    """(examples whose prompt has at most max_tokens tokens, number dropped).

    to_ids(tokenizer, example) gives the prompt's ids; pass prompts.prompt_ids to count the
    chat template too. The default counts the messages' text alone (the question and system message, or every
    message of a chat-form prompt), batched."""
    if not examples:
        return [], 0
    if to_ids is not None:
        lengths = [len(to_ids(tokenizer, ex)) for ex in examples]
    else:
        texts = ["\n".join(m["content"] for m in template_messages(ex)) for ex in examples]
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    kept = [ex for ex, n in zip(examples, lengths) if n <= max_tokens]
    return kept, len(examples) - len(kept)
