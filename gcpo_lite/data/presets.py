"""Dataset presets: the recipe (hub id, config, columns, how to read the final answer) of each named dataset.

A preset name (gsm8k, math, math500, aime24, aime25, openr1), one of its ALIASES or its own hub id finds it
(`find_preset`); every preset question gets MATH_INSTRUCTION appended ("... within \\boxed{}").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional


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


def with_hub_id(name: str, hub_id: str) -> Preset:
    """A copy of preset `name` reading from another hub id or local directory (mirrors, tests)."""
    return replace(PRESETS[name], hub_id=hub_id)
