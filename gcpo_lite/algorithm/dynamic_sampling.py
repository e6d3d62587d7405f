"""DAPO's dynamic sampling: groups whose rewards are all equal carry no contrast, so they are dropped and new
prompts drawn in their place. The sampling itself is the caller's (a function); this module decides what to
keep and how many prompts to draw next."""

from __future__ import annotations

import math
from typing import Callable

from gcpo_lite.algorithm.batches import Sampled
from gcpo_lite.data.tasks import Example


def dynamic_sample(
    examples: list[Example],
    sample_groups: Callable[[list[Example]], Sampled],
    draw: Callable[[int], list[Example]],
    G: int,
    max_rounds: int,
) -> tuple[list[Example], Sampled, dict]:
    """(examples, samples, metrics): groups whose rewards are all equal are dropped and new prompts (from
    `draw`) sampled in their place, oversampled by the last round's keep rate, for at most `max_rounds` extra
    rounds. With nothing kept at all, the first round's groups stay."""
    want = len(examples)
    kept_ex, kept, first = [], Sampled.empty(), None
    drawn, rounds, rollouts, dropped, tokens = examples, 0, 0, 0, 0
    while True:
        s = sample_groups(drawn)
        first, rollouts = first or (drawn, s), rollouts + len(s.prompts)
        tokens += sum(len(c) for c in s.completions)
        dropped += _keep_groups_with_contrast(drawn, s, G, want, kept_ex, kept)
        keep_rate = max(0.1, 1 - dropped / max(1, rollouts // G))
        if len(kept_ex) >= want or rounds >= max_rounds:
            break
        rounds += 1
        shortfall = want - len(kept_ex)
        drawn = draw(min(4 * shortfall, math.ceil(shortfall / keep_rate)))
    if not kept_ex:
        kept_ex, kept = first
    info = {"rollouts": rollouts, "generated_tokens": tokens, "dynamic_rounds": rounds}
    return kept_ex, kept, {**info, "dynamic_dropped_groups": dropped}


def _keep_groups_with_contrast(
    drawn: list[Example], s: Sampled, G: int, want: int, kept_ex: list[Example], kept: Sampled
) -> int:
    """Append to kept_ex / kept the groups of `s` whose rewards differ (until `want` are kept); returns how
    many groups had all-equal rewards (dropped)."""
    dropped = 0
    for j, ex in enumerate(drawn):
        r = s.rewards[j * G : (j + 1) * G]
        if max(r) == min(r):
            dropped += 1
        elif len(kept_ex) < want:
            kept_ex.append(ex)
            kept.extend(s.group(j, G))
    return dropped
