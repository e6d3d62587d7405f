"""Staging folders that killed exports left beside OUT: removed when their process is gone, else reported.

A kill -9 during an export (a merge runs for minutes and writes gigabytes) leaves `.OUT.gcpo-export-PID-X/`
(see staging.py). The next export to the same OUT looks at each such folder, each case in one line:
  - its process alive: another export to OUT is running; left alone, not mentioned;
  - it holds `old/` (killed while swapping: the previous export is in there): kept, and where it is said;
  - its process gone and it holds only the unfinished `new/`: removed, with its size;
  - no pid in its name (an export from before pids were recorded) or anything else inside: kept, with its
    size and the command that removes it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path
from typing import Optional

from gcpo_lite.config.units import format_bytes
from gcpo_lite.export.staging import STAGE_INFIX

_SUFFIX = re.compile(r"(?:(\d+)-)?[a-z0-9_]{8}")  # tempfile.mkdtemp's 8 characters, after the pid if any


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError, OSError):
        return False
    return True


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _sweep_one(stage: Path, out_dir: Path, pid: Optional[int], say) -> None:
    if pid is not None and pid > 0 and _alive(pid):
        return
    contents = {p.name for p in stage.iterdir()}
    if "old" in contents:
        say(
            f"{stage / 'old'} holds the previous export of {out_dir}, left by an export killed while "
            "replacing it; move it back or remove it yourself"
        )
        return
    size = format_bytes(_size(stage))
    if pid is None or pid <= 0 or not contents <= {"new"}:
        say(
            f"{stage} ({size}) looks like the staging folder of an export that was killed; if no export to "
            f"{out_dir} is running, remove it: rm -rf {shlex.quote(str(stage))}"
        )
        return
    shutil.rmtree(stage, ignore_errors=True)
    say(f"removed {stage} ({size}), the unfinished export of a process that is gone (pid {pid})")


def sweep_stale(out_dir: Path, say=print) -> None:
    """Remove or report the staging folders that killed exports to out_dir (a real path) left beside it."""
    prefix = f".{out_dir.name}{STAGE_INFIX}"
    if not out_dir.parent.is_dir():
        return
    for path in sorted(out_dir.parent.iterdir()):
        if not path.name.startswith(prefix) or path.is_symlink() or not path.is_dir():
            continue
        m = _SUFFIX.fullmatch(path.name[len(prefix) :])
        if m:
            _sweep_one(path, out_dir, int(m.group(1)) if m.group(1) else None, say)
