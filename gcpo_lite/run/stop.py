"""Stopping and saving during training: checkpoints every train.save_steps (with save_steps 0: at the first step
end once train.save_minutes have passed since the last one, by rank 0's clock under torchrun) and at the end,
and a clean stop on Ctrl-C / SIGTERM at a step boundary.

A signal that arrives before the step's first optimizer update abandons that step and saves the state it
started from; one that arrives later lets the step finish, then saves. A second Ctrl-C quits at once,
without saving.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Optional

from gcpo_lite.run.checkpoints import save_checkpoint


class StepInterrupted(BaseException):
    """Raised by the signal handler inside a step that can still be abandoned (BaseException: no
    `except Exception` in the loop may swallow it)."""


class Checkpointer:
    """Used by Trainer.train: periodic saves, and saves on SIGINT/SIGTERM at a step boundary.

    ckpt = Checkpointer(trainer)
    with ckpt.signals():
        while ...:
            ckpt.begin_step()
            ... rollout, update (optimizer.step), log ...
            if ckpt.end_step():
                break          # a stop was requested; the checkpoint is written
    # StepInterrupted escapes signals() after the step-start state was saved
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.stop_requested = False
        self.interrupted_by: Optional[str] = None
        self.last_saved_step: Optional[int] = None
        self._in_step = False
        self._updated = False  # an optimizer step happened in this step: it can no longer be abandoned
        self._start_state: Optional[dict] = None
        self._saved_at = time.monotonic()  # the clock of train.save_minutes: the start, then each save
        self._hook = trainer.optimizer.register_step_pre_hook(self._on_optimizer_step)

    def _on_optimizer_step(self, *_):
        self._updated = True

    # -------------------------------------------------------- steps
    def begin_step(self) -> None:
        """Capture the step's starting state (trainer.state_dict()): a signal before the step's first
        optimizer update rewinds to it. torchrun ranks never abandon a step (the others would wait), so they
        capture nothing."""
        t = self.trainer
        self._start_state = None if t.world.distributed else t.state_dict()
        self._updated = False
        self._in_step = True

    def end_step(self) -> bool:
        """After the step's metrics are logged: save when due; True when the loop must stop (under torchrun
        when any rank must: they stop, and save, together). One collective agrees on both: whether any rank
        must stop, and whether rank 0's clock says train.save_minutes have passed (the others add 0)."""
        self._in_step = False
        t = self.trainer
        stop, late = t.world.all_max([float(self.stop_requested), float(self._late_here())])
        if stop and not self.stop_requested:  # another rank caught the signal
            self.stop_requested, self.interrupted_by = True, "SIGTERM"
        every = t.cfg.train.save_steps
        if self.stop_requested or (every and t.step % every == 0) or (not every and late):
            self.save()
        return self.stop_requested

    def _late_here(self) -> bool:
        """With save_steps 0: train.save_minutes (> 0) have passed since the last save, on rank 0 (the only
        clock the ranks go by: theirs differ)."""
        train = self.trainer.cfg.train
        if train.save_steps or not train.save_minutes or not self.trainer.world.is_main:
            return False
        return time.monotonic() - self._saved_at >= 60 * train.save_minutes

    def save(self) -> Optional[Path]:
        """Write a checkpoint (under torchrun every rank calls this: their states are gathered and rank 0
        writes; the others return None)."""
        state = self.trainer.state_dict()  # under torchrun a collective: every rank calls it
        path = save_checkpoint(self.trainer, state) if self.trainer.world.is_main else None
        self.last_saved_step, self._saved_at = self.trainer.step, time.monotonic()
        return path

    def save_final(self) -> Optional[Path]:
        """At the end of training (after the final eval), unless this step is already saved."""
        if self.last_saved_step != self.trainer.step:
            return self.save()
        return None

    def _rewind(self) -> None:
        """Back to the state at begin_step (the adapter and optimizer have not changed since)."""
        self.trainer.load_state_dict(self._start_state)
        self.trainer.model.zero_grad(set_to_none=True)

    # -------------------------------------------------------- signals
    def _handler(self, signum, frame):
        name = signal.Signals(signum).name
        if self.stop_requested:  # second signal: quit now
            raise KeyboardInterrupt
        self.stop_requested, self.interrupted_by = True, name
        # A single process abandons a step that has not updated yet; torchrun ranks never abandon one on
        # their own (the others would wait for them): they all finish the step and stop at its end.
        if self._in_step and not self._updated and not self.trainer.world.distributed:
            raise StepInterrupted(name)
        self.trainer.echo(
            f"\n{name}: finishing step {self.trainer.step + (1 if self._in_step else 0)}, then saving "
            "a checkpoint (send it again to quit without saving)"
        )

    @contextlib.contextmanager
    def signals(self):
        """Install the SIGINT/SIGTERM handlers (main thread only); on an abandoned step, save its start."""
        installed = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                installed[sig] = signal.signal(sig, self._handler)
        try:
            yield self
        except StepInterrupted as e:
            self._in_step = False
            self._rewind()
            path = self.save()
            self.trainer.echo(
                f"\n{e.args[0]}: stopped in step {self.trainer.step + 1} before its update; "
                f"saved the state after step {self.trainer.step} to {path}"
            )
        finally:
            for sig, old in installed.items():
                signal.signal(sig, old)
            self._hook.remove()
