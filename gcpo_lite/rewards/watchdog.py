"""A time limit for one call of a user's reward function, run in the calling thread.

Reward functions run in the trainer's own thread, as in TRL: libraries that rely on signals (math-verify's
`parse` uses signal.alarm) keep working, and a function sees the process it expects. A timer thread watches
the call; when it runs past its limit, the timer says so in one line and raises RewardTimeout inside the
call (CPython's asynchronous exception, delivered at the function's next Python bytecode). A pure-Python
hang (a loop, a sympy simplification) stops there. A call blocked inside C code (a socket read without a
timeout, time.sleep) cannot be interrupted: it stops when that C call returns, and the line printed at the
limit says which function holds the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from typing import Iterator, Optional

log = logging.getLogger(__name__)


class RewardTimeout(Exception):
    """A reward function ran past reward.timeout_s."""


@contextlib.contextmanager
def time_limit(seconds: Optional[float], name: str, samples: int) -> Iterator[None]:
    """Raise RewardTimeout in this thread if the block runs longer than `seconds` (None: no limit)."""
    if seconds is None:
        yield
        return
    thread_id, lock, state = threading.get_ident(), threading.Lock(), {"done": False}

    def fire() -> None:
        with lock:  # the block's end and the timer never cross: once done is set, nothing is raised
            if state["done"]:
                return
            log.warning(
                "reward function %s has run for %gs on %d samples (reward.timeout_s): stopping it; if it is "
                "blocked in C code (a network call, a sleep) it stops only when that returns",
                name,
                seconds,
                samples,
            )
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread_id), ctypes.py_object(RewardTimeout)
            )

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
        timer.cancel()
