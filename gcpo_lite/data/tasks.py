"""Built-in tasks: generated offline, with reference solutions and an exact verifier.

`addition` is the embedded default: two-digit addition, "47+38=" -> "85". A constant answer
passes at most ~1% of prompts (the sums spread over 20..198), so accuracy measures learning.
Train and held-out prompts come from disjoint (a, b) pairs, the same split for every seed.

`Example` is one prompt of any dataset: plain text (`prompt`) or chat form (`messages`, TRL's conversational
format, with `prompt` its last user message), the final answer when the data has one, the gold solution, and
the row's other raw columns (`columns`, handed to user reward functions as keyword arguments, as TRL does).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Example:
    """One prompt of a dataset. `solution` is the worked reference (gold), when the data has one.

    A chat-form prompt keeps its messages (a list of {"role", "content"} dicts, as the dataset holds them) in
    `messages`; `prompt` is then its last user message's content, for display and logs. `columns` holds the
    row's raw columns other than the prompt column, unchanged (answer and solution columns included)."""

    prompt: str  # the question, before the chat template (chat form: the last user message's content)
    answer: Optional[str]  # the final answer the verifier compares against; None when the data has none
    solution: Optional[str] = None  # reference solution text, ending in the answer
    system: Optional[str] = None  # optional system message (data.system_prompt)
    messages: Optional[list[dict]] = None  # chat form: the prompt's messages; None for a plain-text prompt
    columns: dict = field(default_factory=dict)  # the row's other raw columns (reward functions' kwargs)


@dataclass
class Task:
    name: str
    description: str
    make_splits: Callable[[int], tuple[list[Example], list[Example]]]  # seed -> (train, test)
    verify: Callable[[str, Example], float]  # completion text, example -> 1.0 / 0.0
    corpus: Callable[[], list[str]]  # texts the embedded tokenizer is trained on


_INT = re.compile(r"-?\d+")


def verify_last_integer(completion: str, example: Example) -> float:
    """1.0 when the last integer in the completion equals the answer, else 0.0."""
    found = _INT.findall(completion)
    return 1.0 if found and found[-1].lstrip("+") == (example.answer or "").strip() else 0.0


SPLIT_SEED = 0  # built-in splits are fixed: every train.seed is held out on the same prompts


def _addition_splits(seed: int, test_size: int = 500) -> tuple[list[Example], list[Example]]:
    """(train, held-out). The split is the same for every seed (the seed orders training prompts, through
    PromptStream), so runs with different seeds are scored on the same held-out prompts, and the demo's base,
    pretrained on the training split (embedded_base.py), never saw any of them."""
    del seed  # see SPLIT_SEED
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]  # 8100 prompts
    random.Random(SPLIT_SEED).shuffle(pairs)
    examples = [_addition_example(a, b) for a, b in pairs]
    return examples[test_size:], examples[:test_size]


def _addition_example(a: int, b: int) -> Example:
    total = str(a + b)
    return Example(
        prompt=f"{a}+{b}=", answer=total, solution=total, columns={"answer": total, "solution": total}
    )


def _addition_corpus() -> list[str]:
    rng = random.Random(1234)
    return [f"{rng.randint(0, 99)}+{rng.randint(0, 99)}={rng.randint(0, 198)}" for _ in range(2000)]


TASKS: dict[str, Task] = {
    "addition": Task(
        name="addition",
        description="two-digit addition (a+b=, a, b in 10..99); 7600 train / 500 held-out prompts",
        make_splits=_addition_splits,
        verify=verify_last_integer,
        corpus=_addition_corpus,
    ),
}

DEFAULT_TASK = "addition"
