"""Agreement of our math verifier with math-verify on tests/math_cases.py (needs `pip install math-verify`).

    python benchmarks/verifier_agreement.py

Two levels: the answers alone (`math_equal(pred, gold)` vs `verify(parse("$gold$"), parse("$pred$"))`),
and whole completions ending in `\\boxed{pred}` through the two registered verifiers
(`verify_math` vs `verify_math_verify`, extraction included). Prints each difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from math_cases import CASES  # noqa: E402

from gcpo_lite.data.tasks import Example  # noqa: E402
from gcpo_lite.rewards.reward_model import verify_math, verify_math_verify  # noqa: E402
from gcpo_lite.verify.equivalence import math_equal  # noqa: E402


def main() -> None:
    import math_verify as mv

    answer_level, completion_level, expected_ok = [], [], 0
    for pred, gold, expected, _fmt in CASES:
        ours = math_equal(pred, gold)
        theirs = bool(
            mv.verify(
                mv.parse(f"${gold}$", parsing_timeout=None),
                mv.parse(f"${pred}$", parsing_timeout=None),
                timeout_seconds=None,
            )
        )
        expected_ok += ours == expected
        answer_level.append((ours == theirs, pred, gold, ours, theirs))
        text = "Let me work it out step by step.\nSo the final answer is $\\boxed{" + pred + "}$."
        ex = Example(prompt="q", answer=gold)
        a, b = verify_math(text, ex) == 1.0, verify_math_verify(text, ex) == 1.0
        completion_level.append((a == b, pred, gold, a, b))
    n = len(CASES)
    print(f"{n} cases; ours matches the expected verdict on {expected_ok}")
    for name, rows in (("answers", answer_level), ("completions", completion_level)):
        agree = sum(r[0] for r in rows)
        print(f"{name}: agreement with math-verify {agree}/{n} = {agree / n:.1%}")
        for _, pred, gold, ours, theirs in (r for r in rows if not r[0]):
            print(f"    ours={ours!s:5} math-verify={theirs!s:5}  {pred!r} vs {gold!r}")


if __name__ == "__main__":
    main()
