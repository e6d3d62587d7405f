"""Plan a run's memory: what each component needs and the batch sizes that fit a budget.

    gcpo-lite plan --model qwen2.5-1.5b --dataset math --memory-budget 8GiB
    gcpo-lite plan --model qwen2.5-1.5b --memory-budget 8GiB --num-generations auto --max-completion-length 1024
    gcpo-lite plan --config configs/x.yaml --json

Offline and without loading the model (registry architectures are built in; other models are
read from a local config.json). Without --memory-budget the budget is this machine's free GPU
memory, or its available RAM with --device cpu. The compute dtype is the run's (model.compute_dtype, auto:
bf16 where the GPU has it, else float32; a GPU known only by its budget is taken to have bf16). The completion
length is the one `gcpo-lite train` would use with the same flags: yours, else the dataset preset's (gsm8k
when a real model is given no dataset), else 256; the plan says which. Exits 2 with what to change when
nothing fits. The plan itself is built in memory/plan_request.py.
"""

from __future__ import annotations

import argparse
import json
import sys

from gcpo_lite.commands.flags import flag_overrides
from gcpo_lite.config import ConfigError
from gcpo_lite.memory import model as mm
from gcpo_lite.memory.plan_request import PlanRequest, plan_report
from gcpo_lite.memory.planner import InfeasiblePlanError, format_bytes
from gcpo_lite.train.run_config import configured, explicit_keys, length_origin

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
    _add_target_arguments(p)
    _add_group_size_arguments(p)
    _add_run_shape_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")


def _add_target_arguments(p: argparse.ArgumentParser) -> None:
    """What to plan for: the config, the model, the memory and the device."""
    p.add_argument("--config", metavar="FILE", help="YAML config to plan for (defaults: gcpo-lite's)")
    p.add_argument(
        "--model",
        help="registry name (qwen2.5-1.5b, ...), hub id in the local cache, or a "
        "directory / config.json (model.name)",
    )
    p.add_argument(
        "--dataset",
        help="what the run trains on (data.dataset): a preset (gsm8k, math, ...) brings its completion length "
        "unless --max-completion-length is given",
    )
    p.add_argument(
        "--memory-budget",
        metavar="SIZE",
        help="e.g. 8GiB, 7.5GB, 6000MiB (default: free GPU memory, or available RAM with --device cpu)",
    )
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        help="plan for a GPU or the CPU (the compute dtype follows, see --compute-dtype); "
        "default: cuda with --memory-budget, else this machine's",
    )


def _add_group_size_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--num-generations",
        metavar="G|auto",
        help="group size, or auto: the largest G in "
        "[--min-num-generations, --max-num-generations] dividing the batch that fits",
    )
    p.add_argument(
        "--min-num-generations", type=int, metavar="G", help="default: memory.min_num_generations (2)"
    )
    p.add_argument(
        "--max-num-generations", type=int, metavar="G", help="default: memory.max_num_generations (16)"
    )


def _add_run_shape_arguments(p: argparse.ArgumentParser) -> None:
    """Lengths, batch, adapter, optimizer, precision and kernels of the run."""
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
        "--compute-dtype",
        choices=tuple(mm.DTYPE_BYTES),
        help="model.compute_dtype; default (auto): bfloat16 on a GPU with bf16, float32 on one without "
        "(T4, V100) and on cpu; with a memory budget given the GPU is not asked and bf16 is assumed",
    )
    p.add_argument(
        "--kernels",
        choices=("native", "reference"),
        help="log-prob kernels the run will use "
        "(train.kernels); default: reference unless the config says native (its chunks are smaller)",
    )
    p.add_argument("--no-gradient-checkpointing", action="store_true")
    p.add_argument("--no-quantize", action="store_true", help="plan for a bf16/fp32 base instead of 4-bit")


def _overrides(args) -> list[str]:
    return list(args.overrides) + flag_overrides(args)  # a flag wins over an override of the same key


def _group_overrides(args) -> list[str]:
    """--num-generations / --min/--max-num-generations as config overrides; `auto` is handled by the config
    (gcpo.num_generations: auto turns on memory.auto_num_generations with a valid stand-in G)."""
    out = []
    if args.min_num_generations:
        out.append(f"memory.min_num_generations={args.min_num_generations}")
    if args.max_num_generations:
        out.append(f"memory.max_num_generations={args.max_num_generations}")
    g = args.num_generations
    if g is not None and g != "auto":
        try:
            int(g)
        except ValueError:
            raise ConfigError(f"--num-generations {g!r}: give a number (e.g. 8) or auto") from None
    return out + ([] if g is None else [f"gcpo.num_generations={g}"])


def build(args) -> dict:
    """The plan as a dict (what --json prints, less completion_length); raises InfeasiblePlanError /
    ConfigError."""
    return _plan(args, _config(args)[0])


def _config(args) -> tuple:
    """(the Config `gcpo-lite train` would run with these flags, where its completion length came from:
    train.run_config.LengthOrigin as a dict)."""
    overrides = _overrides(args) + _group_overrides(args)
    cfg = configured(args.config, overrides, say=lambda line: None)  # the plan shows it in its own words
    return cfg, length_origin(cfg, explicit_keys(args.config, overrides))._asdict()


def _plan(args, cfg) -> dict:
    request = PlanRequest(
        cfg,
        device=args.device,
        memory_budget=args.memory_budget,
        optimizer=args.optimizer,
        kernels=args.kernels,
    )
    return plan_report(request)


def render(d: dict) -> str:
    """The plan as the table `gcpo-lite plan` prints."""
    lines = _header_lines(d) + _length_lines(d) + [""] + _component_lines(d) + [""] + _peak_lines(d)
    lines += [""] + _size_lines(d)
    return "\n".join(lines + [f"  warning: {w}" for w in d["warnings"]])


def _length_lines(d: dict) -> list[str]:
    """The completion length sized for, and where it came from (d["completion_length"], when run() added it)."""
    origin = d.get("completion_length")
    if not origin:
        return []
    where = {
        "explicit": "as set (--config, --max-completion-length or gcpo.max_completion_length=)",
        "preset": f"the {origin['preset']} preset's default: {origin['reason']}; --max-completion-length overrides",
        "default": "the default (no dataset preset); --max-completion-length changes it",
    }[origin["source"]]
    return [f"  completions of up to {origin['tokens']} tokens (gcpo.max_completion_length): {where}"]


def _header_lines(d: dict) -> list[str]:
    """Model, device and dtype; the architecture and run shape; the budget."""
    s, a, n = d["shape"], d["architecture"], d["num_params"]
    head = f"{d['model']}" + (f" ({d['hub_id']})" if d["hub_id"] else "")
    params = f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"
    assumed = " (assumed: a GPU with bf16; --compute-dtype float32 plans a T4 or V100)"
    return [
        f"memory plan: {head} on {d['device']}, {d['compute_dtype']} compute"
        + (assumed if d.get("compute_dtype_assumed") else ""),
        f"  {params} params,"
        f" {a['num_layers']} layers, hidden {a['hidden_size']}, vocab "
        f"{a['vocab_size']}; {s['prompt_tokens']}-token prompts + {s['completion_tokens']}-token completions; "
        f"LoRA r={s['lora_r']} on {len(s['lora_targets'])} modules; {s['optimizer']}; gradient checkpointing "
        f"{'on' if s['gradient_checkpointing'] else 'off'}; {'4-bit NF4' if s['quantize'] else 'unquantized'} base; "
        f"{s['logprob_backend']} log-prob kernels"
        + (f"; {s['cpu_allocator']} CPU allocator" if s.get("cpu_allocator") else ""),
        f"  budget {format_bytes(d['budget_bytes'])} ({d['budget_source']})",
    ]


def _component_lines(d: dict) -> list[str]:
    lines = [f"  {'component':<20}{'predicted':>11}  {'phase':<11}what"]
    for comp, value in d["components"].items():
        phase, what = COMPONENT_NOTES.get(comp, ("", ""))
        lines.append(f"  {comp:<20}{format_bytes(value):>11}  {phase:<11}{what}")
    return lines


def _peak_lines(d: dict) -> list[str]:
    gib, t = format_bytes, d["phase_totals"]
    return [
        f"  static {gib(t['static'])} + max(generation {gib(t['generation'])}, training {gib(t['training'])})"
        f" + runtime and overhead",
        f"  predicted peak {gib(d['predicted_peak_bytes'])} of {gib(d['budget_bytes'])} "
        f"({100 * d['predicted_peak_bytes'] / d['budget_bytes']:.0f}%), during {d['peak_phase']}",
    ]


def _size_lines(d: dict) -> list[str]:
    """The chosen sizes, one per line."""
    dequantized = format_bytes(d["components"].get("weights_dequantized", 0))
    return [
        f"  {'num_generations':<28}{d['num_generations']}"
        + ("  (auto)" if d["num_generations_auto"] else ""),
        f"  {'generation_batch_size':<28}{d['generation_batch_size']} sequences per generate call",
        f"  {'micro_batch_size':<28}{d['micro_batch_size']} sequences per forward/backward, "
        f"{d['gradient_accumulation_steps']} accumulation steps for a batch of {d['batch_size']}",
        f"  {'logits_chunk_size':<28}{d['logits_chunk_size']} tokens per log-prob chunk",
        f"  {'dequantized_layers':<28}{d['dequantized_layers']} of {d['architecture']['num_layers']} decoder "
        f"layers keep a dequantized base ({dequantized})",
    ]


def run(args) -> int:
    cfg, origin = _config(args)
    try:
        d = {**_plan(args, cfg), "completion_length": origin}
    except InfeasiblePlanError as e:
        if args.json:
            print(json.dumps({"feasible": False, "error": str(e), "completion_length": origin}))
        print(f"gcpo-lite plan: {e}", file=sys.stderr)
        if origin["source"] == "preset":  # the user did not pick that length: say where it came from
            print(
                f"gcpo-lite plan: {origin['tokens']}-token completions are the {origin['preset']} preset's "
                "default; --max-completion-length T (gcpo.max_completion_length=T) sets another",
                file=sys.stderr,
            )
        return 2
    print(json.dumps({"feasible": True, **d}) if args.json else render(d))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The plan command on its own (`python -m gcpo_lite.commands.plan`); `gcpo-lite plan` goes through cli.main."""
    p = argparse.ArgumentParser(prog="gcpo-lite plan", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
