"""One run, one directory: an exclusive lock while a run writes it, and no silent reuse of an old run.

    RUN_DIR/.lock   flock(LOCK_EX) held by the training process for its whole life; the OS drops it
                    when that process ends, however it ends (kill -9 included). Holds the owner's pid.

`lock_run_dir` is re-entrant within a process (the CLI takes the lock before loading the model, the
trainer takes it again before writing). `prepare_new_run` refuses a directory that already holds a run
unless asked to overwrite, and then moves the old run aside to RUN_DIR.old-DATE: nothing is deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from gcpo_lite.config import ConfigError

LOCK_NAME = ".lock"
RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoints", "adapter", "completions.jsonl", "plan.json")
_held: dict[Path, int] = {}  # resolved run dir -> fd of its lock file, for this process


class RunDirError(ConfigError):
    """The run directory is in use by another run, or already holds one."""


def lock_run_dir(run_dir: str | Path) -> Path:
    """Take RUN_DIR/.lock (creating the directory); a RunDirError at once when another process holds it."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(
            f"cannot create run directory {run_dir} ({e.strerror}); choose another --output-dir"
        ) from None
    key = run_dir.resolve()
    if key in _held:
        if _same_file(_held[key], key / LOCK_NAME):
            return run_dir
        os.close(_held.pop(key))  # the directory was moved or replaced since: lock the one there now
    for _ in range(10):
        fd = _lock_file(run_dir, key / LOCK_NAME)
        if _same_file(fd, key / LOCK_NAME):
            break
        # the file was unlinked (a refused run cleaning up) or replaced between our open and our lock:
        # a lock on it guards nothing; lock the file there now
        os.close(fd)
    else:
        raise RunDirError(
            f"cannot lock {key / LOCK_NAME}: it keeps being removed or replaced; is another program "
            "cleaning the run directory? Choose another --output-dir"
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd
    return run_dir


def _lock_file(run_dir: Path, path: Path) -> int:
    """Open and flock(LOCK_EX | LOCK_NB) path; its fd, or a RunDirError naming the holder's pid."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunDirError(
            f"cannot open the lock file {path} ({e.strerror}); the run directory must be "
            "writable: fix its permissions or choose another --output-dir"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirError(
            f"{run_dir} is in use by another gcpo-lite run (pid {owner}); two runs cannot share a "
            "run directory: wait for it to finish, or choose another --output-dir"
        ) from None
    except OSError as e:  # e.g. a filesystem without flock support
        os.close(fd)
        raise RunDirError(
            f"cannot lock {path} ({e.strerror}); put the run directory on a local "
            "filesystem that supports file locks"
        ) from None
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def unlock_run_dir(run_dir: str | Path) -> None:
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the last descriptor releases the flock


def abandon_if_empty(run_dir: str | Path) -> bool:
    """A new run that failed before writing anything: release the lock and remove the directory when it
    holds nothing but its lock file (it was created empty, or found empty, by this run). True if removed."""
    run_dir = Path(run_dir)
    unlock_run_dir(run_dir)
    if not run_dir.is_dir() or run_contents(run_dir):
        return False
    try:
        (run_dir / LOCK_NAME).unlink(missing_ok=True)
        run_dir.rmdir()
    except OSError:  # someone else's file appeared, or no permission: leave it
        return False
    return True


def run_contents(run_dir: Path) -> list[str]:
    """Names in run_dir other than its lock file."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME)


def prepare_new_run(run_dir: str | Path, *, overwrite: bool = False, echo=print, inputs=None) -> Path:
    """Lock run_dir for a new (not resumed) run. A directory holding anything is refused unless overwrite,
    which moves it to a dated sibling first, and never with one of `inputs` ({what: path}, e.g. the dataset
    or the config file; values that are no local path are skipped) inside it. Returns run_dir, locked."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--output-dir {run_dir} is a file; choose a directory path")
    had_lock_file = (run_dir / LOCK_NAME).exists()
    lock_run_dir(run_dir)  # no one else is writing it from here on
    found = run_contents(run_dir)
    if not found:
        return run_dir
    if not overwrite:
        _refuse_cleanly(run_dir, had_lock_file)
        raise _in_use_error(run_dir, found)
    real = run_dir.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        _refuse_cleanly(run_dir, had_lock_file)
        raise RunDirError(
            f"--overwrite cannot move {run_dir} aside: it is (or contains) the current directory; "
            "run from outside it, or choose another --output-dir"
        )
    inside = _inputs_inside(real, inputs or {})
    if inside:
        _refuse_cleanly(run_dir, had_lock_file)
        what, path = inside
        raise RunDirError(
            f"--overwrite would move {run_dir} aside, and your {what} {path} with it; move that out of "
            f"{run_dir} first, or choose another --output-dir"
        )
    aside = _move_aside(run_dir, real)
    echo(f"gcpo-lite: --overwrite: moved the previous contents of {run_dir} to {aside}")
    return run_dir


def _inputs_inside(real: Path, inputs: dict) -> Optional[tuple[str, str]]:
    """(what, path) of the first input that is a local path inside the directory `real`, or None."""
    for what, path in inputs.items():
        if not isinstance(path, (str, Path)) or not str(path) or not Path(path).exists():
            continue
        at = Path(path).resolve()
        if at == real or real in at.parents:
            return what, str(path)
    return None


def _in_use_error(run_dir: Path, found: list[str]) -> RunDirError:
    """Why a new run refuses run_dir, which holds `found`: a run to resume, or other files."""
    is_run = any(name in RUN_FILES for name in found)
    shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    what = "holds a gcpo-lite run" if is_run else f"is not empty ({shown})"
    hint = f"continue it with `gcpo-lite train --resume {run_dir}`, " if is_run else ""
    return RunDirError(
        f"{run_dir} {what}; {hint}choose another --output-dir, or pass --overwrite to move it "
        f"aside to {run_dir.name}.old-DATE (nothing is deleted)"
    )


def _move_aside(run_dir: Path, real: Path) -> Path:
    """Rename the locked directory `real` (run_dir resolved) to REAL.old-DATE[-n] and lock a new, empty
    directory at `real`; returns where the old one went."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = real.with_name(f"{real.name}.old-{stamp}"), 1
    while aside.exists():
        aside, n = real.with_name(f"{real.name}.old-{stamp}-{n}"), n + 1
    old_fd = _held.pop(real)
    try:
        real.rename(aside)  # our lock moves with it; keep holding it until the new directory is locked
    except OSError as e:
        os.close(old_fd)
        raise RunDirError(
            f"--overwrite could not move {run_dir} aside to {aside} ({e.strerror}); move or rename "
            "it yourself, or choose another --output-dir"
        ) from None
    try:
        lock_run_dir(real)  # the real path: a symlinked --output-dir points at the new directory again
    finally:
        os.close(old_fd)
    return aside


def _refuse_cleanly(run_dir: Path, had_lock_file: bool) -> None:
    """Release the lock of a run that will not start; remove the lock file if this call created it (a
    refused directory is left as it was found). Safe while others race for it: lock_run_dir re-checks
    that the file it locked is still the one at the path."""
    if not had_lock_file:
        with contextlib.suppress(OSError):
            (run_dir / LOCK_NAME).unlink()
    unlock_run_dir(run_dir)


def remove_stale_temporaries(run_dir: str | Path) -> list[str]:
    """Delete checkpoint temp folders a killed run left behind (the caller holds the run's lock, so no
    save is in progress). Returns their names."""
    root = Path(run_dir) / "checkpoints"
    removed = []
    if root.is_dir():
        for stale in list(root.glob(".tmp-step-*")) + list(root.glob(".old-step-*")):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
                removed.append(stale.name)
    return removed
