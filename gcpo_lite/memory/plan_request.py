"""`gcpo-lite plan`'s answer: the plan for a config and the flags that are not config keys, with what it
rests on (device, dtype, budget, architecture, run shape), as the dict the command prints.

Offline and without loading the model: registry architectures are built in, other models are read from a
local config.json. torch is imported only to ask this machine's GPU, when the plan is for it (no budget
given, or no device given).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from gcpo_lite.config import Config
from gcpo_lite.memory import model as mm
from gcpo_lite.memory.architectures import resolve
from gcpo_lite.memory.machine import detect_budget, gpu_supports_bf16
from gcpo_lite.memory.planner import Plan, plan_for_config
from gcpo_lite.memory.run_shape import shape_from_config
from gcpo_lite.models.precision import compute_dtype_name
from gcpo_lite.models.registry import REGISTRY


@dataclass(frozen=True)
class PlanRequest:
    """A config (command-line overrides applied) and the plan's choices that are not config keys."""

    cfg: Config
    device: Optional[str] = (
        None  # cuda | cpu; default: train.device, else cuda with a budget, else this machine's
    )
    memory_budget: Optional[str] = None  # e.g. 8GiB; default: memory.memory_budget, else this machine's free
    optimizer: Optional[str] = None  # adamw | adamw_8bit | paged_adamw_8bit; default: train.optimizer
    kernels: Optional[str] = None  # native | reference; default: train.kernels, reference for auto

    @property
    def budget_text(self) -> Optional[str]:
        return self.memory_budget if self.memory_budget is not None else self.cfg.memory.memory_budget


def plan_device(request: PlanRequest) -> str:
    """cuda or cpu: the one asked for, else the config's, else cuda when a budget is given (planning for a
    GPU, possibly another machine's), else this machine's."""
    if request.device:
        return request.device
    if request.cfg.train.device != "auto":
        return "cuda" if request.cfg.train.device.startswith("cuda") else "cpu"
    if request.budget_text is not None:
        return "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def plan_compute_dtype(cfg: Config, device: str, this_machine: bool) -> tuple[str, bool]:
    """(dtype, whether bf16 support was assumed): models/precision.py's rule, asking this machine's GPU when
    the plan is for it; for a GPU the plan only has a budget for, bf16 is assumed."""
    asks_gpu = device == "cuda" and cfg.model.compute_dtype == "auto"
    bf16 = gpu_supports_bf16() if asks_gpu and this_machine else None
    return compute_dtype_name(cfg.model.compute_dtype, device, bf16), asks_gpu and bf16 is None


def plan_report(request: PlanRequest) -> dict:
    """The plan as a dict (what `gcpo-lite plan --json` prints); raises InfeasiblePlanError / ConfigError."""
    cfg = request.cfg
    device = plan_device(request)
    budget, source = detect_budget(device, request.budget_text)
    dtype, assumed = plan_compute_dtype(cfg, device, this_machine=request.budget_text is None)
    arch = resolve(cfg.model.name)
    backend = request.kernels or (cfg.train.kernels if cfg.train.kernels != "auto" else "reference")
    shape = shape_from_config(cfg, device, dtype, optimizer=request.optimizer, backend=backend)
    plan = plan_for_config(cfg, arch, shape, budget, source)
    shape = mm.with_changes(shape, dequantized_layers=plan.dequantized_layers)
    est = mm.estimate(arch, shape, plan.generation_batch_size, plan.micro_batch_size, plan.logits_chunk_size)
    entry = REGISTRY.get((cfg.model.name or "").lower())
    return {
        "model": cfg.model.name or "embedded tiny model",
        "hub_id": entry.hub_id if entry else None,
        "device": device,
        "compute_dtype": dtype,
        "compute_dtype_assumed": assumed,
        **_plan_fields(cfg, plan, est),
        "architecture": arch.to_dict(),
        "num_params": arch.num_params(),
        "shape": _shape_fields(shape),
    }


def _plan_fields(cfg: Config, plan: Plan, est: mm.Estimate) -> dict:
    return {
        "budget_bytes": plan.budget_bytes,
        "budget_source": plan.budget_source,
        "num_generations": plan.num_generations,
        "num_generations_auto": cfg.memory.auto_num_generations,
        "batch_size": cfg.train.batch_size,
        "generation_batch_size": plan.generation_batch_size,
        "micro_batch_size": plan.micro_batch_size,
        "gradient_accumulation_steps": plan.gradient_accumulation_steps,
        "logits_chunk_size": plan.logits_chunk_size,
        "dequantized_layers": plan.dequantized_layers,
        "predicted_peak_bytes": plan.predicted_peak_bytes,
        "peak_phase": plan.peak_phase,
        "phase_totals": est.phase_totals,
        "components": plan.components,
        "warnings": plan.warnings,
    }


def _shape_fields(shape: mm.RunShape) -> dict:
    return {
        "prompt_tokens": shape.prompt_tokens,
        "completion_tokens": shape.completion_tokens,
        "lora_r": shape.lora_r,
        "lora_targets": list(shape.lora_targets),
        "optimizer": shape.optimizer,
        "gradient_checkpointing": shape.gradient_checkpointing,
        "quantize": shape.quantize,
        "logprob_backend": shape.logprob_backend,
        "cpu_allocator": shape.cpu_allocator if shape.device == "cpu" else None,
    }
