"""Write an export into a hidden folder beside OUT and swap it in only once it is complete.

The folder, `.OUT.gcpo-export-PID-XXXXXXXX` (PID: the exporting process, so a later export can tell a killed
export's leftovers, see leftovers.py), is a fresh sibling of OUT's real path (same filesystem, so the final
moves are renames) that nothing else uses. A previous export at OUT is moved into it just before the new one
moves in, and put back if that move fails; into an empty OUT the new files are moved one by one (OUT itself
stays, e.g. the shell's current directory). A failed export removes only this folder, so OUT stays as it
was. A full disk while writing is one line naming the file being written.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from gcpo_lite.config import ConfigError
from gcpo_lite.export.marker import MARKER
from gcpo_lite.export.target import check_replaceable
from gcpo_lite.run.disk import is_disk_full

log = logging.getLogger(__name__)

STAGE_INFIX = ".gcpo-export-"  # .OUT.gcpo-export-PID-XXXXXXXX


class ExportDiskFullError(ConfigError):
    """The disk filled up while the export was written; nothing at OUT was changed."""


def _move_into_empty(new: Path, out_dir: Path) -> None:
    """Move new's entries into the empty folder out_dir, the marker last; on a failure the ones moved go back."""
    names = sorted((p.name for p in new.iterdir()), key=lambda name: name == MARKER)
    moved = []
    try:
        for name in names:
            if os.path.lexists(out_dir / name):  # appeared since OUT was checked empty: never replaced
                raise FileExistsError(errno.EEXIST, "export will not replace it", str(out_dir / name))
            (new / name).rename(out_dir / name)
            moved.append(name)
    except BaseException:
        for name in moved:
            (out_dir / name).rename(new / name)
        raise
    new.rmdir()


def put_in_place(new: Path, out_dir: Path, stage: Path, discard_edits: bool = False) -> None:
    """Move the finished export `new` to out_dir. A previous export there is first moved into stage (our
    own folder, removed afterwards by the caller) and put back if the new one cannot be moved in."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        # checked before the work; again now, just before moving
        check_replaceable(out_dir, overwrite=True, discard_edits=discard_edits)
        old = stage / "old"
        out_dir.rename(old)
        try:
            new.rename(out_dir)
        except BaseException:
            old.rename(out_dir)
            raise
    elif out_dir.is_dir():
        _move_into_empty(new, out_dir)  # empty: nothing to lose, and the folder itself is kept
    else:
        new.rename(out_dir)


def _clean_up_failure(stage: Path, out_dir: Path) -> None:
    if (stage / "old").exists():  # the previous export could not be put back: keep it, say where
        shutil.rmtree(stage / "new", ignore_errors=True)
        log.error("export failed while replacing %s; the previous export is in %s", out_dir, stage / "old")
    else:
        shutil.rmtree(stage, ignore_errors=True)  # only our own folder


def _file_being_written(e: BaseException, stage: Path) -> Path:
    """The file the full disk stopped: the error's own (the copy's destination first), else the newest file
    in the staging folder, else the folder."""
    for name in (getattr(e, "filename2", None), getattr(e, "filename", None)):
        if name and stage in Path(os.path.abspath(name)).parents:
            return Path(os.path.abspath(name))
    files = [p for p in stage.rglob("*") if p.is_file() and not p.is_symlink()]
    return max(files, key=lambda p: p.stat().st_mtime_ns) if files else stage


def _disk_full(e: BaseException, stage: Path) -> Optional[ExportDiskFullError]:
    if not is_disk_full(e):
        return None
    return ExportDiskFullError(
        f"no space left on device writing {_file_being_written(e, stage)} (the export's staging folder, "
        "now removed; nothing at the output was changed); free some space on that disk, or pass an "
        "--output-dir on another disk"
    )


@contextlib.contextmanager
def staged(out_dir: Path, discard_edits: bool = False) -> Iterator[Path]:
    """Yields the (not yet created) folder to write the export into; when the block ends without an
    error, that folder replaces out_dir (a real path: no link, no "." or ".."), which check_output_dir
    has already accepted."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out_dir.name}{STAGE_INFIX}{os.getpid()}-"
    stage = Path(tempfile.mkdtemp(prefix=prefix, dir=out_dir.parent))
    try:
        try:
            yield stage / "new"
        except Exception as e:
            full = _disk_full(e, stage)
            if full is None:
                raise
            raise full from None
        put_in_place(stage / "new", out_dir, stage, discard_edits)
    except BaseException:
        _clean_up_failure(stage, out_dir)
        raise
    shutil.rmtree(stage)  # empty, or the previous export (checked for its marker) moved aside
