"""Math verifier throughput on a synthetic RL-like mix: completions/second through rewards.verify_math.

    python benchmarks/verifier_throughput.py [--n 4000] [--threads 1]

Each completion is ~1,500 characters of reasoning ending in a final answer; the gold answers
and the predicted forms mix the cases a GRPO/GCPO group produces: the same string (most
common once a policy learns), a different surface form of the same value (0.5 vs \\frac12,
\\sqrt8 vs 2\\sqrt2), and wrong answers. Prints the rate with a cold cache (every pair new)
and the share of pairs that needed sympy.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gcpo_lite.data.tasks import Example  # noqa: E402
from gcpo_lite.rewards.reward_model import verify_math  # noqa: E402
from gcpo_lite.verify import equivalence as math_equivalence
from gcpo_lite.verify import workers as math_worker

# (gold, same value in another form, wrong value): the answer styles of GSM8K / MATH / AIME
TRIPLES = [
    ("72", "72.0", "71"),
    ("\\frac{1}{2}", "0.5", "\\frac{1}{3}"),
    ("2\\sqrt{2}", "\\sqrt{8}", "\\sqrt{6}"),
    ("(1,2]", "\\left(1, 2\\right]", "[1,2]"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", "\\frac{\\sqrt2}{2}"),
    ("x^2+2x+1", "(x+1)^2", "x^2+1"),
    ("\\{1,2\\}", "\\{2,1\\}", "\\{1,3\\}"),
    ("204", "204", "240"),
    ("3\\pi", "3 \\pi", "\\frac{3\\pi}{2}"),
    ("-\\frac{3}{4}", "-0.75", "\\frac{3}{4}"),
    ("10\\%", "10", "20"),
    ("(3,-1)", "(3, -1)", "(-1,3)"),
    ("\\text{(B)}", "B", "C"),
    ("1000", "1,000", "100"),
]
FILLER = "Let us reason step by step. We expand, collect like terms and simplify the expression. " * 17


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, Example]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        gold, other, wrong = rng.choice(TRIPLES)
        pred = rng.choices([gold, other, wrong], weights=[0.5, 0.25, 0.25])[0]
        tag = f" (case {i})"  # every completion distinct, as in a real run
        out.append(
            (f"{FILLER}{tag}\nTherefore the answer is $\\boxed{{{pred}}}$.", Example(prompt="q", answer=gold))
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    verify_math(
        "\\boxed{\\sqrt{2}}", Example(prompt="q", answer="\\sqrt{2}+0")
    )  # start one worker (not timed)
    pairs = make_pairs(args.n)
    math_equivalence._cached_fast.cache_clear()
    math_worker._verdicts.clear()
    start = time.perf_counter()
    if args.threads == 1:
        scores = [verify_math(c, ex) for c, ex in pairs]
    else:
        with ThreadPoolExecutor(args.threads) as pool:
            scores = list(pool.map(lambda p: verify_math(*p), pairs))
    cold = time.perf_counter() - start
    start = time.perf_counter()
    for c, ex in pairs:
        verify_math(c, ex)
    warm = time.perf_counter() - start
    symbolic = len(math_worker._verdicts)
    print(
        f"mix: {args.n} completions, {args.threads} thread(s): {args.n / cold:,.0f}/s first pass "
        f"({1e3 * cold / args.n:.2f} ms each), {args.n / warm:,.0f}/s second pass; "
        f"correct {sum(scores) / len(scores):.0%}; distinct pairs that needed sympy: {symbolic}"
    )
    # worst case: every pair is new and needs sympy (a different surface form of a symbolic value)
    hard = [
        (
            f"so $\\boxed{{\\frac{{{k}}}{{\\sqrt{{2}}}}}}$",
            Example(prompt="q", answer=f"\\frac{{{k}\\sqrt{{2}}}}{{2}}"),
        )
        for k in range(1, 1 + args.n // 10)
    ]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        ok = list(pool.map(lambda p: verify_math(*p), hard))
    took = time.perf_counter() - start
    print(
        f"sympy-only: {len(hard)} distinct symbolic pairs, {args.threads} thread(s): {len(hard) / took:,.0f}/s "
        f"({1e3 * took / len(hard):.2f} ms each), all judged equal: {all(ok)}; "
        f"workers: {len(math_worker.pool().workers)}, timeouts: {math_worker.pool().timeouts}"
    )


if __name__ == "__main__":
    main()
