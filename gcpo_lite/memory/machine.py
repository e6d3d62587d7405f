"""What this machine offers a plan: the memory budget it has and whether its GPU computes in bf16.

torch is imported only when a GPU is asked about: a CPU plan, or one with a given budget, stays fast.
"""

from __future__ import annotations

import os
from typing import Optional

from gcpo_lite.config import ConfigError
from gcpo_lite.config.units import format_bytes, parse_bytes
from gcpo_lite.memory.model import CUDA_RUNTIME_BYTES


def _process_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def available_ram_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else total physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def detect_budget(device: str, explicit: Optional[str] = None) -> tuple[int, str]:
    """(budget bytes, where it came from). The budget counts the whole run, so what this process
    already holds (a loaded model, the CUDA context) is added back to the free memory."""
    if explicit is not None:
        return parse_bytes(explicit), "memory budget given"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                "planning for CUDA but this torch sees no GPU; pass a memory budget "
                "(memory.memory_budget=8GiB or --memory-budget 8GiB) or plan for the CPU"
            )
        dev = torch.device(device)
        free, total = torch.cuda.mem_get_info(dev)
        held = torch.cuda.memory_reserved(dev)
        budget = min(total, free + held + CUDA_RUNTIME_BYTES)
        return budget, f"free GPU memory ({format_bytes(free)} of {format_bytes(total)}) + this process's"
    avail = available_ram_bytes()
    return avail + _process_rss_bytes(), f"available system RAM ({format_bytes(avail)}) + this process's"


def gpu_supports_bf16() -> Optional[bool]:
    """Whether this machine's GPU computes in bf16 (the question models/loading.py asks), None without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    return bool(torch.cuda.is_bf16_supported())
