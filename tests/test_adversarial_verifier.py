"""The verifier never hangs the trainer and never outlives it."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from gcpo_lite.verify.answer import extract_answer, normalize_answer

MB = 1_000_000
ADVERSARIAL = {
    "unclosed boxed": "\\boxed{" * (MB // 7),
    "unclosed fbox": "\\fbox{" * (MB // 6),
    "boxes, braces and a real box": "\\boxed{1} { \\boxed{" * (MB // 20),
    "deep nesting": "\\boxed{" + "{" * MB,
    "boxes without braces": "\\boxed $" * (MB // 8),
    "a thousands chain": ",".join(["111"] * (MB // 4)) + "1111",
    "closing braces": "}" * MB,
    "think tags": "</think>\\boxed{" * (MB // 15),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_one_megabyte_of_adversarial_text_is_fast(name):
    text = ADVERSARIAL[name]
    t0 = time.perf_counter()
    answer = extract_answer(text)
    normalize_answer(answer if answer is not None else text[-1000:])
    assert time.perf_counter() - t0 < 1.0  # was 114 s for 1 MB of unclosed boxes (a rescan per box)


def test_extraction_looks_only_at_the_tail():
    assert extract_answer("\\boxed{7}" + " filler" * 30_000 + " so \\boxed{8}") == "8"
    assert extract_answer("\\boxed{7}" + " filler" * 30_000) is None  # the box is beyond the 100 KB tail


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_dies_with_its_killed_parent():
    # The worker's stdin is inherited from this test (kept open), so only the parent-liveness check can end it:
    # an EOF on its pipe would hide a missing check.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        import os, subprocess, sys, time
        from gcpo_lite.verify import workers as mw
        env = dict(os.environ, **{mw.PARENT_ENV: str(os.getpid())})
        w = subprocess.Popen([sys.executable, "-m", "gcpo_lite.verify.worker_main"], env=env,
                             stdout=subprocess.PIPE, text=True)
        assert w.stdout.readline().strip() == "ready"
        print(w.pid, flush=True)
        time.sleep(120)
    """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    worker_pid = int(parent.stdout.readline())
    assert _alive(worker_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 5
    while _alive(worker_pid) and time.time() < deadline:
        time.sleep(0.1)
    try:
        assert not _alive(worker_pid), "verifier worker outlived its killed parent"
    finally:
        if _alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
        parent.stdin.close()


def test_ctrl_c_does_not_kill_workers():
    from gcpo_lite.verify import workers as mw

    pool = mw._Pool(1)
    try:
        assert pool.ask("sympy", "1/2", "0.5", 30.0) is True
        worker = pool.workers[0]
        worker.proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends to the whole process group
        time.sleep(0.5)
        assert worker.proc.poll() is None
        assert pool.ask("sympy", "2x", "x+x", 30.0) is True and pool.workers == [worker]
    finally:
        pool.close()
