"""The model eval scores: a base (named, or the adapter's own) with a LoRA adapter directory on top, checked
before anything loads; and the device it runs on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from gcpo_lite.config import ConfigError, ModelConfig

PEFT_LOAD_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RuntimeError)


def _bad_adapter(adapter: str, problem: str, fix: str = "pass") -> ConfigError:
    where = "the adapter directory training wrote (RUN_DIR/adapter, RUN_DIR/checkpoints/step-N/adapter)"
    return ConfigError(f"--adapter {adapter!r}{problem}; {fix} {where}")


def check_adapter(adapter: Optional[str]) -> None:
    """Before any model loads: a ConfigError naming the file when `adapter` has no adapter_config.json or one
    that is not a JSON object, or no weights, or weights that are truncated or damaged."""
    if not adapter:
        return
    from safetensors import SafetensorError, safe_open

    from gcpo_lite.run.checkpoint_checks import describe

    config, weights = Path(adapter) / "adapter_config.json", Path(adapter) / "adapter_model.safetensors"
    if not config.is_file():
        raise _bad_adapter(adapter, " has no adapter_config.json")
    try:
        value = json.loads(config.read_text())
    except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise _bad_adapter(adapter, f": adapter_config.json is not readable JSON ({describe(e)})") from None
    if not isinstance(value, dict):
        raise _bad_adapter(adapter, f": adapter_config.json is a JSON {type(value).__name__}, not an object")
    if not weights.is_file():
        if (Path(adapter) / "adapter_model.bin").is_file():
            return  # the older format: peft reads it
        raise _bad_adapter(adapter, " has no adapter_model.safetensors")
    try:
        with safe_open(str(weights), "pt"):  # reads the header; checks that it covers the whole file
            pass
    except (SafetensorError, OSError) as e:
        why = describe(e)
        raise _bad_adapter(adapter, f": adapter_model.safetensors is damaged or truncated ({why})") from None


def eval_device(name: str):
    """--device as a torch.device; a ConfigError unless auto, cpu, cuda or a cuda:N this machine has."""
    import torch

    from gcpo_lite.models.loading import pick_device

    if not re.fullmatch(r"auto|cpu|cuda(?::\d+)?", name):
        raise ConfigError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if name.startswith("cuda") and torch.cuda.is_available() else 0
    if name.startswith("cuda") and int(name.partition(":")[2] or 0) >= count:
        raise ConfigError(
            f"--device {name} but this torch sees {count or 'no'} CUDA device{'s' if count != 1 else ''}; "
            + (f"use cuda:0 to cuda:{count - 1}" if count else "use --device cpu (or auto)")
        )
    return pick_device(name)


def adapter_base(adapter: Optional[str]) -> Optional[str]:
    """The base an adapter was trained on (its adapter_config.json), when that is still on this machine or a
    hub id; None without an adapter. Lets `eval --adapter RUN/adapter` score the adapter on its own base."""
    if not adapter:
        return None
    try:
        base = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None
    if not base or not isinstance(base, str) or base.startswith(("/", ".", "~")) and not Path(base).exists():
        return None  # a path from another machine: the default model, as before
    return base


def load_eval_model(name: Optional[str], adapter: Optional[str], quantize: bool, device):
    """(model in eval mode, tokenizer, ResolvedModel): the base `name` (None: the adapter's own base, else the
    embedded model), with the LoRA adapter directory on top when given."""
    from gcpo_lite.demo.embedded_model import prepare_model
    from gcpo_lite.models.loading import load_base_model, load_tokenizer
    from gcpo_lite.run.checkpoint_checks import describe

    model_cfg = ModelConfig(
        name=name or adapter_base(adapter), quantize=quantize, gradient_checkpointing=False
    )
    resolved = prepare_model(model_cfg.name)
    tokenizer = load_tokenizer(resolved.source, model_cfg)
    model = load_base_model(resolved.source, model_cfg, device)
    try:
        model = _with_adapter(model, adapter) if adapter else model
    except (
        PEFT_LOAD_ERRORS
    ) as e:  # check_adapter read the files: a config peft rejects, another base's shapes
        if isinstance(e, RuntimeError) and "size mismatch" not in str(e):
            raise  # not the adapter's files (out of memory, a CUDA error)
        why = "its tensor shapes are another base's" if isinstance(e, RuntimeError) else describe(e)
        fix = "pass --model with the base it was trained on, or"
        raise _bad_adapter(adapter, f": peft cannot load it onto {resolved.display} ({why})", fix) from None
    model.eval()
    return model, tokenizer, resolved


def _with_adapter(model, adapter: str):
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter)
