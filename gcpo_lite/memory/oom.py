"""Out-of-memory backoff: halve the generation batch or micro-batch, free memory, redo the same work.

    backoff = OOMBackoff(plan)
    completions = backoff.map("generation", len(prompts), lambda s, e: generate(prompts[s:e]))
    backoff.accumulate(len(rows), lambda s, e: micro_step(rows[s:e]), params)

`map` and `accumulate` walk items [0, n) in slices of the plan's current size for the phase. When a
slice raises an out-of-memory error, the size is halved (in the plan, so later steps use it too),
the failed slice's partial results are dropped, memory is freed and the same items are tried again;
nothing is skipped, so every sample is generated and every row trained on. `accumulate` keeps the
gradients accumulated by earlier micro-steps aside while a micro-step runs, so a backward that dies
half way cannot leave partial gradients behind: the step's update equals that of a run that never
hit the error (up to float summation order when slices change size). Each backoff is logged and
recorded in `plan.backoffs`. At size 1 the error is re-raised with what to change.

Memory spent on speed goes first: when the trainer gives a `release` callback (it drops half of the
dequantized base's layers, dequantized_base.py), an out-of-memory error first calls it and redoes the slice at
the same size; sizes are halved only once it has nothing left to give back.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Callable, Optional, Sequence

log = logging.getLogger(__name__)

PHASE_SIZE = {
    "generation": "generation_batch_size",
    "training": "micro_batch_size",
    "logprobs": "micro_batch_size",
}  # phase -> Plan attribute it reads and halves
_OOM_MESSAGES = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "not enough memory",
    "cublas_status_alloc_failed",
    "failed to allocate",
)


class OutOfMemoryAtSizeOne(RuntimeError):
    """Out of memory with a single sequence per call: backoff cannot go lower."""


def is_oom(exc: BaseException) -> bool:
    """True for torch's OutOfMemoryError (CUDA) and the allocators' RuntimeErrors (CPU, MPS, cuBLAS)."""
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MESSAGES)


def free_memory() -> None:
    """Drop unreachable tensors and hand cached device blocks back (called after the error is gone)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


class OOMBackoff:
    def __init__(
        self,
        plan,
        *,
        enabled: bool = True,
        on_event: Optional[Callable[[dict], None]] = None,
        release: Optional[Callable[[], tuple[str, int, int]]] = None,
    ):
        self.plan = plan
        self.enabled = enabled
        self.on_event = on_event
        self.release = release  # () -> (what, from, to): memory given back before any size is halved
        self.step: Optional[int] = None  # the trainer sets this so events say which step
        if getattr(plan, "backoffs", None) is None:
            plan.backoffs = []

    @property
    def events(self) -> list:
        return self.plan.backoffs

    def size(self, phase: str) -> int:
        return max(1, int(getattr(self.plan, PHASE_SIZE[phase])))

    def _released(self, phase: str, start: int, end: int, error: BaseException) -> bool:
        """Give back memory spent on speed (the release callback) instead of halving a size; False when
        there is nothing left to give back."""
        what, old, new = self.release() if self.release is not None else ("", 0, 0)
        if old == new:
            return False
        free_memory()
        self._record({"phase": phase, "items": [start, end], "size": what, "from": old, "to": new}, error)
        log.warning(
            "out of memory in %s (items %d:%d): %s %d -> %d, retrying", phase, start, end, what, old, new
        )
        return True

    def _record(self, event: dict, error: BaseException) -> None:
        event = {"step": self.step, **event, "error": str(error).splitlines()[0][:200], "time": time.time()}
        self.plan.backoffs.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _shrink(self, phase: str, start: int, end: int, error: BaseException) -> None:
        old = self.size(phase)
        size_name = PHASE_SIZE[phase]
        if old <= 1:
            raise OutOfMemoryAtSizeOne(
                f"out of memory in {phase} with {size_name}=1 ({error}); one sequence does not fit. Shorten "
                "gcpo.max_completion_length or data.max_prompt_length, lower lora.r, use a smaller model, "
                "or free memory on the device (see `gcpo-lite plan`)"
            ) from error
        new = max(1, old // 2)
        setattr(self.plan, size_name, new)
        if size_name == "micro_batch_size" and getattr(self.plan, "gradient_accumulation_steps", 0):
            self.plan.gradient_accumulation_steps = -(-self.plan.gradient_accumulation_steps * old // new)
        self._record({"phase": phase, "items": [start, end], "from": old, "to": new}, error)
        log.warning(
            "out of memory in %s (items %d:%d, %s=%d): retrying with %s=%d",
            phase,
            start,
            end,
            size_name,
            old,
            size_name,
            new,
        )

    def map(self, phase: str, n: int, fn: Callable[[int, int], object]) -> list:
        """[fn(s, e) for consecutive slices covering [0, n)], retrying a slice that ran out of memory.

        The RNG state is restored before a retry, so a sampled slice redone at the smaller size draws
        what a run that used that size from the start would have drawn."""
        from gcpo_lite.run.rng import rng_state, set_rng_state  # torch: only once a run uses the backoff

        results, start = [], 0
        while start < n:
            end = min(n, start + self.size(phase))
            failed = None
            rng = rng_state()
            try:
                out = fn(start, end)
            except Exception as e:  # noqa: BLE001 (re-raised unless it is an OOM)
                if not (self.enabled and is_oom(e)):
                    raise
                failed = e
            if failed is not None:
                err, failed = failed, None
                err.__traceback__ = None  # the traceback pins the failed slice's tensors
                free_memory()
                set_rng_state(rng)
                if not self._released(phase, start, end, err):
                    self._shrink(phase, start, end, err)
                continue
            results.append(out)
            start = end
        return results

    def accumulate(
        self, n: int, fn: Callable[[int, int], object], params: Sequence, phase: str = "training"
    ) -> list:
        """Like map, for micro-steps that add into params' .grad (fn runs backward itself).

        Before each micro-step the accumulated gradients are moved aside (no copy); on success the
        fresh ones are added to them, on an OOM the fresh (possibly partial) ones are dropped."""
        params = list(params)

        def guarded(s: int, e: int):
            kept = [p.grad for p in params]
            for p in params:
                p.grad = None
            try:
                out = fn(s, e)
            except BaseException:
                for p, g in zip(params, kept):
                    p.grad = g
                raise
            for p, g in zip(params, kept):
                if g is not None:
                    p.grad = g if p.grad is None else g.add_(p.grad)
            return out

        return self.map(phase, n, guarded)
