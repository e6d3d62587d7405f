"""One warning when most samples keep hitting the length limit: the run is likely learning nothing.

A sample cut at gcpo.max_completion_length without its end token scores 0 by default (reward.truncated=zero),
so a model that reasons at length under a small limit sees every reward 0, every group all-wrong, and no
signal. `TruncationWarning` is fed each metrics row (train/metrics.py's MetricsLog.write) and says so once per
run, through the trainer's echo (rank 0 only), when truncated_frac stays >= THRESHOLD for STEPS steps in a row.
"""

from __future__ import annotations

from typing import Callable, Optional

THRESHOLD = 0.5  # truncated_frac at or above this counts as a high step
STEPS = 3  # high steps in a row before the warning


class TruncationWarning:
    """Fed every metrics row; echoes one line the first time STEPS rows in a row have truncated_frac >=
    THRESHOLD. A row without truncated_frac (an eval-only row) neither counts nor breaks the streak; a row
    below THRESHOLD starts it over."""

    def __init__(self, trainer, threshold: float = THRESHOLD, steps: int = STEPS):
        self.trainer, self.threshold, self.steps = trainer, threshold, steps
        self.streak, self.fired = 0, False

    def feed(self, row: dict) -> Optional[str]:
        """The warning line when this row completes the streak (also echoed), else None."""
        frac = row.get("truncated_frac")
        if frac is None or self.fired:
            return None
        self.streak = self.streak + 1 if frac >= self.threshold else 0
        if self.streak < self.steps:
            return None
        self.fired = True
        line = warning_line(self.trainer.cfg, frac, self.steps)
        echo: Callable[[str], None] = getattr(self.trainer, "echo", print)  # rank 0's; the others' do nothing
        echo(line)
        return line


def warning_line(cfg, frac: float, steps: int) -> str:
    """What is wrong and what to change, in one line, for the run's reward.truncated."""
    limit, mode = cfg.gcpo.max_completion_length, cfg.reward.truncated
    effect = {
        "zero": "they score 0 (reward.truncated=zero), so rewards and advantages say little",
        "mask": "they are left out of the loss (reward.truncated=mask), so few samples train",
        "score": "they are scored as cut off (reward.truncated=score), mostly without a final answer",
    }.get(mode, f"reward.truncated={mode} decides their score")
    fixes = "raise gcpo.max_completion_length (gcpo-lite plan sizes its memory), ask for shorter answers"
    fixes += (
        " (data.system_prompt), or set reward.truncated=mask (leave them out of the loss) or score (score "
        "their text)"
        if mode == "zero"
        else " (data.system_prompt)"
    )
    return (
        f"warning: {frac:.0%} of samples hit gcpo.max_completion_length={limit} without ending, {steps} steps "
        f"in a row; {effect}. To fix: {fixes}"
    )
