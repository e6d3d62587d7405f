"""The RunShape a config describes: besides its sizes, the device, compute dtype and log-prob kernels a
run of it on this machine will use (what the memory model needs besides the architecture)."""

from __future__ import annotations

from typing import Optional

from gcpo_lite.config import Config
from gcpo_lite.memory import model as mm
from gcpo_lite.memory.machine import gpu_supports_bf16
from gcpo_lite.models.precision import compute_dtype_name


def resolved_device(cfg: Config) -> str:
    """train.device, with auto resolved on this machine (cuda when torch sees a GPU)."""
    dev = cfg.train.device
    if dev == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return dev


def resolved_compute_dtype(cfg: Config, device: str) -> str:
    """model.compute_dtype as a run on this machine's `device` loads the model (models/precision.py)."""
    asks_gpu = device.startswith("cuda") and cfg.model.compute_dtype == "auto"
    return compute_dtype_name(cfg.model.compute_dtype, device, gpu_supports_bf16() if asks_gpu else None)


def logprob_backend(cfg: Config, device: str) -> str:
    """The kernels backend the training log-probs will run on: train.kernels when explicit, else the
    live one when gcpo_lite.kernels already tried the compiled ops (the trainer has), else `reference`
    (conservative: its chunks take 3-6x the memory of the native ones)."""
    if cfg.train.kernels in ("native", "reference"):
        return cfg.train.kernels
    try:
        from gcpo_lite import kernels

        live = kernels.active_backend(compile_if_needed=False)
        if live == "native" and device.startswith("cuda") and not kernels._ext.has_cuda():
            return "reference"
        return live
    except Exception:  # no torch / extension trouble: plan for the PyTorch path
        return "reference"


def shape_from_config(
    cfg: Config,
    device: str,
    compute_dtype: Optional[str] = None,
    optimizer: Optional[str] = None,
    backend: Optional[str] = None,
) -> mm.RunShape:
    """The RunShape of a run of `cfg` on `device`; compute_dtype, optimizer and backend override the config's."""
    return mm.RunShape(
        prompt_tokens=cfg.data.max_prompt_length,
        completion_tokens=cfg.gcpo.max_completion_length,
        lora_r=cfg.lora.r,
        lora_targets=tuple(cfg.lora.target_modules),
        lora_dropout=cfg.lora.dropout,
        quantize=cfg.model.quantize,
        double_quant=cfg.model.bnb_4bit_use_double_quant,
        compute_dtype=compute_dtype or resolved_compute_dtype(cfg, device),
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        optimizer=optimizer or cfg.train.optimizer,  # the one the trainer builds
        top_p=cfg.gcpo.top_p,
        device="cuda" if device.startswith("cuda") else "cpu",
        logprob_backend=backend or logprob_backend(cfg, device),
        cpu_allocator=cfg.memory.cpu_allocator,
        # counted only for layers the plan dequantizes, and only in fp32: a bf16/fp16 base samples unmerged
        merged_lora_sampling=cfg.rollout.merge_lora
        and (compute_dtype or resolved_compute_dtype(cfg, device)) in ("float32", "fp32"),
        share_prompts=cfg.train.share_prompts,
    )
