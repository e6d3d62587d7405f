"""Checkpoints with exact resume: save every train.save_steps steps, at the end, and on Ctrl-C / SIGTERM.

    RUN_DIR/checkpoints/
      step-000010/
        adapter/            adapter_model.safetensors + adapter_config.json (PEFT format)
        trainer_state.pt    optimizer, LR schedule, RNG states, data position, step (loaded weights_only)
        plan.json           the scheduler plan the run used (restored on resume: same batch splits, same RNG use)
        metrics.jsonl       metrics.jsonl rows up to this step
        state.json          step, epoch, cursor, time: for people and `gcpo-lite export`
      latest                "step-000010", replaced atomically once that directory is complete

A checkpoint is written into a temporary directory and renamed into place, then `latest` is replaced
(temp file + os.replace), so a kill at any moment leaves `latest` naming a complete checkpoint. Only the
last train.save_total_limit are kept.

Exactness: every source of randomness the loop uses (python's, torch's CPU and CUDA generators, the
per-epoch data shuffles) is captured at a step boundary, so a resumed run consumes the same random
stream as an uninterrupted one and logs the same metrics. A signal that arrives before the step's first
optimizer update abandons that step and saves the state it started from; one that arrives later lets the
step finish, then saves. A second Ctrl-C quits at once, without saving.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import torch

from gcpo_lite.config import ConfigError
from gcpo_lite.run.distributed import rank_view
from gcpo_lite.run.rng import rng_state, set_rng_state

log = logging.getLogger(__name__)

FORMAT = 1
_STEP_DIR = re.compile(r"^step-(\d+)$")


class StepInterrupted(BaseException):
    """Raised by the signal handler inside a step that can still be abandoned (BaseException: no
    `except Exception` in the loop may swallow it)."""


# ---------------------------------------------------------------- locating checkpoints


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, directory) of the complete checkpoints, oldest first."""
    root = checkpoints_dir(run_dir)
    out = []
    if root.is_dir():
        for p in root.iterdir():
            m = _STEP_DIR.match(p.name)
            if m and p.is_dir() and (p / "trainer_state.pt").is_file():
                out.append((int(m.group(1)), p))
    return sorted(out)


def _pointer_target(run_dir: Path) -> Optional[str]:
    """The directory name `latest` holds, or None when it is missing or not a step-N name."""
    try:
        name = (checkpoints_dir(run_dir) / "latest").read_bytes().decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if _STEP_DIR.match(name) else None


def latest_checkpoint(run_dir: str | Path) -> Optional[Path]:
    """The checkpoint `latest` names (else the newest complete one); None when there is none."""
    root = checkpoints_dir(run_dir)
    name = _pointer_target(Path(run_dir))
    if name is not None and (root / name / "trainer_state.pt").is_file():
        return root / name
    if (root / "latest").exists():
        log.warning("checkpoints/latest does not name a complete checkpoint; using the newest complete one")
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


STATE_KEYS = ("step", "optimizer", "lr_schedule", "data", "rng")  # what load_checkpoint reads
REQUIRED_FILES = (
    "trainer_state.pt",
    "adapter/adapter_model.safetensors",
    "adapter/adapter_config.json",
    "plan.json",
    "metrics.jsonl",
)


class UnsafeCheckpointError(ConfigError):
    """torch.load(weights_only=True) refused a pickle in a checkpoint: it could run code when loaded."""


# What the safe loader says when a pickle asks for code it will not run (a global function or class, a
# call, a constructed object); any other UnpicklingError ("Unsupported operand 197") is bytes that are not
# a pickle torch.save wrote: damage, not an attack.
_UNSAFE_PICKLE = re.compile(
    r"GLOBAL|Trying to call reduce|Can only create new object|Can only build|persistent_load", re.I
)


def load_state_file(path: Path) -> dict:
    """trainer_state.pt through the safe loader; an unsafe or unreadable file becomes a ConfigError
    (UnsafeCheckpointError when the loader refused code in it)."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if _UNSAFE_PICKLE.search(str(e)):
            raise UnsafeCheckpointError(
                f"{path} was refused as unsafe: it holds Python objects that could run "
                "code when loaded (not a file gcpo-lite wrote); use another checkpoint"
            ) from None
        detail = next((ln.strip() for ln in str(e).splitlines() if "Unsupported" in ln), str(e)[:120])
        raise ConfigError(f"{path} is damaged: the safe loader cannot read it ({detail})") from None
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing") from None
    except Exception as e:  # truncated zip (RuntimeError), empty (EOFError), garbage (KeyError, struct.error)
        raise ConfigError(f"{path} is damaged or truncated ({_describe(e)})") from None


def _describe(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def checkpoint_problem(path: Path) -> Optional[str]:
    """Why the checkpoint at path cannot be resumed from (missing or unloadable files), or None if intact."""
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        state = load_state_file(path / "trainer_state.pt")
    except ConfigError as e:
        return str(e)
    problem = _state_problem(state)
    if problem:
        return problem
    try:
        from safetensors.torch import load_file

        load_file(str(path / "adapter" / "adapter_model.safetensors"))
    except Exception as e:  # truncated or corrupt safetensors: several exception types across versions
        return f"adapter/adapter_model.safetensors is damaged ({_describe(e)})"
    for name in ("adapter/adapter_config.json", "plan.json"):
        try:
            value = json.loads((path / name).read_text())
        except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
            return f"{name} is damaged ({_describe(e)})"
        if not isinstance(value, dict):
            return f"{name} is damaged (a JSON {type(value).__name__}, not an object)"
    try:  # it replaces the run's metrics.jsonl on resume: every row must parse
        lines = (path / "metrics.jsonl").read_text().splitlines()
    except (OSError, ValueError) as e:
        return f"metrics.jsonl is damaged ({_describe(e)})"
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            return f"metrics.jsonl is damaged (line {n}: {str(e)[:80]})"
        if not isinstance(row, dict):
            return f"metrics.jsonl is damaged (line {n} is not a JSON object)"
    return None


def _state_problem(state) -> Optional[str]:
    """What is wrong with a loaded trainer_state.pt (a file that unpickles but is not one this program
    wrote, or was altered), or None."""
    if not isinstance(state, dict):
        return f"trainer_state.pt holds a {type(state).__name__}, not a gcpo-lite trainer state"
    if state.get("format") != FORMAT:
        return f"trainer_state.pt has format {state.get('format')}, this gcpo-lite reads {FORMAT}"
    lacking = [k for k in STATE_KEYS if k not in state]
    if lacking:
        return f"trainer_state.pt lacks {', '.join(lacking)} (not a complete gcpo-lite checkpoint)"
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"trainer_state.pt is damaged (step is {step!r})"
    for key in ("optimizer", "lr_schedule", "data", "rng"):
        if not isinstance(state[key], dict):
            return f"trainer_state.pt is damaged ({key} is a {type(state[key]).__name__}, not a dict)"
    lacking = [f"data.{k}" for k in ("cursor", "epoch", "order", "fingerprint") if k not in state["data"]]
    lacking += [f"optimizer.{k}" for k in ("state", "param_groups") if k not in state["optimizer"]]
    lacking += [f"rng.{k}" for k in ("python", "torch") if k not in state["rng"]]
    if lacking:
        return f"trainer_state.pt is damaged (no {', '.join(lacking)})"
    return None


def find_checkpoint(run_dir: str | Path, step: Optional[int] = None, echo=None) -> Path:
    """The checkpoint at `step`, or (step None) the newest intact one; a ConfigError saying what exists.

    Without a step, damaged checkpoints are skipped, newest first, each with one line saying why (to echo,
    else the log); a ConfigError lists every problem when none is intact."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    root = checkpoints_dir(run_dir)
    steps = sorted(
        (
            (int(m.group(1)), p)
            for p in (root.iterdir() if root.is_dir() else [])
            if (m := _STEP_DIR.match(p.name)) and p.is_dir()
        ),
        reverse=True,
    )
    if step is not None:
        for s, p in steps:
            if s == step:
                try:  # an unsafe pickle raises its own error; other damage is described below
                    load_state_file(p / "trainer_state.pt")
                except UnsafeCheckpointError:
                    raise
                except ConfigError:
                    pass
                problem = checkpoint_problem(p)
                if problem:
                    raise ConfigError(f"checkpoint {p} cannot be used: {problem}")
                return p
        raise ConfigError(
            f"{run_dir} has no checkpoint at step {step}; available: {sorted(s for s, _ in steps) or 'none'}"
        )
    if not steps:
        raise ConfigError(
            f"{run_dir} has no checkpoint (checkpoints/step-N/); a run writes them every "
            "train.save_steps steps, at the end, and on Ctrl-C/SIGTERM"
        )
    say = echo or log.warning
    pointer = _pointer_target(run_dir)
    if (root / "latest").exists() and pointer is None:
        say("checkpoints/latest is unreadable; choosing the newest intact checkpoint instead")
    problems = []
    for _, path in steps:
        problem = checkpoint_problem(path)
        if problem is None:
            if problems:
                say(f"resuming from {path.name}, the newest intact checkpoint")
            return path
        problems.append(f"{path.name}: {problem}")
        say(f"skipping checkpoint {path.name}: {problem}")
    raise ConfigError(
        f"no intact checkpoint in {root}; restore one from a backup, or start over with "
        f"`gcpo-lite train --output-dir {run_dir} --overwrite` (moves this run aside):\n  "
        + "\n  ".join(problems)
    )


# ---------------------------------------------------------------- state capture


def trainer_state(trainer) -> dict:
    """Everything but the adapter weights (trainer.state_dict() and the format), safe for weights_only loading."""
    return {"format": FORMAT, **trainer.state_dict()}


# ---------------------------------------------------------------- writing


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _rows_up_to(path: Path, step: int) -> list[str]:
    """JSONL lines whose `step` is <= step (a killed run may have logged past its last checkpoint)."""
    if not path.is_file():
        return []
    keep = []
    for line in path.read_text(errors="replace").splitlines():  # damaged bytes: that row is dropped
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if not isinstance(row, dict):  # not a row this program wrote
            continue
        at = row.get("step", 0)
        if not isinstance(at, (int, float)) or at <= step:
            keep.append(line)
    return keep


def save_checkpoint(trainer, run_dir: Optional[Path] = None, state: Optional[dict] = None) -> Path:
    """Write checkpoints/step-N atomically, point `latest` at it, prune to train.save_total_limit.

    `state` (from trainer_state) may be given when it was captured earlier, e.g. at the start of an
    abandoned step; the adapter and optimizer are then unchanged since that capture."""
    run_dir = Path(run_dir or trainer.out_dir)
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    state = state or trainer_state(trainer)
    step = state["step"]
    name = f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        trainer.model.save_pretrained(str(tmp / "adapter"), safe_serialization=True)
        torch.save(state, tmp / "trainer_state.pt")
        (tmp / "plan.json").write_text(json.dumps(trainer.plan.to_dict(), indent=1, default=str))
        rows = _rows_up_to(run_dir / "metrics.jsonl", step)
        (tmp / "metrics.jsonl").write_text("".join(r + "\n" for r in rows))
        (tmp / "state.json").write_text(
            json.dumps(
                {
                    "step": step,
                    "epoch": state["data"]["epoch"],
                    "cursor": state["data"]["cursor"],
                    "max_steps": trainer.cfg.train.max_steps,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "base_model": trainer.resolved.display,
                },
                indent=1,
            )
        )
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
        final = root / name
        if final.exists():  # re-saving a step (e.g. the end of a resumed run that had nothing to do)
            old = root / f".old-{name}-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(root)
        _write_text_atomic(root / "latest", name + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(run_dir, trainer.cfg.train.save_total_limit, keep=final)
    log.debug("checkpoint %s written", final)
    return final


def _prune(run_dir: Path, limit: Optional[int], keep: Path) -> None:
    if not limit or limit < 1:
        return
    found = list_checkpoints(run_dir)
    for _, path in found[:-limit] if len(found) > limit else []:
        if path != keep:
            shutil.rmtree(path, ignore_errors=True)
    for stale in checkpoints_dir(run_dir).glob(".tmp-step-*"):  # left by a kill during a save
        if stale.is_dir() and time.time() - stale.stat().st_mtime > 60:
            shutil.rmtree(stale, ignore_errors=True)


# ---------------------------------------------------------------- loading


def load_checkpoint(trainer, path: str | Path, *, restore_logs: bool = True) -> int:
    """Restore a freshly constructed Trainer (same config) to the checkpoint; returns its step.

    With restore_logs, the run directory's metrics.jsonl becomes the checkpoint's copy and
    completions.jsonl loses rows logged after the checkpoint, so the resumed run appends cleanly."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(path)
    state = load_state_file(path / "trainer_state.pt")
    needed = ["adapter/adapter_model.safetensors"] + (["metrics.jsonl"] if restore_logs else [])
    missing = [f for f in needed if not (path / f).is_file()]
    problem = f"missing {', '.join(missing)}" if missing else _state_problem(state)
    if problem:
        raise ConfigError(f"checkpoint {path} cannot be used: {problem}")
    state = rank_view(state, trainer.world, f"checkpoint {path}")  # torchrun: this rank's own streams
    try:  # first: a checkpoint of other data is refused untouched
        trainer.prompts.load_state_dict(state["data"])
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{path / 'trainer_state.pt'} is damaged (data position: {_describe(e)})") from None
    weights = load_file(str(path / "adapter" / "adapter_model.safetensors"), device=str(trainer.device))
    try:
        result = set_peft_model_state_dict(trainer.model, weights)
    except RuntimeError as e:  # shapes differ: another LoRA rank or base model
        raise ConfigError(
            f"adapter in {path} does not fit this model ({str(e).splitlines()[-1].strip()[:160]}); "
            "resume with the run's own config (model.*, lora.* unchanged)"
        ) from None
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ConfigError(f"adapter in {path} does not fit this model (unexpected keys {unexpected[:3]}...)")
    rng = state.pop("rng")
    plan_file = path / "plan.json"
    if "plan" in state or plan_file.is_file():
        # same generation / micro-batch splits as before (they decide how the RNG is consumed); under
        # torchrun each rank's own plan (an OOM on one rank shrinks only its sizes)
        try:
            saved = state.pop("plan") if "plan" in state else json.loads(plan_file.read_text())
        except ValueError as e:  # UnicodeDecodeError included
            raise ConfigError(
                f"checkpoint {path} cannot be used: plan.json is damaged ({_describe(e)})"
            ) from None
        if not isinstance(saved, dict):
            raise ConfigError(f"checkpoint {path} cannot be used: plan.json is not a JSON object")
        changed = {
            k: (getattr(trainer.plan, k, None), v)
            for k, v in saved.items()
            if hasattr(trainer.plan, k) and getattr(trainer.plan, k) != v
        }
        for k, v in saved.items():
            if hasattr(trainer.plan, k):
                setattr(trainer.plan, k, v)
        sizes = {k: c for k, c in changed.items() if k.endswith("_size")}
        if sizes:
            log.info(
                "resume keeps the checkpoint's plan %s (this machine's fresh plan would differ)",
                {k: v for k, (_, v) in sizes.items()},
            )
    if restore_logs:
        run_dir = Path(trainer.out_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_text_atomic(run_dir / "metrics.jsonl", (path / "metrics.jsonl").read_text())
        comp = run_dir / "completions.jsonl"
        if comp.is_file():
            _write_text_atomic(comp, "".join(r + "\n" for r in _rows_up_to(comp, int(state["step"]))))
    try:
        trainer.load_state_dict({**state, "rng": rng})  # last: nothing after this may draw random numbers
    except ConfigError:
        raise
    except Exception as e:  # KeyError, ValueError, RuntimeError (optimizer shapes), TypeError (altered file)
        raise ConfigError(
            f"{path / 'trainer_state.pt'} does not fit this run ({_describe(e)}); "
            "resume with the run's own config, or pick another checkpoint"
        ) from None
    return trainer.step


# ---------------------------------------------------------------- the loop's side


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
        self._hook = trainer.optimizer.register_step_pre_hook(self._on_optimizer_step)

    def _on_optimizer_step(self, *_):
        self._updated = True

    # -------------------------------------------------------- steps
    def begin_step(self) -> None:
        t = self.trainer
        self._start_state = {
            "step": t.step,
            "prompts": t.prompts.state_dict(),
            "rng": rng_state(),
            "errors": t.rewards.errors,
        }  # the prompt order too: an epoch start reshuffles it
        self._updated = False
        self._in_step = True

    def end_step(self) -> bool:
        """After the step's metrics are logged: save when due; True when the loop must stop (under torchrun
        when any rank must: they stop, and save, together)."""
        self._in_step = False
        t = self.trainer
        if t.world.any(self.stop_requested) and not self.stop_requested:  # another rank caught the signal
            self.stop_requested, self.interrupted_by = True, "SIGTERM"
        every = t.cfg.train.save_steps
        if self.stop_requested or (every and t.step % every == 0):
            self.save()
        return self.stop_requested

    def save(self) -> Optional[Path]:
        """Write a checkpoint (under torchrun every rank calls this: their states are gathered and rank 0
        writes; the others return None)."""
        state = trainer_state(self.trainer)
        path = save_checkpoint(self.trainer, state=state) if self.trainer.world.is_main else None
        self.last_saved_step = self.trainer.step
        return path

    def save_final(self) -> Optional[Path]:
        """At the end of training (after the final eval), unless this step is already saved."""
        if self.last_saved_step != self.trainer.step:
            return self.save()
        return None

    def _rewind(self) -> None:
        """Back to the state at begin_step (the adapter and optimizer have not changed since)."""
        t, s = self.trainer, self._start_state
        t.step, t.rewards.errors = s["step"], s["errors"]
        t.prompts.load_state_dict(s["prompts"])
        set_rng_state(s["rng"])
        t.model.zero_grad(set_to_none=True)

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


def resume_note(path: Path) -> str:
    try:  # state.json is for people: a damaged one is not worth stopping for
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        state = {}
    if not isinstance(state, dict):
        state = {}
    return f"resuming from {path} (step {state.get('step', '?')}, epoch {state.get('epoch', '?')})"
