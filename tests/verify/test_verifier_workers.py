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


def _wait_gone(pid, seconds):
    deadline = time.time() + seconds
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux")
def test_worker_stuck_holding_the_gil_dies_with_its_killed_parent():
    # One long C call (a huge integer power) holds the GIL: the getppid() watchdog thread cannot run, so only
    # PR_SET_PDEATHSIG (asked for because the parent starts the worker from its main thread) can end it.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        import json, os, subprocess, sys, time
        from gcpo_lite.verify import workers as mw
        env = dict(os.environ, **{mw.PARENT_ENV: str(os.getpid()), mw.PDEATHSIG_ENV: "1"})
        stuck = ("import gcpo_lite.verify.symbolic as e, gcpo_lite.verify.worker_main as m; "
                 "e.symbolic_equal = lambda a, b: pow(3, 10 ** int(a)) > 0; m._serve()")
        w = subprocess.Popen([sys.executable, "-c", stuck], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        assert w.stdout.readline().strip() == "ready"
        w.stdin.write(json.dumps(["sympy", "9", "x"]) + "\\n")
        w.stdin.flush()
        print(w.pid, flush=True)
        time.sleep(120)
    """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    worker_pid = int(parent.stdout.readline())
    time.sleep(0.3)  # let it get into the power
    assert _alive(worker_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    try:
        assert _wait_gone(worker_pid, 3.0), "a worker busy in C code outlived its killed parent"
    finally:
        if _alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
        parent.stdin.close()


def test_worker_started_from_a_finished_thread_stays_alive():
    # PR_SET_PDEATHSIG fires when the spawning *thread* exits: a pool grown from a helper thread must not
    # lose its workers when that thread ends.
    import threading

    from gcpo_lite.verify import workers as mw

    pool = mw._Pool(1)
    verdicts = []
    try:
        helper = threading.Thread(target=lambda: verdicts.append(pool.ask("sympy", "1/2", "0.5", 30.0)))
        helper.start()
        helper.join()
        assert verdicts == [True]
        worker = pool.workers[0]
        time.sleep(0.5)
        assert worker.proc.poll() is None, "the worker died with the thread that started it"
        assert pool.ask("sympy", "2x", "x+x", 30.0) is True and pool.workers == [worker]
    finally:
        pool.close()


def test_the_pool_is_closed_at_exit():
    # A normal exit (including after Ctrl-C's KeyboardInterrupt) runs the pool's close: no worker is left.
    code = textwrap.dedent("""
        from gcpo_lite.verify import workers as mw
        assert mw.symbolic_equal_with_timeout("1/2", "0.5", 30.0)
        print(mw.pool().workers[0].proc.pid, flush=True)
        raise KeyboardInterrupt
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    worker_pid = int(out.stdout.split()[0])
    assert _wait_gone(worker_pid, 3.0)


@pytest.mark.parametrize(
    "inner",
    [
        "1 " * 50_000,
        "1,000" * 20_000,
        "(1,2)," * 16_000,
        "\\text{" * 16_000,
        "{}" * 50_000,
        "1" + "." * 99_000,
    ],
    ids=["digits", "thousands", "tuples", "open-text", "empty-braces", "dots"],
)
def test_the_whole_reward_on_a_100kb_answer_is_fast(inner):
    # extraction keeps the last 100 KB; normalization and the fast comparison that follow in the trainer's
    # process must stay linear in it (about 0.3 s at worst here; generous bound)
    from gcpo_lite.data.tasks import Example
    from gcpo_lite.rewards.reward_model import verify_math

    t0 = time.perf_counter()
    assert (
        verify_math("\\boxed{" + inner + "}", Example(prompt="q", answer="\\frac{1}{2}", solution=None))
        == 0.0
    )
    assert time.perf_counter() - t0 < 2.0


def _start_parent(code, **popen):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **popen,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("spawned_from", ["main thread", "helper thread"])
def test_pool_workers_die_within_3s_of_a_kill_9_of_the_trainer(spawned_from):
    # The real pool's own spawn path: from the main thread (PR_SET_PDEATHSIG + watchdog) and from a helper
    # thread that has already ended (the getppid() watchdog alone; a thread-bound death signal would misfire).
    parent = _start_parent(f"""
        import threading, time
        from gcpo_lite.verify import workers as mw
        ask = lambda: mw.symbolic_equal_with_timeout("1/2", "0.5", 30.0)
        if {spawned_from == "helper thread"}:
            t = threading.Thread(target=ask); t.start(); t.join()
        else:
            assert ask()
        mw.pool().max_workers = 2

        def busy():  # keeps the workers comparing while the parent is killed
            for i in range(10**6):
                mw.pool().ask("sympy", f"x**{{i}}", "y", 30.0)

        for _ in range(2):
            threading.Thread(target=busy, daemon=True).start()
        while len(mw.pool().workers) < 2:
            time.sleep(0.05)
        time.sleep(0.3)
        print(*[w.proc.pid for w in mw.pool().workers], flush=True)
        time.sleep(120)
    """)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    try:
        assert all(_wait_gone(p, 3.0) for p in pids), "a verifier worker outlived its kill -9'd parent"
    finally:
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        parent.stdin.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_to_the_process_group_reaches_only_the_trainer_which_closes_the_pool():
    # A terminal's Ctrl-C signals the whole foreground process group: the workers must ignore it, keep working
    # while the trainer handles its KeyboardInterrupt, and be closed (atexit) when the trainer exits.
    parent = _start_parent(
        """
        import time
        from gcpo_lite.verify import workers as mw
        assert mw.symbolic_equal_with_timeout("1/2", "0.5", 30.0)
        worker = mw.pool().workers[0]
        try:
            print(worker.proc.pid, flush=True)  # inside the try: the test's Ctrl-C may come at once
            time.sleep(120)
        except KeyboardInterrupt:
            time.sleep(0.5)
            ok = worker.proc.poll() is None and mw.pool().ask("sympy", "2x", "x+x", 30.0) is True
            print("alive" if ok and mw.pool().workers == [worker] else "dead", flush=True)
        """,
        start_new_session=True,  # its own process group, as a shell gives a job
    )
    worker_pid = int(parent.stdout.readline())
    try:
        assert os.getpgid(worker_pid) == parent.pid  # the worker is in the group Ctrl-C signals
        os.killpg(parent.pid, signal.SIGINT)
        assert parent.stdout.readline().strip() == "alive"
        assert parent.wait(timeout=30) == 0
        assert _wait_gone(worker_pid, 3.0), "the trainer exited without closing its verifier workers"
    finally:
        if parent.poll() is None:
            parent.kill()
        if _alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
        parent.stdin.close()
