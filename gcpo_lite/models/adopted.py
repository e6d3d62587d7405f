"""A model the caller already loaded (the Python API's `model=`), made into the run's policy.

The model is taken as it is: its precision and quantization are the caller's (load it with a
BitsAndBytesConfig for 4-bit NF4). gcpo-lite freezes it, checks its output head as for a named model, and
adds its own LoRA adapters from lora.*. A peft model is refused: its adapters would not be the ones lora.*
describes, and what trains would be unclear.
"""

from __future__ import annotations

from gcpo_lite.config import Config, ConfigError
from gcpo_lite.models.loading import ResolvedModel, add_lora, load_tokenizer
from gcpo_lite.models.output_head import check_head, check_supported


def adopt_policy(cfg: Config, model, tokenizer, device):
    """(peft model, tokenizer, ResolvedModel) from a loaded transformers model and its tokenizer (None: the
    tokenizer saved with the model, from model.name_or_path)."""
    if hasattr(model, "peft_config"):
        raise ConfigError(
            "model= is a peft model; pass its base model (model.get_base_model(), or unload its adapters): "
            "gcpo-lite adds its own LoRA adapters, configured by lora.*"
        )
    if not hasattr(model, "get_output_embeddings") or not hasattr(model, "config"):
        raise ConfigError(
            f"model= is a {type(model).__name__}; pass a transformers causal LM (AutoModelForCausalLM), its "
            "name or its directory"
        )
    source = str(getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "") or "")
    check_supported(model.config, source or type(model).__name__)
    check_head(model.get_output_embeddings(), source)
    if tokenizer is None:
        if not source:
            raise ConfigError("model= has no name_or_path to load its tokenizer from; pass processing_class=")
        tokenizer = load_tokenizer(source, cfg.model)
    elif tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked everywhere; it only needs an id
    if not getattr(model, "is_loaded_in_4bit", False):
        model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    family = "llama" if getattr(model.config, "model_type", "") == "llama" else "qwen2"
    family = "r1_distill" if "r1-distill" in source.lower() else family
    resolved = ResolvedModel(source, family, source or type(model).__name__)
    return add_lora(model, cfg.lora, cfg.model.gradient_checkpointing), tokenizer, resolved
