"""Merge a LoRA adapter into its base for export: one full model in a plain dtype, no peft or bitsandbytes.

The adapter was trained against dequant(NF4(W)), not W: the trained policy is dequant(NF4(W)) + (alpha/r) B A.
merge_base="dequantized" rebuilds exactly that: it loads the base in 4-bit with the run's quantization
settings, dequantizes every 4-bit layer to float32 (model.dequantize()), adds the LoRA delta in float32 and
only then rounds to `dtype`, so the merged model computes what training evaluated. peft's merge on a live
4-bit model would instead re-quantize W + delta and lose most of the delta. merge_base="original" adds the
delta to the full-precision W: the usual choice for a base trained unquantized, and for a quantized one the
merged model then differs from the trained policy by the quantization error (which the adapter may partly
have learned to offset). Runs without quantization merge into W either way. Everything runs on the CPU, in
float32 until the final cast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a merge runs, not when the CLI starts
    import torch

    from gcpo_lite.config import Config
    from gcpo_lite.models.loading import ResolvedModel


def _load_base(resolved: ResolvedModel, cfg: Config, *, quantized: bool, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = dict(revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code, dtype=dtype)
    if quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=cfg.model.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=cfg.model.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": "cpu"}
    return AutoModelForCausalLM.from_pretrained(resolved.source, **kwargs)


def float32_base(resolved: ResolvedModel, cfg: Config, merge_base: str = "dequantized"):
    """The base the delta is added to, in float32: dequant(NF4(W)) for a quantized run merged into
    "dequantized", else W."""
    import torch

    quantized = cfg.model.quantize and merge_base == "dequantized"
    base = _load_base(resolved, cfg, quantized=quantized, dtype=torch.float32)
    if quantized:
        base = base.dequantize()
        base = base.to(torch.float32)
        if hasattr(base.config, "quantization_config"):  # or from_pretrained(OUT) would expect 4-bit weights
            del base.config.quantization_config
        base.is_quantized = False
    return base


def merge(
    adapter_dir: Path,
    cfg: Config,
    resolved: ResolvedModel,
    out_dir: Path,
    *,
    dtype: str = "bfloat16",
    merge_base: str = "dequantized",
) -> None:
    """Write base + adapter as one full model in `dtype` (safetensors) into out_dir; see the module
    docstring for what merge_base chooses."""
    import torch
    from peft import PeftModel

    base = float32_base(resolved, cfg, merge_base)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    model.save_pretrained(str(out_dir), safe_serialization=True)
