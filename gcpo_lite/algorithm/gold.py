"""Gold completions: a dataset's reference solution written the way the policy answers.

`gold_solution_text(example, model_family)` is the assistant text the trainer injects (the
lead's prompts.completion_ids_for_text then puts it through the chat template):
  - the solution ends in a final `\\boxed{answer}`; one is appended when it has none, so the
    verifier (and the policy) see the same answer format as a sampled completion;
  - for reasoning models (family r1_distill) the worked solution goes inside
    `<think>...</think>` and the boxed statement follows it, as R1 writes;
  - a solution that already is an R1 trace (OpenR1-Math) keeps its thinking for reasoning
    models; other models get its part after `</think>`, the short written solution.
`make_gold` checks a gold text with the run's own reward function (a reference whose answer disagrees
with the answer column is not injected); `inject` decides, without a model, which rows get gold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from gcpo_lite.data.tasks import Example
from gcpo_lite.verify.answer import last_boxed

THINKING_FAMILIES = ("r1_distill",)  # families whose completions open with a <think> block


def is_thinking_family(model_family: Optional[str]) -> bool:
    family = (model_family or "").lower().replace("-", "_")
    return family in THINKING_FAMILIES or "r1_distill" in family


def prompt_opens_think(tokenizer) -> bool:
    """True when the chat template's generation prompt ends inside `<think>` (newer R1-Distill templates)."""
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "1+1?"}], add_generation_prompt=True, tokenize=False
        )
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


def gold_solution_text(
    example: Example, model_family: Optional[str], *, prompt_opens_think: bool = False
) -> str:
    """The gold completion text for `example` as a model of `model_family` would write it.

    prompt_opens_think: the chat template's generation prompt already ends in `<think>` (newer
    DeepSeek-R1-Distill templates do), so the completion starts inside the thinking block."""
    answer = (example.answer or "").strip()
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


# ---------------------------------------------------------------- checking and injecting

GOLD_STATUSES = ("ok", "truncated", "skipped_overflow", "failed_verification", "suppressed_token", "missing")


@dataclass
class Gold:
    """One example's gold completion, ready to inject (ids) or the reason it cannot be (status)."""

    ids: Optional[list[int]]  # completion ids ending in the turn's end token; None when unusable
    reward: float = 0.0
    status: str = "ok"  # one of GOLD_STATUSES


def make_gold(
    text: Optional[str],
    *,
    tokenize: Callable[[str], list[int]],
    score: Callable[[list[int]], tuple],
    max_len: int,
    overflow: str,
    suppressed: Sequence[int] = (),
) -> Gold:
    """Check a gold text the way the policy's own completions are checked.

    text: the gold completion text (None: the example has no reference solution);
    tokenize: text -> completion ids (chat template, end token); score: ids -> (reward, correct), on what the
    tokenizer keeps of the text; overflow: what a gold longer than max_len becomes: truncate | skip;
    suppressed: ids the sampler bans and the training log-probs mask (a gold holding one is not injected)."""
    if not text:
        return Gold(None, status="missing")
    ids = tokenize(text)
    if suppressed and not set(suppressed).isdisjoint(ids):  # its log-prob would be -inf: the loss NaN
        return Gold(None, status="suppressed_token")
    reward, ok = score(ids)
    if not ok:
        return Gold(None, reward, "failed_verification")
    if len(ids) <= max_len:
        return Gold(ids, reward)
    if overflow == "skip":
        return Gold(None, reward, "skipped_overflow")
    return Gold(ids[:max_len], reward, "truncated")  # the first max_len tokens, rewarded as the solution


def should_inject(mode: str, correct: Sequence[bool]) -> bool:
    """all_wrong (GCPO): only when no sample in the group is correct; always: every group; never: GRPO."""
    if mode == "never":
        return False
    return mode == "always" or not any(correct)


def choose_gold_slot(rewards: Sequence[float], mean_logprobs: Sequence[float]) -> int:
    """Index of the sample the gold solution replaces: lowest reward, ties by lowest mean log-prob."""
    return min(range(len(rewards)), key=lambda i: (rewards[i], mean_logprobs[i]))


def inject(
    rewards: Sequence[float],
    correct: Sequence[bool],
    mean_logprobs: Sequence[float],
    golds: Sequence[Gold],
    num_generations: int,
    mode: str,
) -> tuple[dict[int, Gold], dict[str, int]]:
    """Where gold goes in a step of B = groups x G rows (grouped contiguously).

    golds[g] is group g's Gold; it is only read for groups that need one (it may be computed lazily).
    Returns ({row: Gold injected there}, {status: groups that wanted a gold and got that status}).
    Pure: no model, no tokenizer; the caller writes the gold ids and rewards into the rows."""
    G = num_generations
    slots: dict[int, Gold] = {}
    statuses: dict[str, int] = {}
    for g in range(len(rewards) // G):
        rows = slice(g * G, (g + 1) * G)
        if not should_inject(mode, correct[rows]):
            continue
        gold = golds[g]
        statuses[gold.status] = statuses.get(gold.status, 0) + 1
        if gold.ids is not None:
            slots[g * G + choose_gold_slot(rewards[rows], mean_logprobs[rows])] = gold
    return slots, statuses


class LazyGolds:
    """golds[g] for inject: group g's Gold, made (by `make`, which may cache) only when inject asks for it."""

    def __init__(self, examples: list[Example], make: Callable[[Example], Gold]):
        self.examples, self.make = examples, make

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, g: int) -> Gold:
        return self.make(self.examples[g])
