"""The sympy part of a comparison has a hard time limit that holds from any thread."""

import threading
import time

from gcpo_lite.verify import workers as math_worker
from gcpo_lite.verify.equivalence import math_equal

SLOW = "(10^{7})!"  # sympy computes this factorial exactly: minutes of CPU (checked: > 100 s)


def test_slow_comparison_returns_within_limit():
    math_equal("\\sqrt{2}", "\\sqrt{2}+0")  # warm a worker: startup is not part of the limit
    start = time.perf_counter()
    assert math_equal(SLOW, "5", timeout_s=1.0) is False
    assert time.perf_counter() - start < 3.0
    assert math_worker.pool().timeouts >= 1


def test_limit_holds_from_a_thread_and_workers_recover():
    results = {}

    def score():
        start = time.perf_counter()
        results["verdict"] = math_equal(SLOW, "6", timeout_s=1.0)
        results["seconds"] = time.perf_counter() - start

    thread = threading.Thread(target=score)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert results["verdict"] is False and results["seconds"] < 15  # includes a cold worker start
    # the killed worker was replaced: symbolic comparisons still work
    assert math_equal("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}")
    assert not math_equal("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt2}{2}")


def test_concurrent_threads():
    pairs = [(f"\\sqrt{{{k * k}}}", str(k), True) for k in range(2, 14)] + [
        (f"\\sqrt{{{k * k + 1}}}", str(k), False) for k in range(2, 14)
    ]
    out = [None] * len(pairs)

    def run(i):
        out[i] = math_equal(pairs[i][0], pairs[i][1])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert out == [p[2] for p in pairs]
