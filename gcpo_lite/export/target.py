"""Refuse an --output-dir that would overwrite or delete anything export did not create, before any work.

OUT must be new or empty; with --overwrite it may also be a previous export (its marker lists every file
it holds, with their hashes: an export whose files the user edited since is refused unless --discard-edits).
OUT inside the run directory, or containing it (symlinks resolved), is refused, as is a file or a symlink in
the way, or a parent folder that cannot be written.
"""

from __future__ import annotations

import os
from pathlib import Path

from gcpo_lite.config import ConfigError
from gcpo_lite.export.marker import MARKER, edited_since_export, not_written_by_export, read_marker


class ExportTargetError(ConfigError):
    """--output-dir would overwrite or delete something export did not create."""


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def check_replaceable(out_dir: Path, *, overwrite: bool, discard_edits: bool = False) -> None:
    """out_dir is an existing non-empty directory: it may be replaced only if it is a previous export, with
    nothing added and (unless discard_edits) nothing edited since."""
    marker = read_marker(out_dir)
    if marker is None:
        raise ExportTargetError(
            f"--output-dir {out_dir} is a non-empty directory that is not a gcpo-lite export (it has no "
            f"{MARKER} marker); choose a new or empty directory: export never deletes files it did not write"
        )
    if not overwrite:
        raise ExportTargetError(
            f"--output-dir {out_dir} holds a previous export; pass --overwrite to replace it, or choose "
            "a new directory"
        )
    extra = not_written_by_export(out_dir, marker)
    if extra:
        raise ExportTargetError(
            f"--output-dir {out_dir} holds a previous export plus files it did not write ({_shown(extra)}); "
            "--overwrite would delete them: move them out first, or choose a new directory"
        )
    edited = [] if discard_edits else edited_since_export(out_dir, marker)
    if edited:
        raise ExportTargetError(
            f"--output-dir {out_dir} holds a previous export whose {_shown(edited)} changed since export "
            "wrote it; --overwrite would lose those edits: move the files out of it first, or pass "
            "--discard-edits to replace them anyway"
        )


def _refuse_overlap(run_dir: Path, out_dir: Path) -> None:
    run_real, out_real = run_dir.resolve(), out_dir.resolve()  # symlinks resolved, on both sides
    if _is_within(out_real, run_real):
        raise ExportTargetError(
            f"--output-dir {out_dir} is inside the run directory {run_dir}; export never writes into a "
            "run: choose a new or empty directory outside it (e.g. out/adapter)"
        )
    if _is_within(run_real, out_real):
        raise ExportTargetError(
            f"--output-dir {out_dir} contains the run directory {run_dir}; choose a new or empty "
            "directory outside it (e.g. out/adapter)"
        )


def _refuse_link_or_file(out_dir: Path) -> None:
    if out_dir.is_symlink():
        raise ExportTargetError(
            f"--output-dir {out_dir} is a symbolic link (to {os.readlink(out_dir)}); export replaces OUT "
            "itself, not what a link points to: pass the real directory, or another path"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportTargetError(
            f"--output-dir {out_dir} exists and is not a directory; remove or rename it yourself, or "
            "choose another path"
        )


def _refuse_unwritable_parent(out_dir: Path) -> None:
    """The nearest existing folder above OUT is where the export is made: it must be a writable folder."""
    parent = next((p for p in Path(os.path.abspath(out_dir)).parents if p.exists()), None)
    if parent is None:  # OUT is the root, which contains every run and was refused already
        return
    if not parent.is_dir():
        raise ExportTargetError(
            f"--output-dir {out_dir}: {parent} is a file, not a directory; choose another path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportTargetError(
            f"--output-dir {out_dir}: cannot write in {parent} (permission denied); choose a "
            "directory you can write to"
        )


def check_output_dir(
    run_dir: Path, out_dir: Path, *, overwrite: bool = False, discard_edits: bool = False
) -> None:
    """Refuse an OUT that would overwrite or delete anything export did not create (before any work)."""
    _refuse_overlap(run_dir, out_dir)
    _refuse_link_or_file(out_dir)
    _refuse_unwritable_parent(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        check_replaceable(out_dir, overwrite=overwrite, discard_edits=discard_edits)
