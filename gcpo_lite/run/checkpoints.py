"""Checkpoints with exact resume: save every train.save_steps steps (else every train.save_minutes), at the end,
and on Ctrl-C / SIGTERM.

    RUN_DIR/checkpoints/
      step-000010/
        adapter/            adapter_model.safetensors + adapter_config.json (PEFT format)
        trainer_state.pt    optimizer, LR schedule, RNG states, data position, step (loaded weights_only)
        plan.json           the memory plan the run used (restored on resume: same batch splits, same RNG use)
        metrics.jsonl       metrics.jsonl rows up to this step
        state.json          step, epoch, cursor, time: for people and `gcpo-lite export`
      latest                "step-000010", replaced atomically once that directory is complete

A checkpoint is written into a temporary directory and renamed into place, then `latest` is replaced
(temp file + os.replace), so a kill at any moment leaves `latest` naming a complete checkpoint. Only the
last train.save_total_limit are kept. A full disk during a save is a DiskFullError (one line: the file, the
space left, and `--resume`); the temporary directory is removed and `latest` still names the previous one.

Exactness: every source of randomness the loop uses (python's, torch's CPU and CUDA generators, the
per-epoch data shuffles) is captured at a step boundary, so a resumed run consumes the same random
stream as an uninterrupted one and logs the same metrics.

This module stores and restores what the trainer hands it: `trainer.state_dict()` (trainer_state.pt, whose
plan also goes to plan.json) and the adapter weights; restoring is `trainer.load_state_dict(state)`.
The checks that decide whether a checkpoint is intact are checkpoint_checks.py; when to save is stop.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from gcpo_lite.config import ConfigError
from gcpo_lite.run.checkpoint_checks import (
    FORMAT,
    UnsafeCheckpointError,
    checkpoint_problem,
    describe,
    load_state_file,
    state_problem,
)
from gcpo_lite.run.disk import DiskFullError, disk_full_error, is_disk_full, naming
from gcpo_lite.run.distributed import rank_view

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d+)$")


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


def find_checkpoint(run_dir: str | Path, step: Optional[int] = None, echo=None) -> Path:
    """The checkpoint at `step`, or (step None) the newest intact one; a ConfigError saying what exists.

    Without a step, damaged checkpoints are skipped, newest first, each with one line saying why (to echo,
    else the log); a ConfigError lists every problem when none is intact."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    steps = _step_dirs(run_dir)
    if step is not None:
        return _checkpoint_at(run_dir, steps, step)
    if not steps:
        raise ConfigError(
            f"{run_dir} has no checkpoint (checkpoints/step-N/); a run writes them every train.save_steps "
            "steps (else every train.save_minutes), at the end, and on Ctrl-C/SIGTERM"
        )
    return _newest_intact(run_dir, steps, echo or log.warning)


def _step_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, directory) of every checkpoints/step-N directory, complete or not, newest first."""
    root = checkpoints_dir(run_dir)
    found = [
        (int(m.group(1)), p)
        for p in (root.iterdir() if root.is_dir() else [])
        if (m := _STEP_DIR.match(p.name))
    ]
    return sorted(((s, p) for s, p in found if p.is_dir()), reverse=True)


def _checkpoint_at(run_dir: Path, steps: list[tuple[int, Path]], step: int) -> Path:
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


def _newest_intact(run_dir: Path, steps: list[tuple[int, Path]], say) -> Path:
    root = checkpoints_dir(run_dir)
    if (root / "latest").exists() and _pointer_target(run_dir) is None:
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


# ---------------------------------------------------------------- writing


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with naming(path), os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:  # a failed write (a full disk) leaves path as it was and no temporary behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


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


def save_checkpoint(trainer, state: dict, run_dir: Optional[Path] = None) -> Path:
    """Write checkpoints/step-N atomically from `state` (trainer.state_dict(), possibly captured earlier, e.g.
    at the start of an abandoned step: the adapter is unchanged since), point `latest` at it, prune to
    train.save_total_limit."""
    run_dir = Path(run_dir or trainer.out_dir)
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state['step']:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        with naming(tmp / "adapter" / "adapter_model.safetensors"):
            trainer.model.save_pretrained(str(tmp / "adapter"), safe_serialization=True)
        _write_state_files(tmp, {"format": FORMAT, **state}, run_dir, trainer)
        final = _publish(tmp, root, name)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)  # before measuring the space left: its bytes are free again
        if isinstance(e, Exception) and is_disk_full(e):
            where = Path(e.filename) if getattr(e, "filename", None) else root / name
            where = root / name / where.relative_to(tmp) if where.is_relative_to(tmp) else where
            raise full_disk(run_dir, where) from None
        raise
    _prune(run_dir, trainer.cfg.train.save_total_limit, keep=final)
    log.debug("checkpoint %s written", final)
    return final


def _write_state_files(tmp: Path, state: dict, run_dir: Path, trainer) -> None:
    """trainer_state.pt, plan.json, the metrics rows so far and state.json (for people), fsynced."""
    step = state["step"]
    with naming(tmp / "trainer_state.pt"):
        torch.save(state, tmp / "trainer_state.pt")
    with naming(tmp / "plan.json"):
        (tmp / "plan.json").write_text(json.dumps(state["plan"], indent=1))
    rows = _rows_up_to(run_dir / "metrics.jsonl", step)
    with naming(tmp / "metrics.jsonl"):
        (tmp / "metrics.jsonl").write_text("".join(r + "\n" for r in rows))
    about = {
        "step": step,
        "epoch": state["data"]["epoch"],
        "cursor": state["data"]["cursor"],
        "max_steps": trainer.cfg.train.max_steps,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": trainer.resolved.display,
    }
    with naming(tmp / "state.json"):
        (tmp / "state.json").write_text(json.dumps(about, indent=1))
    for f in tmp.rglob("*"):
        if f.is_file():
            with naming(f), open(f, "rb+") as fh:
                os.fsync(fh.fileno())


def full_disk(run_dir: str | Path, file: str | Path) -> DiskFullError:
    """The one line for a full disk while a run writes `file`: the space left, and how to go on (--resume
    from the newest checkpoint, or, with none yet, start again with --overwrite)."""
    last = latest_checkpoint(run_dir)
    then = (
        f"free some space, then continue from {last.name} with `gcpo-lite train --resume {run_dir}`"
        if last is not None
        else "free some space, then run the same command again with --overwrite added (no checkpoint to "
        "--resume from yet)"
    )
    return disk_full_error(file, then)


def _publish(tmp: Path, root: Path, name: str) -> Path:
    """Rename the finished temporary directory to checkpoints/NAME, then point `latest` at it."""
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
    """Restore a freshly constructed Trainer (same config) to the checkpoint with trainer.load_state_dict;
    returns its step.

    With restore_logs, the run directory's metrics.jsonl becomes the checkpoint's copy and
    completions.jsonl loses rows logged after the checkpoint, so the resumed run appends cleanly."""
    path = Path(path)
    state = rank_view(_checked_state(path, restore_logs), trainer.world, f"checkpoint {path}")
    state = {**state, "plan": _saved_plan(path, state), "adapter": _adapter_weights(path, trainer.device)}
    try:
        trainer.load_state_dict(state)  # data first: a checkpoint of other data is refused before any change
    except ConfigError:
        raise
    except Exception as e:  # KeyError, ValueError, RuntimeError (optimizer shapes), TypeError (altered file)
        raise ConfigError(
            f"{path / 'trainer_state.pt'} does not fit this run ({describe(e)}); "
            "resume with the run's own config, or pick another checkpoint"
        ) from None
    if restore_logs:
        _restore_logs(path, Path(trainer.out_dir), int(state["step"]))
    return trainer.step


def check_process_count(path: str | Path, world) -> None:
    """Refuse a checkpoint of another number of processes before anything loads (rank_view's message)."""
    rank_view(load_state_file(Path(path) / "trainer_state.pt"), world, f"checkpoint {path}")


def _checked_state(path: Path, restore_logs: bool) -> dict:
    state = load_state_file(path / "trainer_state.pt")
    needed = ["adapter/adapter_model.safetensors"] + (["metrics.jsonl"] if restore_logs else [])
    missing = [f for f in needed if not (path / f).is_file()]
    problem = f"missing {', '.join(missing)}" if missing else state_problem(state)
    if problem:
        raise ConfigError(f"checkpoint {path} cannot be used: {problem}")
    return state


def _saved_plan(path: Path, state: dict) -> Optional[dict]:
    """The plan the run used (same generation / micro-batch splits: they decide how the RNG is consumed):
    under torchrun each rank's own, from its state; else plan.json, the file a person can read and edit (the
    state's copy in a checkpoint without one)."""
    if int(state.get("world_size", 1)) > 1:
        return state["plan"]
    plan_file = path / "plan.json"
    if not plan_file.is_file():
        return state.get("plan")
    try:
        saved = json.loads(plan_file.read_text())
    except ValueError as e:  # UnicodeDecodeError included
        raise ConfigError(f"checkpoint {path} cannot be used: plan.json is damaged ({describe(e)})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"checkpoint {path} cannot be used: plan.json is not a JSON object")
    return saved


def _adapter_weights(path: Path, device) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter" / "adapter_model.safetensors"), device=str(device))


def _restore_logs(path: Path, run_dir: Path, step: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(run_dir / "metrics.jsonl", (path / "metrics.jsonl").read_text())
    comp = run_dir / "completions.jsonl"
    if comp.is_file():
        _write_text_atomic(comp, "".join(r + "\n" for r in _rows_up_to(comp, step)))


def resume_note(path: Path) -> str:
    try:  # state.json is for people: a damaged one is not worth stopping for
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        state = {}
    if not isinstance(state, dict):
        state = {}
    return f"resuming from {path} (step {state.get('step', '?')}, epoch {state.get('epoch', '?')})"
