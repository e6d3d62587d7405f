"""The `.gcpo-lite-export` marker: written last into every export, it lists the files export wrote with their
sizes and sha256 hashes, so that --overwrite can replace a previous export and refuse a folder holding
anything else, or files the user edited since."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Optional

MARKER = ".gcpo-lite-export"  # only a folder holding it may be replaced
MARKER_TOOL = "gcpo-lite export"


def read_marker(folder: Path) -> Optional[dict]:
    """The marker of a previous export in folder, or None when folder holds no (valid) marker."""
    path = folder / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == MARKER_TOOL else None


def _entries(folder: Path) -> set[str]:
    """Every file, link and folder under folder, as relative POSIX paths (links are not followed)."""
    out: set[str] = set()
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out.update((rel / name).as_posix() for name in (*dirs, *files))
    return out


def not_written_by_export(folder: Path, marker: dict) -> list[str]:
    """What lies in a previous export that the export did not write (files the user added)."""
    listed = marker.get("files")
    if not isinstance(listed, list):  # a marker without its file list: the whole folder is the export
        return []
    ours = {MARKER}
    for name in listed:
        ours.add(str(name))
        ours.update(p.as_posix() for p in Path(str(name)).parents if p != Path("."))
    return sorted(_entries(folder) - ours)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def edited_since_export(folder: Path, marker: dict) -> list[str]:
    """The files of a previous export whose size or sha256 differ from what the marker recorded (the user
    edited them). A file removed since is not listed: replacing it loses nothing. A marker written before
    hashes were recorded lists none."""
    hashes = marker.get("hashes")
    if not isinstance(hashes, dict):
        return []
    edited = []
    for name, recorded in sorted(hashes.items()):
        path = folder / str(name)
        if path.is_symlink() or not path.is_file() or not isinstance(recorded, dict):
            continue
        if path.stat().st_size != recorded.get("size") or _sha256(path) != recorded.get("sha256"):
            edited.append(str(name))
    return edited


def _tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gcpo-lite")
    except PackageNotFoundError:
        return "unknown"


def write_marker(folder: Path, run_dir: Path, step: Optional[int], merged: bool) -> None:
    """Written last: lists every file of the export (size and sha256 too), so --overwrite can tell them from
    files added or edited later."""
    files = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir() and p.name != MARKER
    )
    marker = {
        "tool": MARKER_TOOL,
        "version": 1,
        "gcpo_lite_version": _tool_version(),
        "run_dir": str(run_dir.resolve()),
        "checkpoint": step,
        "merged": merged,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": files,
        "hashes": {
            name: {"size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)} for name in files
        },
    }
    (folder / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
