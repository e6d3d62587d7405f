"""Model names and 4-bit NF4 + LoRA loading.

`--model` is a registry short name (qwen2.5-1.5b), a hub id (Qwen/Qwen2.5-1.5B-Instruct) or a
local directory. With no name, the embedded default (its files are made by gcpo_lite/demo/embedded_model.py:
`prepare_model` resolves a name and makes those files on first use).
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from gcpo_lite.config import Config, ConfigError, LoraConfig, ModelConfig
from gcpo_lite.models.output_head import check_head, check_supported
from gcpo_lite.models.precision import compute_dtype_name
from gcpo_lite.models.registry import (
    EMBEDDED_BASE_NAME,
    EMBEDDED_NAME,
    REGISTRY,
    SIZE_KEYS,
    embedded_base_dir,
    embedded_model_dir,
    positive_size,
)  # noqa: F401 (re-exported)
from gcpo_lite.run.hub import ensure_fetchable

log = logging.getLogger(__name__)


class ModelNameError(ConfigError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    source: str  # what from_pretrained gets: hub id or local directory
    family: str
    display: str  # how the run reports it
    embedded: bool = False


def resolve_model(name: Optional[str]) -> ResolvedModel:
    """Map --model to something from_pretrained can load; unknown short names suggest close ones."""
    if name is None or name == EMBEDDED_NAME:
        return ResolvedModel(str(embedded_model_dir()), "qwen2", EMBEDDED_NAME, embedded=True)
    if name == EMBEDDED_BASE_NAME:
        return ResolvedModel(str(embedded_base_dir()), "qwen2", EMBEDDED_BASE_NAME, embedded=True)
    key = name.lower()
    if key in REGISTRY:
        e = REGISTRY[key]
        return ResolvedModel(e.hub_id, e.family, f"{key} ({e.hub_id})")
    if Path(name).expanduser().exists():
        path = str(Path(name).expanduser())
        check_local_model_dir(path)  # config and tokenizer present: fail here, before any weights load
        return ResolvedModel(path, _family_from_config(path), path)
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise ModelNameError(
            f"model directory {name!r} does not exist; check the path (or give a hub id owner/name)"
        )
    if "/" in name:
        return ResolvedModel(
            name, "r1_distill" if "r1-distill" in key else "llama" if "llama" in key else "qwen2", name
        )
    close = difflib.get_close_matches(key, list(REGISTRY), n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ModelNameError(
        f"unknown model {name!r}: not a registry name, a hub id (owner/name) or an existing "
        f"path.{hint} Registry: {', '.join(REGISTRY)}"
    )


def _family_from_config(path: str) -> str:
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return "qwen2"
    if not isinstance(cfg, dict):
        return "qwen2"
    name = str(cfg.get("_name_or_path") or "").lower()
    if "r1-distill" in name:
        return "r1_distill"
    return "llama" if cfg.get("model_type") == "llama" else "qwen2"


# ---------------------------------------------------------------- loading


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but this torch sees no CUDA device; use train.device=cpu")
    return dev


def compute_dtype(cfg: ModelConfig, device: torch.device) -> torch.dtype:
    """model.compute_dtype on `device` (auto: models/precision.py's rule, the one the memory plan uses)."""
    asks_gpu = device.type == "cuda" and cfg.compute_dtype == "auto"
    bf16 = bool(torch.cuda.is_bf16_supported()) if asks_gpu else None
    return getattr(torch, compute_dtype_name(cfg.compute_dtype, device.type, bf16))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def check_local_model_dir(source: str) -> None:
    """A local model directory must hold a config and a tokenizer; checked before any weights load."""
    path = Path(source).expanduser()
    if path.exists() and not path.is_dir():
        parent = f", here {str(path.parent)!r}" if path.name == "config.json" else ""
        raise ModelNameError(
            f"model {source!r} is a file, not a model directory; pass the folder that holds config.json, "
            f"the weights and the tokenizer files{parent}"
        )
    if not path.is_dir():
        return
    if not (path / "config.json").is_file():
        raise ModelNameError(
            f"model directory {source!r} has no config.json; pass the folder save_pretrained "
            "wrote (config.json, weights, tokenizer files)"
        )
    _check_sizes(path, _read_config(path))
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelNameError(
            f"model directory {source!r} has no tokenizer ({', '.join(TOKENIZER_FILES)}); save "
            "the tokenizer there too (tokenizer.save_pretrained(DIR)), or copy the base model's "
            "tokenizer files into it"
        )


def _read_config(path: Path) -> dict:
    """PATH/config.json as a dict; a ModelNameError when it is not a JSON object."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        why = getattr(e, "strerror", None) or ("nested too deeply" if isinstance(e, RecursionError) else e)
        raise ModelNameError(
            f"{path / 'config.json'} cannot be read as JSON ({why}); re-download or re-save the model "
            "(model.save_pretrained(DIR))"
        ) from None
    if not isinstance(config, dict):
        raise ModelNameError(
            f"{path / 'config.json'} holds a JSON {type(config).__name__}, not a model config object; "
            "re-download or re-save the model (model.save_pretrained(DIR))"
        )
    return config


def _check_sizes(path: Path, config: dict) -> None:
    """A size transformers would reject with a traceback, or a model no machine holds: a ModelNameError."""
    sizes = config.get("text_config") if "hidden_size" not in config else config
    for key in SIZE_KEYS if isinstance(sizes, dict) else ():
        if key in sizes:
            try:
                positive_size(sizes, key)
            except ConfigError as e:
                raise ModelNameError(f"{path / 'config.json'}: {e}") from None


def load_tokenizer(source: str, cfg: ModelConfig):
    from transformers import AutoTokenizer

    check_local_model_dir(source)
    if not Path(source).exists():  # a hub id (train, eval and export load it first): one fast probe
        ensure_fetchable(source, revision=cfg.revision)
    tok = AutoTokenizer.from_pretrained(
        source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
    )
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token  # padding is masked everywhere; it only needs an id
    return tok


def _from_pretrained_kwargs(cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> dict:
    """from_pretrained's options: 4-bit NF4 (double quant, compute dtype) on `device` when cfg.quantize."""
    from transformers import BitsAndBytesConfig

    kwargs = dict(
        revision=cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
        dtype=dtype,
        attn_implementation=cfg.attn_implementation,
    )
    if cfg.quantize:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {
            "": device.index
            if device.type == "cuda" and device.index is not None
            else (0 if device.type == "cuda" else "cpu")
        }
    return kwargs


def load_base_model(source: str, cfg: ModelConfig, device: torch.device):
    """The frozen base: 4-bit NF4 (double quant, compute dtype) when cfg.quantize, else full precision."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = _from_pretrained_kwargs(cfg, device, compute_dtype(cfg, device))
    try:
        # refuse a model whose logits the training log-probs cannot reproduce before its weights load
        check_supported(
            AutoConfig.from_pretrained(
                source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
            ),
            source,
        )
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise ModelNameError(
            f"could not load model {source!r}: {e}. Check the name, your network or "
            "HF_HUB_OFFLINE, or pass a local directory"
        ) from None
    if not cfg.quantize:
        model.to(device)
    else:
        _keep_cpu_4bit_trainable(model)
    check_head(model.get_output_embeddings(), source)
    for p in model.parameters():
        p.requires_grad_(False)
    if device.type == "cpu":
        release_freed_heap()
    return model


def release_freed_heap() -> None:
    """Give the heap that loading freed back to the OS (glibc's malloc_trim). Loading a checkpoint, casting and
    quantizing it frees several hundred MB that glibc otherwise keeps mapped, so a CPU run's resident set stays
    that much above what the memory plan counts (measured: 0.25-0.8 GiB for a 0.5B model). No-op elsewhere."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _keep_cpu_4bit_trainable(model) -> None:
    """bitsandbytes 0.50 repacks CPU 4-bit weights for AVX512-BF16 inference the first time a layer runs in
    eval mode, and its training path cannot read the repacked layout (backward fails after the first
    rollout). Rollouts run in eval mode, so keep the trainable layout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def add_lora(model, lora: LoraConfig, gradient_checkpointing: bool):
    """Wrap the frozen base with trainable LoRA adapters (peft)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [m for m in lora.target_modules if m not in present]
    if missing:
        raise ConfigError(
            f"lora.target_modules {missing} are not modules of this model; its projections are "
            f"{sorted(m for m in present if m.endswith('proj'))}"
        )
    ends = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if m in _head_and_embeddings(model)}
    if ends & set(lora.target_modules):
        raise ConfigError(
            f"lora.target_modules has {sorted(ends & set(lora.target_modules))[0]!r}, this model's output head or "
            "embedding: the loss reads the head's base weight, so a LoRA there would never train; remove it"
        )
    if gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # no KV cache while training; generation turns it back on
    peft_cfg = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg)


def _head_and_embeddings(model) -> list:
    found = [model.get_output_embeddings(), model.get_input_embeddings()]
    return [m for m in found if m is not None]


def load_policy(cfg: Config, resolved: ResolvedModel, device: torch.device):
    """(peft model, tokenizer) for a run, from the model `resolved` names (its files already there)."""
    tokenizer = load_tokenizer(resolved.source, cfg.model)
    base = load_base_model(resolved.source, cfg.model, device)
    model = add_lora(base, cfg.lora, cfg.model.gradient_checkpointing)
    return model, tokenizer


def decoder_and_head(model):
    """(decoder returning last hidden states, lm_head module) of a peft-wrapped causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()
