"""The models gcpo-lite knows by short name: one table of hub ids, prompt family and architecture numbers.

`--model` resolves through it (models.py) and `gcpo-lite plan` reads its numbers offline
(memory/architectures.py). The numbers are each model's public config.json fields the memory model
needs. Also the embedded tiny model's name, shape and cache location. No torch here: `plan` stays fast.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from gcpo_lite.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    hub_ids: tuple[str, ...]  # the first is what --model loads; the others share its architecture
    family: str  # qwen2 | llama | r1_distill: how prompts and gold solutions are formatted
    note: str
    config: dict = field(default_factory=dict)  # config.json numbers for the memory model

    @property
    def hub_id(self) -> str:
        return self.hub_ids[0]


def _qwen2(
    layers: int, hidden: int, inter: int, heads: int, kv: int, vocab: int = 151936, tie: bool = True
) -> dict:
    return {
        "model_type": "qwen2",
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "vocab_size": vocab,
        "tie_word_embeddings": tie,
        "attention_bias": True,
    }


def _llama(
    layers: int, hidden: int, inter: int, heads: int, kv: int, head_dim: int, vocab: int = 128256
) -> dict:
    return {
        "model_type": "llama",
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": head_dim,
        "vocab_size": vocab,
        "tie_word_embeddings": True,
        "attention_bias": False,
    }


REGISTRY: dict[str, ModelEntry] = {
    "qwen2.5-0.5b": ModelEntry(
        ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B"),
        "qwen2",
        "0.5B instruct",
        _qwen2(24, 896, 4864, 14, 2),
    ),
    "qwen2.5-1.5b": ModelEntry(
        ("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B"),
        "qwen2",
        "1.5B instruct, the 8 GB GPU default",
        _qwen2(28, 1536, 8960, 12, 2),
    ),
    "qwen2.5-3b": ModelEntry(
        ("Qwen/Qwen2.5-3B-Instruct", "Qwen/Qwen2.5-3B"),
        "qwen2",
        "3B instruct",
        _qwen2(36, 2048, 11008, 16, 2),
    ),
    "qwen2.5-7b": ModelEntry(
        ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B"),
        "qwen2",
        "7B instruct",
        _qwen2(28, 3584, 18944, 28, 4, vocab=152064, tie=False),
    ),
    "qwen2.5-math-1.5b": ModelEntry(
        ("Qwen/Qwen2.5-Math-1.5B-Instruct", "Qwen/Qwen2.5-Math-1.5B"),
        "qwen2",
        "math-tuned 1.5B instruct",
        _qwen2(28, 1536, 8960, 12, 2),
    ),
    "deepseek-r1-distill-qwen-1.5b": ModelEntry(
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",),
        "r1_distill",
        "R1 reasoning traces distilled into Qwen2.5-Math-1.5B",
        _qwen2(28, 1536, 8960, 12, 2, tie=False),
    ),
    "llama-3.2-1b": ModelEntry(
        ("meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-1B"),
        "llama",
        "1B instruct (gated on the Hub)",
        _llama(16, 2048, 8192, 32, 8, 64),
    ),
    "llama-3.2-3b": ModelEntry(
        ("meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-3.2-3B"),
        "llama",
        "3B instruct (gated on the Hub)",
        _llama(28, 3072, 8192, 24, 8, 128),
    ),
}
BY_HUB_ID: dict[str, str] = {hub.lower(): name for name, e in REGISTRY.items() for hub in e.hub_ids}

# ---------------------------------------------------------------- the embedded tiny model

EMBEDDED_NAME = "embedded-tiny-qwen2"
EMBEDDED_VERSION = "v4"  # bump when the embedded architecture or tokenizer changes
EMBEDDED_ARCH = dict(
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    tie_word_embeddings=False,
)


def cache_root() -> Path:
    return Path(os.environ.get("GCPO_LITE_CACHE", Path.home() / ".cache" / "gcpo-lite"))


def embedded_model_dir() -> Path:
    return cache_root() / f"{EMBEDDED_NAME}-{EMBEDDED_VERSION}"


# The demo's base: the random embedded model briefly fine-tuned on the built-in task (embedded_base.py).
EMBEDDED_BASE_NAME = "embedded-tiny-qwen2-addition"
EMBEDDED_BASE_VERSION = "b1"  # bump when embedded_base.py's recipe changes


def embedded_base_dir() -> Path:
    return cache_root() / f"{EMBEDDED_BASE_NAME}-{EMBEDDED_VERSION}-{EMBEDDED_BASE_VERSION}"


MAX_SIZE = 2**24  # a layer count, width or vocabulary above ~16.7M is a typo, not a model
SIZE_KEYS = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size")


def positive_size(cfg: dict, key: str, error: type = ConfigError) -> int:
    """cfg[key] (a config.json's architecture number) as an int; `error` when it is not a positive whole
    number, or is beyond any real model (a typo that would otherwise fail deep inside transformers)."""
    value = cfg[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer()))
        or value < 1
    ):
        raise error(
            f"model config has {key}={value!r}; it must be a positive whole number "
            "(is this the config.json of a decoder-only transformer?)"
        )
    if value > MAX_SIZE:
        raise error(
            f"model config has {key}={value!r}, above {MAX_SIZE} (no real model is that large); "
            "fix or re-download the model's config.json"
        )
    return int(value)
