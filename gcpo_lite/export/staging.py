"""Write an export into a hidden folder beside OUT and swap it in only once it is complete.

The folder is a fresh sibling of OUT (same filesystem, so the final moves are renames) that nothing else
uses; a previous export at OUT is moved into it just before the new one moves in, and put back if that
move fails. A failed export removes only this folder, so OUT stays as it was.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gcpo_lite.export.target import check_replaceable

log = logging.getLogger(__name__)


def put_in_place(new: Path, out_dir: Path, stage: Path) -> None:
    """Move the finished export `new` to out_dir. A previous export there is first moved into stage (our
    own folder, removed afterwards by the caller) and put back if the new one cannot be moved in."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        check_replaceable(out_dir, overwrite=True)  # checked before the work; again now, just before moving
        old = stage / "old"
        out_dir.rename(old)
        try:
            new.rename(out_dir)
        except BaseException:
            old.rename(out_dir)
            raise
    else:
        if out_dir.is_dir():
            out_dir.rmdir()  # empty: nothing to lose (rmdir refuses if something appeared meanwhile)
        new.rename(out_dir)


def _clean_up_failure(stage: Path, out_dir: Path) -> None:
    if (stage / "old").exists():  # the previous export could not be put back: keep it, say where
        shutil.rmtree(stage / "new", ignore_errors=True)
        log.error("export failed while replacing %s; the previous export is in %s", out_dir, stage / "old")
    else:
        shutil.rmtree(stage, ignore_errors=True)  # only our own folder


@contextlib.contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """Yields the (not yet created) folder to write the export into; when the block ends without an
    error, that folder replaces out_dir, which check_output_dir has already accepted."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.gcpo-export-", dir=out_dir.parent))
    try:
        yield stage / "new"
        put_in_place(stage / "new", out_dir, stage)
    except BaseException:
        _clean_up_failure(stage, out_dir)
        raise
    shutil.rmtree(stage)  # empty, or the previous export (checked for its marker) moved aside
