"""Sympy comparisons in child processes, each with a hard wall-clock limit that works from any thread.

Why processes: sympy can run for minutes (or eat memory) on adversarial answers, and a Python
thread cannot be interrupted; `signal.alarm` only works in the main thread, and the trainer may
score from helper threads. A worker here is a plain `python -m gcpo_lite.verify.worker_main` child
(not multiprocessing: no fork of a CUDA / multi-threaded parent, no re-import of the user's
__main__) that answers one JSON line per request. A request that runs past the limit gets its
worker killed and replaced, and scores False.

Requests go to an idle worker; the pool grows to MAX_WORKERS, then callers wait for one to free
up (each is busy for at most the time limit).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

MAX_WORKERS = max(1, min(4, os.cpu_count() or 1))  # sympy is single-threaded; one per core, at most 4
STARTUP_TIMEOUT_S = 60.0  # python + sympy import in a fresh worker; not counted in the comparison limit
MEMORY_LIMIT_BYTES = 4 << 30  # address-space cap per worker: 2^(10^10) fails fast instead of swapping
PARENT_ENV = "GCPO_LITE_VERIFIER_PARENT"  # pid of the process that started the worker
PARENT_POLL_S = 0.5  # how often a worker checks that its parent is alive
# "1" when the worker was started from the parent's main thread: it may then ask Linux to SIGKILL it when that
# thread exits (PR_SET_PDEATHSIG). From another thread it must not: the signal would fire when *that thread*
# ends, with the trainer still alive. Either way the worker's getppid() watchdog is the portable fallback.
PDEATHSIG_ENV = "GCPO_LITE_VERIFIER_PDEATHSIG"


class _Worker:
    def __init__(self):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # so the child imports this same gcpo_lite
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env[PARENT_ENV] = str(os.getpid())  # the worker exits when this process is gone
        env[PDEATHSIG_ENV] = "1" if threading.current_thread() is threading.main_thread() else "0"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gcpo_lite.verify.worker_main"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        self.replies: queue.Queue = queue.Queue()
        self.ready = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for line in self.proc.stdout:
                self.replies.put(line)
        except Exception:  # pipe closed by kill()
            pass
        self.replies.put(None)  # EOF: the worker died

    def ask(self, kind: str, pred: str, gold: str, timeout_s: float) -> Optional[bool]:
        """True/False, or None when the worker timed out or died (the caller then kills it)."""
        try:
            if not self.ready:
                if self.replies.get(timeout=STARTUP_TIMEOUT_S) is None:
                    return None
                self.ready = True
            self.proc.stdin.write(json.dumps([kind, pred, gold]) + "\n")
            self.proc.stdin.flush()
            line = self.replies.get(timeout=timeout_s)
            return None if line is None else bool(json.loads(line))
        except (queue.Empty, OSError, ValueError):
            return None

    def kill(self):
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:
            pass


class _Pool:
    def __init__(self, max_workers: int):
        self.max_workers = max_workers
        self.idle: queue.LifoQueue = queue.LifoQueue()
        self.lock = threading.Lock()
        self.workers: list[_Worker] = []
        self.timeouts = 0  # comparisons killed at the limit, for logs and tests

    def _acquire(self) -> _Worker:
        while True:  # each busy worker frees up within the time limit (or is killed and replaced)
            try:
                return self.idle.get_nowait()
            except queue.Empty:
                pass
            with self.lock:
                if len(self.workers) < self.max_workers:
                    worker = _Worker()
                    self.workers.append(worker)
                    return worker
            try:
                return self.idle.get(timeout=1.0)
            except queue.Empty:
                continue  # re-check: a worker may have been removed without a replacement

    def _replace(self, dead: _Worker):
        dead.kill()
        with self.lock:
            if dead in self.workers:
                self.workers.remove(dead)
            fresh = _Worker()  # start now: its import overlaps the caller's next work
            self.workers.append(fresh)
        self.idle.put(fresh)

    def ask(self, kind: str, pred: str, gold: str, timeout_s: float) -> Optional[bool]:
        worker = self._acquire()
        verdict = worker.ask(kind, pred, gold, timeout_s)
        if verdict is None:
            self.timeouts += 1
            if self.timeouts <= 5:
                log.warning(
                    "math verifier: comparison %r vs %r passed the %.1fs limit (scored 0)",
                    pred[:80],
                    gold[:80],
                    timeout_s,
                )
            self._replace(worker)
        else:
            self.idle.put(worker)
        return verdict

    def close(self):
        with self.lock:
            for worker in self.workers:
                worker.kill()
            self.workers.clear()


_pool: Optional[_Pool] = None
_pool_lock = threading.Lock()


def pool() -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _Pool(MAX_WORKERS)
            atexit.register(_pool.close)
        return _pool


_verdicts: dict = {}  # (pred, gold) -> bool for finished comparisons; timeouts are not remembered
_verdicts_lock = threading.Lock()


def symbolic_equal_with_timeout(pred: str, gold: str, timeout_s: float) -> bool:
    """math_equivalence.symbolic_equal(pred, gold) in a worker; False past timeout_s."""
    return _ask("sympy", pred, gold, timeout_s)


def math_verify_with_timeout(completion: str, gold: str, timeout_s: float) -> bool:
    """math_verify.verify(parse(gold), parse(completion)) in a worker; False past timeout_s.

    In the worker's main thread math-verify's own signal-based timeouts work as designed."""
    return _ask("math_verify", completion, gold, timeout_s)


def _ask(kind: str, pred: str, gold: str, timeout_s: float) -> bool:
    key = (kind, pred, gold)
    if key in _verdicts:
        return _verdicts[key]
    verdict = pool().ask(kind, pred, gold, timeout_s)
    if verdict is None:
        return False
    with _verdicts_lock:
        if len(_verdicts) > 65536:
            _verdicts.clear()
        _verdicts[key] = verdict
    return verdict
