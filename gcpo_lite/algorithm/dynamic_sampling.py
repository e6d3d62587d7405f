"""DAPO's dynamic sampling: groups without contrast are dropped and new prompts drawn in their place. A group
whose rewards are all equal has none, unless it is all wrong and GCPO's gold will replace one of its samples
(the trainer's has_contrast says so): GCPO + dynamic sampling rescues what gold can, and refills only the rest.
The sampling itself is the caller's (a function); this module decides what to keep and how many prompts to
draw next."""

from __future__ import annotations

import math
from typing import Callable

from gcpo_lite.algorithm.batches import Sampled
from gcpo_lite.data.tasks import Example


def rewards_differ(example: Example, group: Sampled) -> bool:
    """DAPO's test: the group's rewards are not all equal."""
    return max(group.rewards) != min(group.rewards)


def dynamic_sample(
    examples: list[Example],
    sample_groups: Callable[[list[Example]], Sampled],
    draw: Callable[[int], list[Example]],
    G: int,
    max_rounds: int,
    has_contrast: Callable[[Example, Sampled], bool] = rewards_differ,
) -> tuple[list[Example], Sampled, dict]:
    """(examples, samples, metrics): groups without contrast (has_contrast false: by default, all rewards
    equal; the trainer also counts an all-wrong group that its gold will rescue) are dropped and new prompts
    (from `draw`) sampled in their place, oversampled by the last round's keep rate, for at most `max_rounds`
    extra rounds. With nothing kept at all, the first round's groups stay. metrics["generated"] holds every
    sample of every round (dropped groups included): what the step's rollout metrics describe."""
    want = len(examples)
    kept_ex, kept, first, every = [], Sampled.empty(), None, Sampled.empty()
    drawn, rounds, dropped = examples, 0, 0
    while True:
        s = sample_groups(drawn)
        first = first or (drawn, s)
        every.extend(s)
        lost = _keep_groups_with_contrast(drawn, s, G, want, kept_ex, kept, has_contrast)
        dropped += lost
        keep_rate = max(0.1, 1 - lost / max(1, len(drawn)))  # this round's share of groups with contrast
        if len(kept_ex) >= want or rounds >= max_rounds:
            break
        rounds += 1
        shortfall = want - len(kept_ex)
        drawn = draw(min(4 * shortfall, math.ceil(shortfall / keep_rate)))
    if not kept_ex:  # nothing had contrast: the first round's groups train after all (not counted as dropped)
        (kept_ex, kept), dropped = first, dropped - len(first[0])
    tokens = sum(len(c) for c in every.completions)
    info = {"rollouts": len(every.prompts), "generated_tokens": tokens, "dynamic_rounds": rounds}
    return kept_ex, kept, {**info, "dynamic_dropped_groups": dropped, "generated": every}


def _keep_groups_with_contrast(
    drawn: list[Example], s: Sampled, G: int, want: int, kept_ex: list[Example], kept: Sampled, has_contrast
) -> int:
    """Append to kept_ex / kept the groups of `s` with contrast (until `want` are kept); returns how many
    groups had none (dropped)."""
    dropped = 0
    for j, ex in enumerate(drawn):
        group = s.group(j, G)
        if not has_contrast(ex, group):
            dropped += 1
        elif len(kept_ex) < want:
            kept_ex.append(ex)
            kept.extend(group)
    return dropped
