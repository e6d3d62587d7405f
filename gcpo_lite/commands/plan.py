"""Plan a run's memory: what each component needs and the batch sizes that fit a budget.

    gcpo-lite plan --model qwen2.5-1.5b --memory-budget 8GiB
    gcpo-lite plan --model qwen2.5-1.5b --memory-budget 8GiB --num-generations auto --max-completion-length 1024
    gcpo-lite plan --config configs/x.yaml --json

Offline and without loading the model (registry architectures are built in; other models are
read from a local config.json). Without --memory-budget the budget is this machine's free GPU
memory, or its available RAM with --device cpu. Exits 2 with what to change when nothing fits.
"""

from __future__ import annotations

import argparse
import json
import sys

from gcpo_lite.commands.flags import flag_overrides
from gcpo_lite.config import ConfigError, load_config
from gcpo_lite.memory import model as mm
from gcpo_lite.memory.architectures import resolve
from gcpo_lite.memory.planner import (
    InfeasiblePlanError,
    detect_budget,
    format_bytes,
    parse_bytes,
    plan_for_config,
    shape_from_config,
)
from gcpo_lite.models.registry import REGISTRY

COMPONENT_NOTES = {  # component -> (phase, what it is)
    "runtime": ("always", "CUDA context + cuBLAS, or the Python/torch process"),
    "weights_4bit": ("static", "NF4 linear weights + quant state"),
    "weights_unquantized": ("static", "embeddings, untied lm_head, norms, biases"),
    "weights_dequantized": ("static", "dequantized copy of the 4-bit base's layers that fit (speed)"),
    "lora_params": ("static", "LoRA A/B, fp32"),
    "optimizer_state": ("static", "AdamW moments (fp32 or 8-bit)"),
    "kv_cache": ("generation", "layers x 2 x kv_heads x head_dim x tokens x bytes"),
    "generation_working": ("generation", "prefill logits / sampler buffers, dequant tile"),
    "weights_merged": ("generation", "W + LoRA merged for the dequantized layers while sampling"),
    "activations": ("training", "saved tensors (layer inputs with checkpointing)"),
    "logits": ("training", "one log-prob chunk: (chunk, V) scores + hidden grad"),
    "layer_backward": ("training", "one layer recomputed + its grads (not with logits)"),
    "lora_grads": ("training", "fp32 LoRA grads (x2 while accumulating)"),
    "prompt_states": ("training", "each row's copy of its prompt's keys/values (train.share_prompts)"),
    "allocator_overhead": ("always", "fragmentation / caching slack (CPU caching allocator: its cap)"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config to plan for (defaults: gcpo-lite's)")
    p.add_argument(
        "--model",
        help="registry name (qwen2.5-1.5b, ...), hub id in the local cache, or a "
        "directory / config.json (model.name)",
    )
    p.add_argument(
        "--memory-budget",
        metavar="SIZE",
        help="e.g. 8GiB, 7.5GB, 6000MiB (default: free GPU memory, or available RAM with --device cpu)",
    )
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        help="plan for a GPU (bf16 compute) or the CPU (fp32); "
        "default: cuda with --memory-budget, else this machine's",
    )
    p.add_argument(
        "--num-generations",
        metavar="G|auto",
        help="group size, or auto: the largest G in "
        "[--min-num-generations, --max-num-generations] dividing the batch that fits",
    )
    p.add_argument(
        "--min-num-generations", type=int, metavar="G", help="default: scheduler.min_num_generations (2)"
    )
    p.add_argument(
        "--max-num-generations", type=int, metavar="G", help="default: scheduler.max_num_generations (16)"
    )
    p.add_argument("--max-completion-length", type=int, metavar="T", help="gcpo.max_completion_length")
    p.add_argument("--max-prompt-length", type=int, metavar="T", help="data.max_prompt_length")
    p.add_argument("--batch-size", type=int, metavar="N", help="completions per step (train.batch_size)")
    p.add_argument("--lora-r", type=int, metavar="R", help="lora.r")
    p.add_argument(
        "--optimizer",
        choices=mm.OPTIMIZERS,
        default=None,
        help="train.optimizer: adamw (fp32 state) | adamw_8bit | paged_adamw_8bit (default: the config's)",
    )
    p.add_argument(
        "--compute-dtype", choices=tuple(mm.DTYPE_BYTES), help="default: bfloat16 on cuda, float32 on cpu"
    )
    p.add_argument(
        "--kernels",
        choices=("native", "reference"),
        help="log-prob kernels the run will use "
        "(train.kernels); default: reference unless the config says native (its chunks are smaller)",
    )
    p.add_argument("--no-gradient-checkpointing", action="store_true")
    p.add_argument("--no-quantize", action="store_true", help="plan for a bf16/fp32 base instead of 4-bit")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")


def _overrides(args) -> list[str]:
    return list(args.overrides) + flag_overrides(args)  # a flag wins over an override of the same key


def _group_overrides(args) -> list[str]:
    """--num-generations / --min/--max-num-generations as config overrides; `auto` is handled by the config
    (gcpo.num_generations: auto turns on scheduler.auto_num_generations with a valid stand-in G)."""
    out = []
    if args.min_num_generations:
        out.append(f"scheduler.min_num_generations={args.min_num_generations}")
    if args.max_num_generations:
        out.append(f"scheduler.max_num_generations={args.max_num_generations}")
    g = args.num_generations
    if g is not None and g != "auto":
        try:
            int(g)
        except ValueError:
            raise ConfigError(f"--num-generations {g!r}: give a number (e.g. 8) or auto") from None
    return out + ([] if g is None else [f"gcpo.num_generations={g}"])


def _device(args, cfg) -> str:
    if args.device:
        return args.device
    if cfg.train.device != "auto":
        return "cuda" if cfg.train.device.startswith("cuda") else "cpu"
    if args.memory_budget is not None or cfg.scheduler.memory_budget is not None:
        return "cuda"  # a budget given: planning for a GPU, possibly from another machine
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build(args) -> dict:
    """The plan as a dict (what --json prints); raises InfeasiblePlanError / ConfigError."""
    cfg = load_config(args.config, _overrides(args) + _group_overrides(args))
    sch = cfg.scheduler  # budget, auto G and its range, after the command-line overrides
    auto = sch.auto_num_generations
    device = _device(args, cfg)
    dtype = args.compute_dtype or (
        cfg.model.compute_dtype
        if cfg.model.compute_dtype != "auto"
        else "bfloat16"
        if device == "cuda"
        else "float32"
    )
    budget_text = args.memory_budget if args.memory_budget is not None else cfg.scheduler.memory_budget
    budget, source = (
        (parse_bytes(budget_text), "memory budget given")
        if budget_text is not None
        else detect_budget(device)
    )
    arch = resolve(cfg.model.name)
    backend = args.kernels or (cfg.train.kernels if cfg.train.kernels != "auto" else "reference")
    shape = shape_from_config(cfg, device, dtype, optimizer=args.optimizer, backend=backend)
    plan = plan_for_config(cfg, arch, shape, budget, source)
    shape = mm.with_changes(shape, dequantized_layers=plan.dequantized_layers)
    est = mm.estimate(arch, shape, plan.generation_batch_size, plan.micro_batch_size, plan.logits_chunk_size)
    name = cfg.model.name or "embedded tiny model"
    entry = REGISTRY.get((cfg.model.name or "").lower())
    hub = entry.hub_id if entry else None
    return {
        "model": name,
        "hub_id": hub,
        "device": device,
        "compute_dtype": dtype,
        "budget_bytes": budget,
        "budget_source": source,
        "num_generations": plan.num_generations,
        "num_generations_auto": auto,
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
        "architecture": arch.to_dict(),
        "num_params": arch.num_params(),
        "shape": {
            "prompt_tokens": shape.prompt_tokens,
            "completion_tokens": shape.completion_tokens,
            "lora_r": shape.lora_r,
            "lora_targets": list(shape.lora_targets),
            "optimizer": shape.optimizer,
            "gradient_checkpointing": shape.gradient_checkpointing,
            "quantize": shape.quantize,
            "logprob_backend": shape.logprob_backend,
            "cpu_allocator": shape.cpu_allocator if shape.device == "cpu" else None,
        },
    }


def render(d: dict) -> str:
    gib = format_bytes
    s = d["shape"]
    a = d["architecture"]
    head = f"{d['model']}" + (f" ({d['hub_id']})" if d["hub_id"] else "")
    n = d["num_params"]
    params = f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"
    lines = [
        f"memory plan: {head} on {d['device']}, {d['compute_dtype']} compute",
        f"  {params} params,"
        f" {a['num_layers']} layers, hidden {a['hidden_size']}, vocab "
        f"{a['vocab_size']}; {s['prompt_tokens']}-token prompts + {s['completion_tokens']}-token completions; "
        f"LoRA r={s['lora_r']} on {len(s['lora_targets'])} modules; {s['optimizer']}; gradient checkpointing "
        f"{'on' if s['gradient_checkpointing'] else 'off'}; {'4-bit NF4' if s['quantize'] else 'unquantized'} base; "
        f"{s['logprob_backend']} log-prob kernels"
        + (f"; {s['cpu_allocator']} CPU allocator" if s.get("cpu_allocator") else ""),
        f"  budget {gib(d['budget_bytes'])} ({d['budget_source']})",
        "",
        f"  {'component':<20}{'predicted':>11}  {'phase':<11}what",
    ]
    for comp, value in d["components"].items():
        phase, what = COMPONENT_NOTES.get(comp, ("", ""))
        lines.append(f"  {comp:<20}{gib(value):>11}  {phase:<11}{what}")
    t = d["phase_totals"]
    lines += [
        "",
        f"  static {gib(t['static'])} + max(generation {gib(t['generation'])}, training {gib(t['training'])})"
        f" + runtime and overhead",
        f"  predicted peak {gib(d['predicted_peak_bytes'])} of {gib(d['budget_bytes'])} "
        f"({100 * d['predicted_peak_bytes'] / d['budget_bytes']:.0f}%), during {d['peak_phase']}",
        "",
        f"  {'num_generations':<28}{d['num_generations']}"
        + ("  (auto)" if d["num_generations_auto"] else ""),
        f"  {'generation_batch_size':<28}{d['generation_batch_size']} sequences per generate call",
        f"  {'micro_batch_size':<28}{d['micro_batch_size']} sequences per forward/backward, "
        f"{d['gradient_accumulation_steps']} accumulation steps for a batch of {d['batch_size']}",
        f"  {'logits_chunk_size':<28}{d['logits_chunk_size']} tokens per log-prob chunk",
        f"  {'dequantized_layers':<28}{d['dequantized_layers']} of {a['num_layers']} decoder layers keep a "
        f"dequantized base ({gib(d['components'].get('weights_dequantized', 0))})",
    ]
    lines += [f"  warning: {w}" for w in d["warnings"]]
    return "\n".join(lines)


def run(args) -> int:
    try:
        d = build(args)
    except InfeasiblePlanError as e:
        if args.json:
            print(json.dumps({"feasible": False, "error": str(e)}))
        print(f"gcpo-lite plan: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"feasible": True, **d}) if args.json else render(d))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`gcpo-lite plan` without importing torch for the parser (cli.main routes here)."""
    p = argparse.ArgumentParser(prog="gcpo-lite plan", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
