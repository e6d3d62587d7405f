"""Write the `smaller_number` task's data: train.jsonl and eval.jsonl next to this file (seeded, offline).

The task: "min|47|38=" -> "38", the smaller of two two-digit numbers. Comparison, not arithmetic: the answer is
always one of the two numbers in the prompt, copied digit for digit.

Each unordered pair {a, b} (10 <= a < b <= 99, 4005 pairs) appears once, in a random order, so no held-out
prompt has its mirror image ("min|38|47=") in training; EVAL_PAIRS of them go to eval.jsonl, the rest to
train.jsonl. Columns:
  prompt    the question, written only with characters the embedded tokenizer has (digits, `|`, `=`,
            m, i, n): characters outside its 48-token vocabulary would be dropped without a word
  answer    the smaller number, read by rewards.py:correct (the TRL convention passes it as a kwarg)
  solution  the gold completion GCPO injects when a whole group is wrong: the answer itself

usage: python examples/smaller_number/make_data.py [--seed 0] [--eval-pairs 500] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVAL_PAIRS = 500


def make_rows(seed: int) -> list[dict]:
    rng = random.Random(seed)
    pairs = [(a, b) for a in range(10, 100) for b in range(a + 1, 100)]  # 4005 unordered pairs
    rng.shuffle(pairs)
    rows = []
    for a, b in pairs:
        x, y = (a, b) if rng.random() < 0.5 else (b, a)
        answer = str(min(x, y))
        rows.append({"prompt": f"min|{x}|{y}=", "answer": answer, "solution": answer})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-pairs", type=int, default=EVAL_PAIRS)
    p.add_argument("--out-dir", type=Path, default=HERE)
    a = p.parse_args()
    rows = make_rows(a.seed)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(a.out_dir / "eval.jsonl", rows[: a.eval_pairs])
    write_jsonl(a.out_dir / "train.jsonl", rows[a.eval_pairs :])
    first = sum(int(r["answer"]) == int(r["prompt"].split("|")[1]) for r in rows[: a.eval_pairs])
    print(
        f"wrote {a.out_dir / 'train.jsonl'} ({len(rows) - a.eval_pairs} rows) and {a.out_dir / 'eval.jsonl'} "
        f"({a.eval_pairs} rows; 'answer the first number' scores {first / max(a.eval_pairs, 1):.1%} there)"
    )


if __name__ == "__main__":
    main()
