"""Write countdown.jsonl: Countdown problems from the Hub as chat prompts, with their `target` and `nums`.

python examples/countdown_gpu/prepare.py            # needs the network once: Jiayi-Pan/Countdown-Tasks-3to4
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

INSTRUCTION = (
    "Using the numbers {nums}, each exactly once, and + - * / with parentheses, write an equation equal to "
    "{target}. Think in <think> </think> tags, then give only the equation in <answer> </answer> tags, "
    "for example <answer>(1 + 2) * 3</answer>."
)


def to_row(problem: dict) -> dict:
    """One Hub row ({"target", "nums"}) as a training row: a chat prompt plus the columns the rewards read."""
    nums = [int(n) for n in problem["nums"]]
    content = INSTRUCTION.format(nums=", ".join(map(str, nums)), target=int(problem["target"]))
    return {"prompt": [{"role": "user", "content": content}], "target": int(problem["target"]), "nums": nums}


def main(out: str = "countdown.jsonl", rows: int = 20000) -> None:
    from datasets import load_dataset

    problems = load_dataset("Jiayi-Pan/Countdown-Tasks-3to4", split="train").select(range(rows))
    Path(out).write_text("".join(json.dumps(to_row(p)) + "\n" for p in problems))
    print(f"wrote {rows} problems to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
