"""Gold completions: a dataset's reference solution written the way the policy answers.

`gold_solution_text(example, model_family)` is the assistant text the trainer injects (the
lead's prompts.completion_ids_for_text then puts it through the chat template):
  - the solution ends in a final `\\boxed{answer}`; one is appended when it has none, so the
    verifier (and the policy) see the same answer format as a sampled completion;
  - for reasoning models (family r1_distill) the worked solution goes inside
    `<think>...</think>` and the boxed statement follows it, as R1 writes;
  - a solution that already is an R1 trace (OpenR1-Math) keeps its thinking for reasoning
    models; other models get its part after `</think>`, the short written solution.
`checked_gold(example, model_family, stats)` verifies the text with the math verifier before
use and counts failures (a reference whose own answer disagrees with the answer column).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from gcpo_lite.tasks import Example
from gcpo_lite.verify.answer import extract_answer, last_boxed
from gcpo_lite.verify.equivalence import math_equal

THINKING_FAMILIES = ("r1_distill",)  # families whose completions open with a <think> block


def is_thinking_family(model_family: Optional[str]) -> bool:
    family = (model_family or "").lower().replace("-", "_")
    return family in THINKING_FAMILIES or "r1_distill" in family


def prompt_opens_think(tokenizer) -> bool:
    """True when the chat template's generation prompt ends inside `<think>` (newer R1-Distill templates)."""
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "1+1?"}], add_generation_prompt=True,
                                             tokenize=False)
    except Exception:  # no chat template: the completion starts from scratch
        return False
    return isinstance(text, str) and text.rstrip().endswith("<think>")


def _split_think(text: str) -> tuple[Optional[str], str]:
    """(reasoning inside <think>...</think> or None, the text after it)."""
    if "</think>" not in text:
        return None, text
    before, after = text.rsplit("</think>", 1)
    reasoning = before.split("<think>", 1)[1] if "<think>" in before else before
    return reasoning.strip(), after.strip()


def _final_statement(answer: str) -> str:
    return f"The final answer is $\\boxed{{{answer}}}$."


def gold_solution_text(example: Example, model_family: Optional[str], *, prompt_opens_think: bool = False) -> str:
    """The gold completion text for `example` as a model of `model_family` would write it.

    prompt_opens_think: the chat template's generation prompt already ends in `<think>` (newer
    DeepSeek-R1-Distill templates do), so the completion starts inside the thinking block."""
    answer = example.answer.strip()
    reasoning, written = _split_think(example.solution or "")
    if last_boxed(written) is None:  # no final box: state the answer the way the policy is asked to
        written = (written.rstrip() + "\n\n" if written.strip() else "") + _final_statement(answer)
    if not is_thinking_family(model_family):
        return written
    if reasoning is None:  # a plain worked solution: it becomes the thinking, the box follows
        reasoning = (example.solution or "").strip() or f"The answer is {answer}."
        written = _final_statement(last_boxed(written) or answer)
    opening = "" if prompt_opens_think else "<think>\n"
    return f"{opening}{reasoning}\n</think>\n\n{written}"


@dataclass
class GoldStats:
    """How many gold solutions were checked and how many failed verification."""
    checked: int = 0
    failed: int = 0

    @property
    def failed_fraction(self) -> float:
        return self.failed / self.checked if self.checked else 0.0

    def __str__(self) -> str:
        return f"{self.failed}/{self.checked} gold solutions failed verification ({self.failed_fraction:.1%})"


def verify_gold(text: str, example: Example) -> bool:
    """True when the final answer of `text` equals the example's answer (no last-number guessing)."""
    predicted = extract_answer(text, last_number_fallback=False)
    return predicted is not None and math_equal(predicted, example.answer)


def checked_gold(example: Example, model_family: Optional[str], stats: Optional[GoldStats] = None,
                 **kwargs) -> Optional[str]:
    """gold_solution_text(...) when it verifies, else None; counts into `stats`."""
    text = gold_solution_text(example, model_family, **kwargs)
    ok = verify_gold(text, example)
    if stats is not None:
        stats.checked += 1
        stats.failed += not ok
    return text if ok else None


def gold_report(examples: list[Example], model_family: Optional[str]) -> GoldStats:
    """Verify every example's gold text up front (for the run's log: the failing fraction)."""
    stats = GoldStats()
    for ex in examples:
        if ex.solution:  # without a reference solution there is nothing to inject (status "missing")
            checked_gold(ex, model_family, stats)
    return stats
