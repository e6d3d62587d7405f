"""Memory-aware plan of a step: generation batch, training micro-batch, logits chunk, group size.

The budget is `memory.memory_budget` (e.g. 8GiB) when set, else the device's free memory
(torch.cuda.mem_get_info) or, on CPU, the available system RAM, each plus what this process
already holds (machine.py). The planner takes the memory model (model.py) and picks

  generation_batch_size  the largest divisor of train.batch_size whose generation phase fits
  micro_batch_size       the largest divisor of train.batch_size whose training phase fits with the
                         smallest logits chunk (gradient accumulation over batch_size / micro keeps
                         the effective batch)
  logits_chunk_size      then the largest chunk up to the kernel's default (~256 MiB of logits) that fits
  num_generations        with memory.auto_num_generations: the largest G in [min, max] dividing
                         batch_size whose whole group fits one generate call (warns when G < 4)
  dequantized_layers     with memory.dequantized_base and a 4-bit base: last, with what is left, the
                         most decoder layers whose dequantized copy keeps the peak within
                         DEQUANT_BUDGET_FRACTION of the budget (sizes come first: the copy buys speed, never
                         a smaller batch)

Each size is the largest that fits on its own and the phases never overlap, so more memory never
gives a smaller size, and the same inputs always give the same plan. When even generation batch 1,
micro-batch 1 and the smallest chunk do not fit, `InfeasiblePlanError` says what would fit.
Sizes set explicitly in the config are kept (with a warning when they are predicted not to fit).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

from gcpo_lite.config import Config, ConfigError
from gcpo_lite.config.units import LOGITS_CHUNK_BUDGET_BYTES, MAX_BUDGET_BYTES, format_bytes, parse_bytes  # noqa: F401 (re-exported)
from gcpo_lite.memory import model as mm
from gcpo_lite.memory.architectures import Architecture, from_hf_config, registry_architectures, resolve
from gcpo_lite.memory.machine import detect_budget
from gcpo_lite.memory.run_shape import resolved_device, shape_from_config

log = logging.getLogger(__name__)

MIN_CHUNK = 16  # smallest logits chunk the planner uses (tokens)
GOLD_MIN_GROUP = 4  # below this group size gold injection has little contrast to work with
DEQUANT_BUDGET_FRACTION = 0.8  # the dequantized base may raise the peak to this share of the budget, no more


class InfeasiblePlanError(ConfigError):
    """Even the smallest plan does not fit the budget; the message lists what would."""


@dataclass
class Plan:
    generation_batch_size: int  # sequences per generate call
    micro_batch_size: int  # sequences per forward/backward
    logits_chunk_size: Optional[int]  # tokens per lm_head chunk in the loss (None = kernel default)
    num_generations: Optional[int] = None  # G; chosen by the planner under auto_num_generations
    gradient_accumulation_steps: int = (
        1  # micro-steps per optimizer step: ceil(batch_size / micro_batch_size)
    )
    predicted_peak_bytes: int = 0  # memory_model.estimate(...).peak_bytes for these sizes
    budget_bytes: int = 0  # what the plan had to fit in
    budget_source: str = ""  # where the budget came from
    components: dict = field(default_factory=dict)  # component -> predicted bytes
    peak_phase: str = ""  # generation | training
    dequantized_layers: int = (
        0  # leading decoder layers with a resident dequantized base (dequantized_base.py)
    )
    warnings: list = field(default_factory=list)  # human-readable notes (small G, explicit sizes over budget)
    backoffs: list = field(default_factory=list)  # out-of-memory backoff events (oom.py) since the start

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        """plan.json's text (a run directory keeps the plan it ran with)."""
        return json.dumps(self.to_dict(), indent=1, default=str)


# ---------------------------------------------------------------- planning


def divisors(n: int) -> list[int]:
    """The divisors of n, ascending, found in pairs (d, n // d) up to sqrt(n): O(sqrt n), not O(n)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


def chunk_candidates(arch: Architecture, shape: mm.RunShape) -> list[int]:
    """Logits chunk sizes, ascending: powers of two from MIN_CHUNK up to the kernel's default chunk."""
    default = max(MIN_CHUNK, LOGITS_CHUNK_BUDGET_BYTES // (arch.vocab_size * shape.bytes))
    out, c = [], MIN_CHUNK
    while c < default:
        out.append(c)
        c *= 2
    return out + [default]


def _phase_fits(arch, shape, budget, *, gen=None, micro=None, chunk=MIN_CHUNK) -> bool:
    """Does the run fit with this phase's size (the other phase at its minimum)?"""
    est = mm.estimate(arch, shape, gen or 1, micro or 1, chunk)
    return est.peak_bytes <= budget


def _largest(cands: list[int], ok) -> Optional[int]:
    """Largest candidate for which ok() holds; ok is monotone (true up to some size)."""
    best = None
    for c in sorted(cands):
        if not ok(c):
            break
        best = c
    return best


def plan_run(
    arch: Architecture,
    shape: mm.RunShape,
    *,
    batch_size: int,
    num_generations: int,
    budget_bytes: int,
    budget_source: str = "",
    auto_num_generations: bool = False,
    generation_range: tuple[int, int] = (2, 16),
    generation_batch_size: Optional[int] = None,
    micro_batch_size: Optional[int] = None,
    logits_chunk_size: Optional[int] = None,
    model_name: Optional[str] = None,
    dequantized_base: bool = False,
) -> Plan:
    """Choose the sizes (see the module docstring); explicit sizes are kept as given."""
    floor = mm.estimate(arch, shape, 1, 1, MIN_CHUNK)
    if floor.peak_bytes > budget_bytes:
        raise InfeasiblePlanError(infeasible_message(arch, shape, budget_bytes, floor, model_name))
    warnings: list[str] = []
    if auto_num_generations:
        num_generations, warnings = _auto_group_size(arch, shape, budget_bytes, batch_size, generation_range)
    explicit = (generation_batch_size, micro_batch_size, logits_chunk_size)
    gen, micro, chunk = _batch_sizes(arch, shape, budget_bytes, batch_size, explicit)
    if dequantized_base and shape.quantize:
        k = _dequantized_layers(arch, shape, budget_bytes, gen, micro, chunk)
        shape = mm.with_changes(shape, dequantized_layers=k)
    chosen = Plan(gen, micro, chunk, num_generations, gradient_accumulation_steps=-(-batch_size // micro))
    est = mm.estimate(arch, shape, gen, micro, chunk)
    return _with_prediction(chosen, est, shape, budget_bytes, budget_source, warnings)


def _auto_group_size(
    arch: Architecture, shape: mm.RunShape, budget: int, batch_size: int, generation_range: tuple[int, int]
) -> tuple[int, list[str]]:
    """(G, warnings): the largest G in the range dividing batch_size whose whole group fits one generate call."""
    lo, hi = generation_range
    groups = [G for G in range(hi, lo - 1, -1) if batch_size % G == 0]
    if not groups:
        raise ConfigError(
            f"no group size in [{lo}, {hi}] divides train.batch_size={batch_size}; "
            f"use a batch size that is a multiple of e.g. {hi} or {lo}"
        )
    fitting = [G for G in groups if _phase_fits(arch, shape, budget, gen=G)]
    warnings = []
    if not fitting:
        G = groups[-1]
        warnings.append(f"not even a group of G={G} fits one generate call; each group is generated in parts")
    else:
        G = fitting[0]
    if G < GOLD_MIN_GROUP:
        warnings.append(
            f"num_generations={G} (< {GOLD_MIN_GROUP}): groups this small give gold injection "
            "and advantages little contrast; shorten completions or use a smaller model for G >= 4"
        )
    return G, warnings


def _batch_sizes(
    arch: Architecture,
    shape: mm.RunShape,
    budget: int,
    batch_size: int,
    explicit: tuple[Optional[int], Optional[int], Optional[int]],
) -> tuple[int, int, int]:
    """(generation batch, micro-batch, logits chunk): each the explicit size, else the largest that fits."""
    explicit_gen, explicit_micro, explicit_chunk = explicit
    sizes = divisors(batch_size)
    gen = explicit_gen or _largest(sizes, lambda g: _phase_fits(arch, shape, budget, gen=g))
    micro = explicit_micro or _largest(sizes, lambda m: _phase_fits(arch, shape, budget, micro=m))
    chunk = explicit_chunk or _largest(
        chunk_candidates(arch, shape), lambda c: _phase_fits(arch, shape, budget, micro=micro, chunk=c)
    )
    # a chunk of more than the micro-batch's m x C completion rows buys nothing
    return gen, micro, min(chunk or MIN_CHUNK, max(MIN_CHUNK, micro * shape.completion_tokens))


def _with_prediction(
    chosen: Plan, est: mm.Estimate, shape: mm.RunShape, budget: int, source: str, warnings: list[str]
) -> Plan:
    """The chosen sizes with their predicted memory, the budget they were chosen for, and the warnings."""
    if est.peak_bytes > budget:  # only explicit sizes can get here
        warnings = warnings + [
            f"the configured sizes are predicted to need {format_bytes(est.peak_bytes)}, more than "
            f"the {format_bytes(budget)} budget; out-of-memory backoff will shrink them if needed"
        ]
    return replace(
        chosen,
        predicted_peak_bytes=est.peak_bytes,
        budget_bytes=budget,
        budget_source=source,
        components=dict(est.components),
        peak_phase=est.peak_phase,
        dequantized_layers=shape.dequantized_layers,
        warnings=warnings,
    )


def _dequantized_layers(
    arch: Architecture, shape: mm.RunShape, budget: int, gen: int, micro: int, chunk: int
) -> int:
    """The most leading layers whose dequantized copy keeps the peak within DEQUANT_BUDGET_FRACTION x budget."""

    def fits(k: int) -> bool:
        est = mm.estimate(arch, mm.with_changes(shape, dequantized_layers=k), gen, micro, chunk)
        return est.peak_bytes <= DEQUANT_BUDGET_FRACTION * budget

    return _largest(list(range(arch.num_layers + 1)), fits) or 0


def infeasible_message(
    arch: Architecture, shape: mm.RunShape, budget: int, floor: mm.Estimate, model_name: Optional[str]
) -> str:
    """What does not fit, the biggest components, and concrete changes that would fit."""
    top = sorted(((v, k) for k, v in floor.components.items() if v), reverse=True)[:4]
    parts = ", ".join(f"{k} {format_bytes(v)}" for v, k in top)

    def fits(s: mm.RunShape, a: Architecture = arch) -> bool:
        return mm.estimate(a, s, 1, 1, MIN_CHUNK).peak_bytes <= budget

    fixes = _shorter_sequence_fixes(arch, shape, budget, fits) + _setting_fixes(shape, fits)
    fixes += _smaller_model_fix(arch, shape, fits, model_name)
    fixes.append(f"more memory: at least {format_bytes(floor.peak_bytes)}")
    what = model_name or "this model"
    return (
        f"memory budget {format_bytes(budget)} is too small for {what} with {shape.prompt_tokens}-token prompts "
        f"and {shape.completion_tokens}-token completions: even generation batch 1, micro-batch 1 and a "
        f"{MIN_CHUNK}-token logits chunk need {format_bytes(floor.peak_bytes)} (largest: {parts}). "
        f"To fit, change one of: " + "; ".join(fixes)
    )


def _shorter_sequence_fixes(arch: Architecture, shape: mm.RunShape, budget: int, fits) -> list[str]:
    """The longest completions, and prompts, that fit; none when even 1-token sequences do not."""
    static = mm.estimate(arch, mm.with_changes(shape, completion_tokens=1, prompt_tokens=1), 1, 1, 1)
    if static.peak_bytes > budget:
        return []
    fixes = []
    C = shape.completion_tokens
    best = _largest(list(range(16, C, 16)), lambda c: fits(mm.with_changes(shape, completion_tokens=c)))
    if best:
        fixes.append(f"shorter completions: gcpo.max_completion_length={best}")
    if shape.prompt_tokens > 64:
        best_p = _largest(
            list(range(64, shape.prompt_tokens, 32)),
            lambda p: fits(mm.with_changes(shape, prompt_tokens=p)),
        )
        if best_p:
            fixes.append(f"shorter prompts: data.max_prompt_length={best_p}")
    return fixes


def _setting_fixes(shape: mm.RunShape, fits) -> list[str]:
    """Settings of the same model that fit: a lower LoRA rank, checkpointing, 8-bit state, 4-bit weights."""
    fixes = []
    for r in (8, 4):
        if r < shape.lora_r and fits(mm.with_changes(shape, lora_r=r)):
            fixes.append(f"a lower rank: lora.r={r}")
            break
    if not shape.gradient_checkpointing and fits(mm.with_changes(shape, gradient_checkpointing=True)):
        fixes.append("gradient checkpointing: model.gradient_checkpointing=true")
    eight_bit = "paged_adamw_8bit" if shape.device == "cuda" else "adamw_8bit"
    if shape.optimizer == "adamw" and fits(mm.with_changes(shape, optimizer=eight_bit)):
        fixes.append(f"8-bit optimizer state: train.optimizer={eight_bit}")
    if not shape.quantize and fits(mm.with_changes(shape, quantize=True)):
        fixes.append("4-bit weights: model.quantize=true")
    return fixes


def _smaller_model_fix(arch: Architecture, shape: mm.RunShape, fits, model_name: Optional[str]) -> list[str]:
    """The largest registry model smaller than `arch` that fits, from the same family first."""
    family = (model_name or "").lower().rsplit("-", 1)[0]
    known = registry_architectures()
    smaller = [n for n, a in known.items() if a.num_params() < arch.num_params() and fits(shape, a)]
    if not smaller:
        return []
    smaller.sort(key=lambda n: (not n.startswith(family + "-"), -known[n].num_params()))
    return [f"a smaller model: model.name={smaller[0]}"]


# ---------------------------------------------------------------- from a Config


def plan_for_config(cfg: Config, arch: Architecture, shape: mm.RunShape, budget: int, source: str) -> Plan:
    """plan_run with the batch, group-size and size overrides a config holds."""
    sch = cfg.memory
    return plan_run(
        arch,
        shape,
        batch_size=cfg.train.batch_size,
        num_generations=cfg.gcpo.num_generations,
        budget_bytes=budget,
        budget_source=source,
        auto_num_generations=sch.auto_num_generations,
        generation_range=(sch.min_num_generations, sch.max_num_generations),
        generation_batch_size=cfg.train.generation_batch_size,
        micro_batch_size=cfg.train.micro_batch_size,
        logits_chunk_size=cfg.train.logits_chunk_size,
        model_name=cfg.model.name,
        dequantized_base=sch.dequantized_base,
    )


def make_plan(
    cfg: Config,
    *,
    budget_bytes: Optional[int] = None,
    device: Optional[str] = None,
    compute_dtype: Optional[str] = None,
    model_config=None,
    prompt_tokens: Optional[int] = None,
    processes_sharing: int = 1,
) -> Plan:
    """The plan the trainer runs with (cfg is not changed: under auto_num_generations, plan.num_generations is
    the chosen G, which the trainer puts into the run's effective config).

    model_config: the loaded model's config (a transformers config or its dict); without it the
    architecture comes from the registry / a local config.json (architectures.resolve).
    prompt_tokens: the longest prompt the run will see (the trainer measures its data); default
    data.max_prompt_length, the most any prompt may have.
    processes_sharing: processes of one torchrun job on this machine; on CPU they share its RAM, so each
    plans within its share of the detected budget (a given memory.memory_budget is per process)."""
    device = device or resolved_device(cfg)
    if model_config is not None:
        arch = from_hf_config(model_config if isinstance(model_config, dict) else model_config.to_dict())
    else:
        arch = resolve(cfg.model.name)
    budget, source = _run_budget(cfg, device, budget_bytes, processes_sharing)
    shape = shape_from_config(cfg, device, compute_dtype)
    if prompt_tokens is not None:
        shape = mm.with_changes(shape, prompt_tokens=max(1, min(prompt_tokens, shape.prompt_tokens)))
    plan = plan_for_config(cfg, arch, shape, budget, source)
    _log_plan(plan)
    return plan


def _run_budget(
    cfg: Config, device: str, budget_bytes: Optional[int], processes_sharing: int
) -> tuple[int, str]:
    """(bytes, where they came from) for one process of the run (make_plan's arguments)."""
    if budget_bytes is not None:
        return budget_bytes, "memory budget given"
    given = cfg.memory.memory_budget
    budget, source = detect_budget(device, given)
    if processes_sharing > 1 and not device.startswith("cuda") and given is None:
        return budget // processes_sharing, f"{source}, / {processes_sharing} processes"
    return budget, source


def _log_plan(plan: Plan) -> None:
    log.info(
        "memory plan: generation batch %d, micro-batch %d (x%d), logits chunk %s, G=%s; predicted peak %s "
        "of %s (%s)",
        plan.generation_batch_size,
        plan.micro_batch_size,
        plan.gradient_accumulation_steps,
        plan.logits_chunk_size,
        plan.num_generations,
        format_bytes(plan.predicted_peak_bytes),
        format_bytes(plan.budget_bytes),
        plan.budget_source,
    )
    for w in plan.warnings:
        log.warning("memory plan: %s", w)
