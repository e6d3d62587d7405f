"""Architecture numbers the memory model needs, available offline for registry models.

For the registry's short names (and their hub ids) the numbers are hardcoded below from the
models' public config.json, so `gcpo-lite plan` works without the Hub. Any other model is
read from a local directory / config.json, or from the transformers cache (offline only).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from gcpo_lite.config import ConfigError


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
        return {"q_proj": (H, self.q_dim), "k_proj": (H, self.kv_dim), "v_proj": (H, self.kv_dim),
                "o_proj": (self.q_dim, H), "gate_proj": (H, I), "up_proj": (H, I), "down_proj": (I, H)}

    def num_params(self) -> int:
        """Total parameters (embedding + layers + norms + untied lm_head)."""
        per_layer = sum(i * o for i, o in self.linear_shapes().values()) + 2 * self.hidden_size
        if self.qkv_bias:
            per_layer += self.q_dim + 2 * self.kv_dim
        head = 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size
        return self.vocab_size * self.hidden_size + self.num_layers * per_layer + self.hidden_size + head

    def to_dict(self) -> dict:
        return asdict(self)


def _qwen2(layers, hidden, inter, heads, kv, vocab=151936, tie=True) -> Architecture:
    return Architecture(layers, hidden, inter, heads, kv, hidden // heads, vocab, tie, qkv_bias=True)


def _llama(layers, hidden, inter, heads, kv, head_dim, vocab=128256, tie=True) -> Architecture:
    return Architecture(layers, hidden, inter, heads, kv, head_dim, vocab, tie, qkv_bias=False)


# short name -> (hub ids, architecture), values from each model's public config.json
KNOWN: dict[str, tuple[tuple[str, ...], Architecture]] = {
    "qwen2.5-0.5b": (("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B"), _qwen2(24, 896, 4864, 14, 2)),
    "qwen2.5-1.5b": (("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B"), _qwen2(28, 1536, 8960, 12, 2)),
    "qwen2.5-3b": (("Qwen/Qwen2.5-3B-Instruct", "Qwen/Qwen2.5-3B"), _qwen2(36, 2048, 11008, 16, 2)),
    "qwen2.5-7b": (("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B"), _qwen2(28, 3584, 18944, 28, 4, 152064, False)),
    "qwen2.5-math-1.5b": (("Qwen/Qwen2.5-Math-1.5B", "Qwen/Qwen2.5-Math-1.5B-Instruct"),
                          _qwen2(28, 1536, 8960, 12, 2)),
    "deepseek-r1-distill-qwen-1.5b": (("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",),
                                      _qwen2(28, 1536, 8960, 12, 2, tie=False)),
    "llama-3.2-1b": (("meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-1B"),
                     _llama(16, 2048, 8192, 32, 8, 64)),
    "llama-3.2-3b": (("meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-3.2-3B"),
                     _llama(28, 3072, 8192, 24, 8, 128)),
}
_BY_HUB_ID = {hub.lower(): arch for hubs, arch in KNOWN.values() for hub in hubs}


class UnknownModelError(ConfigError):
    """The architecture of a model could not be found offline; the message says what to pass instead."""


def from_hf_config(cfg: dict) -> Architecture:
    """Architecture from a transformers config dict (config.json contents)."""
    if "text_config" in cfg and "hidden_size" not in cfg:  # multimodal wrappers
        cfg = cfg["text_config"]
    if not isinstance(cfg, dict):
        raise UnknownModelError(f"model config is a JSON {type(cfg).__name__}, not an object of sizes")
    try:
        sizes = {key: _positive_int(cfg, key) for key in SIZE_KEYS}
    except KeyError as e:
        raise UnknownModelError(f"model config lacks {e.args[0]!r}; the memory model needs a decoder-only "
                                "transformer config (hidden_size, num_hidden_layers, num_attention_heads, "
                                "intermediate_size, vocab_size)") from None
    hidden, heads = sizes["hidden_size"], sizes["num_attention_heads"]
    kv_heads = _positive_int(cfg, "num_key_value_heads") if cfg.get("num_key_value_heads") else heads
    head_dim = _positive_int(cfg, "head_dim") if cfg.get("head_dim") else hidden // heads
    if head_dim < 1:
        raise UnknownModelError(f"model config: hidden_size={hidden} is smaller than num_attention_heads={heads}")
    return Architecture(
        num_layers=sizes["num_hidden_layers"], hidden_size=hidden, intermediate_size=sizes["intermediate_size"],
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim, vocab_size=sizes["vocab_size"],
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        qkv_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")))


SIZE_KEYS = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size")


def _positive_int(cfg: dict, key: str) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise UnknownModelError(f"model config has {key}={value!r}; it must be a positive whole number "
                                "(is this the config.json of a decoder-only transformer?)")
    return int(value)


def _read_config_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UnknownModelError(f"{path} is not valid JSON ({e}); re-download the model's config.json") from None


def _registry_hub_id(name: str) -> Optional[str]:
    """The lead's registry (gcpo_lite.models) maps short names to hub ids; optional here."""
    try:
        from gcpo_lite import models
    except Exception:  # models.py missing or its heavy imports unavailable: fall back to our table
        return None
    entry = getattr(models, "REGISTRY", {}).get(name.lower())
    return getattr(entry, "hub_id", None)


def resolve(name: Optional[str]) -> Architecture:
    """Architecture for a registry short name, hub id, local path or the embedded tiny model (None)."""
    if name is None or name == "embedded-tiny-qwen2":
        return tiny_architecture()
    key = name.strip()
    if key.lower() in KNOWN:
        return KNOWN[key.lower()][1]
    if key.lower() in _BY_HUB_ID:
        return _BY_HUB_ID[key.lower()]
    hub = _registry_hub_id(key)
    if hub and hub.lower() in _BY_HUB_ID:
        return _BY_HUB_ID[hub.lower()]
    path = Path(key).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return from_hf_config(_read_config_json(path / "config.json"))
    if path.is_file() and path.suffix == ".json":
        return from_hf_config(_read_config_json(path))
    if path.is_dir():
        raise UnknownModelError(f"model directory {name!r} has no config.json; pass the folder that holds the "
                                "model's config.json (what save_pretrained writes), or a registry name")
    try:  # a hub id already in the local transformers cache; never goes online
        from transformers import AutoConfig
        return from_hf_config(AutoConfig.from_pretrained(hub or key, local_files_only=True).to_dict())
    except Exception:
        pass
    raise UnknownModelError(
        f"no architecture numbers for model {name!r}: it is not a registry name ({', '.join(KNOWN)}), "
        "not a local directory with config.json, and not in the local Hugging Face cache. "
        "Pass a registry name, or a path to the model directory / its config.json")


def tiny_architecture() -> Architecture:
    """The embedded tiny test model (model.name = None): its cached config.json, else gcpo_lite.models'
    EMBEDDED_ARCH with a small vocabulary."""
    try:
        from gcpo_lite import models
        path = models.embedded_model_dir() / "config.json"
        if path.is_file():
            return from_hf_config(json.loads(path.read_text()))
        return from_hf_config({"vocab_size": 64, "model_type": "qwen2", **models.EMBEDDED_ARCH})
    except Exception:  # models.py unavailable: the same shape, hardcoded
        return Architecture(num_layers=2, hidden_size=64, intermediate_size=256, num_heads=4, num_kv_heads=2,
                            head_dim=16, vocab_size=64, tie_word_embeddings=True, qkv_bias=True)
