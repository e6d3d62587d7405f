"""The optimizer on the LoRA weights (`train.optimizer`, which the memory plan budgets and checkpoints record)
and the learning-rate schedule (`train.lr_scheduler`).

- adamw: torch AdamW, two fp32 moments per parameter (8 bytes each).
- adamw_8bit: bitsandbytes AdamW8bit, moments stored blockwise in 8 bits (about 2 bytes per parameter;
  tensors under 4096 elements stay fp32, as bitsandbytes does). Runs on CPU and CUDA.
- paged_adamw_8bit: the same state in CUDA unified memory, which the driver pages to host RAM under
  pressure. CUDA only: on another device bitsandbytes would silently fall back to plain 8-bit state.
"""

from __future__ import annotations

import math

from gcpo_lite.config import ConfigError

OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit")


def check_optimizer(name: str, device_type: str) -> None:
    """A clear error, before any model loads, for an optimizer that cannot run on this device."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if name == "adamw":
        return
    if name == "paged_adamw_8bit" and device_type != "cuda":
        raise ConfigError(
            f"train.optimizer=paged_adamw_8bit pages optimizer state through CUDA unified memory, and this run "
            f"is on {device_type}; use train.optimizer=adamw_8bit (same 8-bit state, not paged) or adamw"
        )
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # ImportError, or a broken native library
        raise ConfigError(
            f"train.optimizer={name} needs bitsandbytes, which failed to import ({type(e).__name__}: {e}); "
            "pip install bitsandbytes, or use train.optimizer=adamw"
        ) from None
    if device_type not in ("cpu", "cuda", "xpu"):
        raise ConfigError(f"train.optimizer={name}: bitsandbytes has no 8-bit optimizer for {device_type}")


def build_optimizer(name: str, params: list, *, lr: float, weight_decay: float, betas: tuple[float, float]):
    """The torch.optim.Optimizer for train.optimizer over `params` (the trainable LoRA weights)."""
    import torch

    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)
    import bitsandbytes as bnb

    cls = bnb.optim.AdamW8bit if name == "adamw_8bit" else bnb.optim.PagedAdamW8bit
    return cls(params, lr=lr, weight_decay=weight_decay, betas=betas)


def lr_factor(step: int, *, warmup_steps: int, max_steps: int, kind: str) -> float:
    """The learning rate's multiplier at `step` (LambdaLR's function): a linear warmup over warmup_steps,
    then constant, linear decay to 0 or a cosine to 0 at max_steps (`kind`: train.lr_scheduler)."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if kind == "constant":
        return 1.0
    frac = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    frac = min(max(frac, 0.0), 1.0)
    return 1.0 - frac if kind == "linear" else 0.5 * (1 + math.cos(math.pi * frac))
