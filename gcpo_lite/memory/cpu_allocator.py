"""The caching CPU allocator (csrc/cpu/caching_allocator.cpp): large CPU tensors from their own mappings,
kept for reuse by the next request of the same size class, with a cap on the cached bytes.

glibc's heap fragments under a training step's pattern of multi-MB transients: on a Qwen2.5-0.5B-shaped
4-bit + LoRA run it grew the resident set by ~0.9 GiB in an update whose live tensors peaked near 0.15 GiB,
and kept it between steps (docs/BENCHMARKS.md, "Real-size shapes"). With this allocator the resident set is
the live tensors + at most `cap` cached bytes, which is what the memory plan's CPU allocator slack counts,
and reused blocks cost no page faults. `train.cpu_allocator=system` keeps glibc's.

The allocator is process-wide and cannot be uninstalled (tensors it served may outlive any caller); a second
install only changes the cap. It needs the native extension: without it, `install` says why and the run keeps
the system allocator.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_CAP_BYTES = 64 * 2**20  # the trainer's floor: a smaller cap would miss reuse that costs no planned memory


@dataclass(frozen=True)
class AllocatorStats:
    mapped_bytes: int  # live + cached large blocks
    cached_bytes: int  # freed blocks kept for reuse
    peak_mapped_bytes: int  # since install or reset_peak
    hits: int  # requests served from the cache
    maps: int  # requests that needed a new mapping


def _ops():
    """torch.ops.gcpo_lite when the native extension loads, else None."""
    from gcpo_lite.kernels import _ext

    if not _ext.load():
        return None
    import torch

    ops = torch.ops.gcpo_lite
    return ops if hasattr(ops, "caching_allocator_install") else None  # a prebuilt extension from before it


def install(cap_bytes: int) -> tuple[bool, str]:
    """Make the caching allocator torch's CPU allocator with at most cap_bytes cached.
    (True, "") once installed (again: the cap is updated), else (False, why)."""
    ops = _ops()
    if ops is None:
        from gcpo_lite.kernels import _ext

        why = _ext.why_unavailable() or f"the loaded extension predates it; {_ext.REBUILD_HINT}"
        return False, f"the native extension is unavailable ({why})"
    ops.caching_allocator_install(int(cap_bytes))
    return True, ""


def installed() -> bool:
    ops = _ops()
    return ops is not None and len(ops.caching_allocator_stats()) > 0


def empty_cache() -> None:
    """Unmap every cached block (no-op when not installed). The trainer calls it between phases."""
    ops = _ops()
    if ops is not None:
        ops.caching_allocator_empty_cache()


def stats() -> AllocatorStats | None:
    ops = _ops()
    values = ops.caching_allocator_stats() if ops is not None else []
    return AllocatorStats(*values) if values else None


def reset_peak() -> None:
    ops = _ops()
    if ops is not None:
        ops.caching_allocator_reset_peak()
