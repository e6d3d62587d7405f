"""Dataset presets: the recipe (hub id, config, columns, how to read the final answer) of each named dataset.

A preset name (gsm8k, math, math500, aime24, aime25, openr1), one of its ALIASES or its own hub id finds it
(`find_preset`); every preset question gets MATH_INSTRUCTION appended ("... within \\boxed{}").

Each preset also carries the completion length its solutions need (`completion_length_default`): a run on a
preset that does not set gcpo.max_completion_length gets it instead of the generic 256, which truncates (and
with reward.truncated=zero scores 0) nearly every step-by-step answer (train/run_config.py applies it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, NamedTuple, Optional


def gsm8k_answer(solution: str) -> Optional[str]:
    """The final answer after GSM8K's `#### `, thousands commas removed; None without one."""
    m = re.search(r"####\s*(.+?)\s*$", solution.strip())
    return m.group(1).replace(",", "").strip() if m else None


def gsm8k_solution(solution: str) -> str:
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
    max_completion_length: int = 256  # tokens a run on it gets unless gcpo.max_completion_length is set
    length_note: str = ""  # why that length, in one line


# the longest budget that still fits the 4096 positions of Qwen2.5-Math (the usual small math base) after a
# data.max_prompt_length=512 prompt, and a 1.5B run in 8 GB (`gcpo-lite plan`: 88%)
_FITS_4096 = "3072 + a 512-token prompt fit Qwen2.5-Math's 4096 positions"

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
        max_completion_length=512,
        length_note="step-by-step grade-school solutions, ~150-400 tokens from 1.5B-7B models",
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
        max_completion_length=1024,
        length_note="competition solutions, ~300-700 tokens; level 5 often past 800",
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
        max_completion_length=1024,
        length_note="MATH test problems: MATH's lengths",
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
        max_completion_length=3072,
        length_note="olympiad attempts run 1-3k tokens; " + _FITS_4096,
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
        max_completion_length=3072,
        length_note="olympiad attempts run 1-3k tokens; " + _FITS_4096,
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
        max_completion_length=3072,
        length_note="R1-style reasoning runs to thousands of tokens (longer gold traces are skipped); "
        + _FITS_4096,
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


def _is_local(name: str) -> bool:
    try:
        return Path(name).expanduser().exists()
    except (OSError, ValueError):  # a name no file can have (too long, a NUL): not a local one
        return False


def preset_name(name: str) -> Optional[str]:
    """The PRESETS key for a preset name, alias or the preset's own hub id; None for anything else, and for
    a local file or directory of that name (`./math` is read from disk, not the hub)."""
    if _is_local(name):
        return None
    key = name.lower()
    key = ALIASES.get(key, key)
    return key if key in PRESETS else _BY_HUB_ID.get(key)


def find_preset(name: str) -> Optional[Preset]:
    """The preset for a preset name, alias or the preset's own hub id (openai/gsm8k gets gsm8k's mapping).

    A local file or directory of that name wins: `./math` is read from disk, not the hub."""
    key = preset_name(name)
    return PRESETS[key] if key else None


class PresetLength(NamedTuple):
    preset: str  # the PRESETS key (gsm8k for openai/gsm8k)
    tokens: int  # gcpo.max_completion_length a run on it gets by default
    reason: str  # one line: why


def preset_length(dataset: Optional[str]) -> Optional[PresetLength]:
    """The completion length a dataset's preset asks for, with its reason; None for no dataset, a built-in
    task, a local file or a hub id without a preset (those keep gcpo.max_completion_length's own default)."""
    key = preset_name(dataset) if dataset else None
    if key is None:
        return None
    p = PRESETS[key]
    return PresetLength(key, p.max_completion_length, p.length_note)


def completion_length_default(dataset: Optional[str]) -> Optional[int]:
    """gcpo.max_completion_length for a run on `dataset` that does not set it: its preset's, else None."""
    found = preset_length(dataset)
    return found.tokens if found else None


def with_hub_id(name: str, hub_id: str) -> Preset:
    """A copy of preset `name` reading from another hub id or local directory (mirrors, tests)."""
    return replace(PRESETS[name], hub_id=hub_id)
