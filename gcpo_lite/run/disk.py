"""A full disk, whichever writer hits it: torch.save's RuntimeError ("unexpected pos"), safetensors'
SafetensorError ("No space left on device"), or a plain OSError ENOSPC (EDQUOT: a quota, the same remedy).

`naming(path)` turns any of them raised inside it into OSError(ENOSPC, ..., path), so the error names the file
(a write's own error seldom does); `disk_full_error` makes the one line the CLI prints: the file, the space
left there, and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Optional

from gcpo_lite.config import ConfigError
from gcpo_lite.config.units import format_bytes

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXT = ("No space left on device", "os error 28", "StorageFull", "Disk quota exceeded")
# torch.save's zip writer reports a short write (the disk filled) as one of these, without an errno
_TORCH_SHORT_WRITE = (
    "unexpected pos",
    "PytorchStreamWriter failed writing",
    "file write failed",
    "iostream error",
)


class DiskFullError(ConfigError):
    """No space left where the run writes; the message names the file and says what to do."""


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC as Python raises it; any error whose text carries the OS's own disk-full words (safetensors'
    SafetensorError, or the plain Exception some of its versions raise); torch.save's short-write RuntimeError."""
    if isinstance(e, OSError):
        return e.errno in _FULL_ERRNOS
    text = str(e)
    if any(t in text for t in _FULL_TEXT):
        return True
    return isinstance(e, RuntimeError) and any(t in text for t in _TORCH_SHORT_WRITE)


@contextlib.contextmanager
def naming(path: str | Path):
    """A full disk inside becomes OSError(ENOSPC, ..., path) (one that already names its file keeps it)."""
    try:
        yield
    except Exception as e:
        if not is_disk_full(e) or getattr(e, "filename", None):
            raise
        raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None


def free_space(path: str | Path) -> Optional[str]:
    """The space left on the filesystem holding `path` (its nearest existing folder), e.g. "0.7 MiB"."""
    p = Path(path)
    for folder in (p, *p.parents):
        with contextlib.suppress(OSError):
            if folder.is_dir():
                return format_bytes(shutil.disk_usage(folder).free)
    return None


def disk_full_error(file: str | Path, then: str) -> DiskFullError:
    """'no space left on device writing FILE (N free there); THEN'."""
    free = free_space(Path(file).parent)
    there = f" ({free} free there)" if free else ""
    return DiskFullError(f"no space left on device writing {file}{there}; {then}")


class LogFile:
    """A text file opened for appending whose full-disk errors name it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = open(self.path, "a")

    def write(self, text: str) -> int:
        with naming(self.path):
            return self._f.write(text)

    def flush(self) -> None:
        with naming(self.path):
            self._f.flush()

    def close(self) -> None:
        with naming(self.path):
            self._f.close()

    def __enter__(self) -> "LogFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def replaced_atomically(path: str | Path):
    """Yield a temporary path beside `path` for the body to write; then it replaces `path`. A failed write (a
    full disk) leaves `path` as it was and no temporary behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with naming(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
