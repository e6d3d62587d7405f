"""Writing a benchmark's results into docs/BENCHMARKS.md: each script owns one '## ' section."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, section: str, body: str) -> None:
    """Replace the '## ' section titled `section` in `path` with `body` (which starts with that title), or append
    it; the rest of the file stays as it is."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(section)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(section))
        text = text[:start] + body + (text[nxt:] if nxt >= 0 else "")
    path.write_text(text)


def report(text: str, write_md: Path | None, section: str) -> int:
    """Print a benchmark's section; with --write-md also put it in that file. Returns main's exit code (0)."""
    print(text)
    if write_md:
        write_section(write_md, section, text)
    return 0
