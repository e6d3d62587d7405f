"""The program a verifier worker runs (`python -m gcpo_lite.verify.worker_main`): one JSON request per line
on stdin, one verdict per line on stdout. The parent side, which starts and times these, is workers.py."""

from __future__ import annotations

import json
import os
import sys
import threading

from gcpo_lite.verify.workers import MEMORY_LIMIT_BYTES, PARENT_ENV, PARENT_POLL_S, PDEATHSIG_ENV


def _kill_me_with_parent_thread() -> None:
    """Linux: SIGKILL this process when the thread that started it exits (PR_SET_PDEATHSIG). The kernel
    delivers it even while a comparison holds the GIL in one long C call (a huge integer power), when the
    watchdog thread cannot run. Only asked for when the parent says it started us from its main thread."""
    if not sys.platform.startswith("linux") or os.environ.get(PDEATHSIG_ENV) != "1":
        return
    try:
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except Exception:  # no libc prctl here: the watchdog alone
        pass


def _exit_with_parent(parent_pid: int) -> None:
    """Die when the parent dies, even in the middle of a comparison (a kill -9 of the trainer must not leave
    a worker spinning at 100% CPU). PR_SET_PDEATHSIG where it is safe (see _kill_me_with_parent_thread), and
    a watchdog thread polling getppid(), which changes when the parent is gone: that one works on any POSIX
    system and whichever thread of the pool started the worker."""
    import signal
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the trainer, which then closes the pool
    _kill_me_with_parent_thread()

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(PARENT_POLL_S)

    if os.getppid() != parent_pid:  # the parent died before we got here (or before prctl took effect)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def _serve():
    parent = os.environ.get(PARENT_ENV)
    if parent and parent.isdigit():
        _exit_with_parent(int(parent))
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except Exception:  # not on this platform, or a lower hard limit: run without the cap
        pass
    sys.setrecursionlimit(5000)
    import gcpo_lite.verify.latex  # noqa: F401  (pay sympy's import before saying ready)
    from gcpo_lite.verify.symbolic import symbolic_equal

    try:
        from math_verify import parse, verify
    except ImportError:  # optional extra; the parent checks before sending such jobs
        parse = verify = None

    def run(kind: str, a: str, b: str) -> bool:
        if kind == "sympy":
            return symbolic_equal(a, b)
        if kind == "math_verify" and parse is not None:
            gold = parse(b if "\\boxed" in b or "$" in b else f"${b}$")
            return bool(verify(gold, parse(a)))
        return False

    out = sys.stdout  # the protocol channel; anything a library prints goes to stderr instead
    sys.stdout = sys.stderr
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        try:
            verdict = run(*json.loads(line))
        except BaseException:  # MemoryError, RecursionError, anything: score 0, stay alive
            verdict = False
        out.write("true\n" if verdict else "false\n")
        out.flush()


if __name__ == "__main__":
    _serve()
