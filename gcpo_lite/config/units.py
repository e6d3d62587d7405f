"""Memory sizes as people write them: '8GiB', '7.5GB', '6000MiB' <-> bytes."""

from __future__ import annotations

import math
import re

from gcpo_lite.errors import ConfigError

LOGITS_CHUNK_BUDGET_BYTES = 256 * 2**20  # one log-prob chunk's logits (input dtype): the default chunk size
MAX_BUDGET_BYTES = 2**50  # 1 PiB: a larger budget is a typo
_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 10**3,
    "kib": 2**10,
    "m": 2**20,
    "mb": 10**6,
    "mib": 2**20,
    "g": 2**30,
    "gb": 10**9,
    "gib": 2**30,
    "t": 2**40,
    "tb": 10**12,
    "tib": 2**40,
    "p": 2**50,
    "pb": 10**15,
    "pib": 2**50,
}


def parse_bytes(text: str | int | float) -> int:
    """'8GiB' -> 8589934592; GiB/MiB/KiB and bare G/M/K are binary, GB/MB/KB decimal, no unit = bytes."""
    shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:30] + "..." + repr(text)[-6:]
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        n = text
    elif not str(text).strip():
        raise ConfigError(
            "memory size is empty; give one like 8GiB, or leave the option out to use the free memory"
        )
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise ConfigError(
                f"memory size {shown} not understood; write it like 8GiB, 7.5GB, 6000MiB or 512M"
            )
        n = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if isinstance(n, float) and math.isnan(n):
        raise ConfigError(f"memory size {shown} not understood; write it like 8GiB, 7.5GB, 6000MiB or 512M")
    if n <= 0:
        raise ConfigError(f"memory size {shown} must be positive, e.g. 8GiB")
    if n > MAX_BUDGET_BYTES:
        raise ConfigError(
            f"memory size {shown} is above 1 PiB, more than any machine has; did you mean GiB? e.g. 8GiB"
        )
    n = int(n)
    if n <= 0:  # a fraction of a byte
        raise ConfigError(f"memory size {shown} must be positive, e.g. 8GiB")
    return n


def format_bytes(n: int | float) -> str:
    return f"{n / 2**30:.2f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MiB"
