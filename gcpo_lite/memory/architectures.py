"""Architecture numbers the memory model needs, available offline for registry models.

For the registry's short names (and their hub ids) the numbers come from gcpo_lite/registry.py (the
models' public config.json), so `gcpo-lite plan` works without the Hub. Any other model is
read from a local directory / config.json, or from the transformers cache (offline only).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from gcpo_lite.errors import ConfigError
from gcpo_lite.models.registry import (
    BY_HUB_ID,
    EMBEDDED_ARCH,
    EMBEDDED_BASE_NAME,
    EMBEDDED_NAME,
    REGISTRY,
    SIZE_KEYS,
    embedded_model_dir,
    positive_size,
)


@dataclass(frozen=True)
class Architecture:
    num_layers: int  # num_hidden_layers
    hidden_size: int  # H
    intermediate_size: int  # I, MLP inner width (gate/up/down)
    num_heads: int  # query heads
    num_kv_heads: int  # key/value heads (GQA)
    head_dim: int  # per-head width
    vocab_size: int  # V, rows of the embedding and lm_head
    tie_word_embeddings: bool  # lm_head shares the embedding matrix
    qkv_bias: bool = False  # Qwen2 has biases on q/k/v

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """Per decoder layer: projection name -> (in_features, out_features)."""
        H, I = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (H, self.q_dim),
            "k_proj": (H, self.kv_dim),
            "v_proj": (H, self.kv_dim),
            "o_proj": (self.q_dim, H),
            "gate_proj": (H, I),
            "up_proj": (H, I),
            "down_proj": (I, H),
        }

    def num_params(self) -> int:
        """Total parameters (embedding + layers + norms + untied lm_head)."""
        per_layer = sum(i * o for i, o in self.linear_shapes().values()) + 2 * self.hidden_size
        if self.qkv_bias:
            per_layer += self.q_dim + 2 * self.kv_dim
        head = 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size
        return self.vocab_size * self.hidden_size + self.num_layers * per_layer + self.hidden_size + head

    def to_dict(self) -> dict:
        return asdict(self)


def registry_architectures() -> dict[str, "Architecture"]:
    """Short name -> Architecture for every registry model, from the registry's config numbers."""
    return {name: from_hf_config(e.config) for name, e in REGISTRY.items()}


class UnknownModelError(ConfigError):
    """The architecture of a model could not be found offline; the message says what to pass instead."""


def from_hf_config(cfg: dict) -> Architecture:
    """Architecture from a transformers config dict (config.json contents)."""
    if isinstance(cfg, dict) and "text_config" in cfg and "hidden_size" not in cfg:  # multimodal wrappers
        cfg = cfg["text_config"]
    if not isinstance(cfg, dict):
        raise UnknownModelError(
            f"model config is a JSON {_json_type(cfg)}, not an object of sizes; pass the model's own "
            "config.json (what save_pretrained writes)"
        )
    try:
        sizes = {key: _positive_int(cfg, key) for key in SIZE_KEYS}
    except KeyError as e:
        raise UnknownModelError(
            f"model config lacks {e.args[0]!r}; the memory model needs a decoder-only "
            "transformer config (hidden_size, num_hidden_layers, num_attention_heads, "
            "intermediate_size, vocab_size)"
        ) from None
    hidden, heads = sizes["hidden_size"], sizes["num_attention_heads"]
    kv_heads = (
        _positive_int(cfg, "num_key_value_heads") if cfg.get("num_key_value_heads") is not None else heads
    )
    head_dim = _positive_int(cfg, "head_dim") if cfg.get("head_dim") is not None else hidden // heads
    if head_dim < 1:
        raise UnknownModelError(
            f"model config: hidden_size={hidden} is smaller than num_attention_heads={heads}"
        )
    return Architecture(
        num_layers=sizes["num_hidden_layers"],
        hidden_size=hidden,
        intermediate_size=sizes["intermediate_size"],
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=sizes["vocab_size"],
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        qkv_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")),
    )


def _positive_int(cfg: dict, key: str) -> int:
    return positive_size(cfg, key, error=UnknownModelError)


def _json_type(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _read_config_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UnknownModelError(
            f"{path} is not valid JSON ({e}); re-download the model's config.json"
        ) from None
    except RecursionError:
        raise UnknownModelError(
            f"{path} is not a model config (JSON nested too deeply to read); re-download the model's "
            "config.json"
        ) from None
    except OSError as e:
        raise UnknownModelError(
            f"cannot read {path} ({e.strerror or e}); check that the file exists and is readable"
        ) from None
    if not isinstance(data, dict):
        raise UnknownModelError(
            f"{path} holds a JSON {_json_type(data)}, not an object of sizes; re-download the model's "
            "config.json"
        )
    return data


def resolve(name: Optional[str]) -> Architecture:
    """Architecture for a registry short name, hub id, local path or the embedded tiny model (None)."""
    if name is None or name in (EMBEDDED_NAME, EMBEDDED_BASE_NAME):  # the demo's base: the same shapes
        return tiny_architecture()
    key = name.strip()
    short = key.lower() if key.lower() in REGISTRY else BY_HUB_ID.get(key.lower())
    if short is not None:
        return from_hf_config(REGISTRY[short].config)
    path = Path(key).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return from_hf_config(_read_config_json(path / "config.json"))
    if path.is_file() and path.suffix == ".json":
        return from_hf_config(_read_config_json(path))
    if path.is_dir():
        raise UnknownModelError(
            f"model directory {name!r} has no config.json; pass the folder that holds the "
            "model's config.json (what save_pretrained writes), or a registry name"
        )
    try:  # a hub id already in the local transformers cache; never goes online
        from transformers import AutoConfig

        return from_hf_config(AutoConfig.from_pretrained(key, local_files_only=True).to_dict())
    except Exception:
        pass
    raise UnknownModelError(
        f"no architecture numbers for model {name!r}: it is not a registry name ({', '.join(REGISTRY)}), "
        "not a local directory with config.json, and not in the local Hugging Face cache. "
        "Pass a registry name, or a path to the model directory / its config.json"
    )


def tiny_architecture() -> Architecture:
    """The embedded tiny test model (model.name = None): its cached config.json, else its registry shape
    with a small vocabulary."""
    path = embedded_model_dir() / "config.json"
    if path.is_file():
        return from_hf_config(_read_config_json(path))
    return from_hf_config({"vocab_size": 64, "model_type": "qwen2", **EMBEDDED_ARCH})
