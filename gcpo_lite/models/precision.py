"""The compute dtype of a run: one rule for loading the model (models/loading.py) and for planning its
memory (memory/planner.py, `gcpo-lite plan`), so a plan counts the bytes the model really uses.

No torch import: callers pass what they know about the device, and `gcpo-lite plan` stays fast.
"""

from __future__ import annotations

from typing import Optional

COMPUTE_DTYPES = ("bfloat16", "float16", "float32")  # model.compute_dtype besides auto


def compute_dtype_name(requested: str, device_type: str, bf16_supported: Optional[bool]) -> str:
    """The dtype a run computes in: "bfloat16", "float16" or "float32".

    requested: model.compute_dtype, "auto" or one of COMPUTE_DTYPES (kept as given).
    device_type: "cuda" or "cpu" (a device string such as "cuda:1" is read as its type).
    bf16_supported: whether the GPU computes in bf16 (torch.cuda.is_bf16_supported()); None when nobody
        asked it, e.g. `gcpo-lite plan --memory-budget 8GiB` planning for a GPU this machine may not have.

    auto resolves to
      cuda, bf16_supported True    bfloat16
      cuda, bf16_supported False   float32 (T4, V100). Not float16: it has bf16's two bytes but not its
                                   exponent range, and training in it needs loss scaling, which the trainer
                                   does not do; so loading runs such a GPU in float32, and the plan must
                                   count four-byte tensors
      cuda, bf16_supported None    bfloat16, what every GPU since Ampere (2020) has; plan a T4 or V100
                                   with compute_dtype float32
      cpu                          float32
    """
    if requested != "auto":
        if requested not in COMPUTE_DTYPES:
            raise ValueError(f"compute dtype must be auto or one of {COMPUTE_DTYPES}, got {requested!r}")
        return requested
    if device_type.split(":", 1)[0] != "cuda":
        return "float32"
    return "float32" if bf16_supported is False else "bfloat16"
