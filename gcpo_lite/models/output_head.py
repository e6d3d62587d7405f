"""What turns the decoder's last hidden state into the logits the model samples from.

The training log-probs are computed from `hidden @ lm_head.weight.T` by chunked kernels that never build the
full logits, so every transform a model's own forward applies after the lm_head must be known here, or the
trained distribution differs from the sampled one:

- a constant multiplier on the logits (Cohere `logit_scale`, Falcon-H1 `lm_head_multiplier`, Granite
  `logits_scaling` as a divisor) is applied exactly: logits / T = (h @ W.T) / (T / multiplier), so the kernels
  run at the effective temperature T / multiplier;
- a final-logit softcap (Gemma 2/3/4 `final_logit_softcapping`: cap * tanh(logits / cap)) and an lm_head bias
  (Phi-2) are not expressible that way: such models are refused at load time with the reason.
"""

from __future__ import annotations

from gcpo_lite.config import ConfigError

# config attribute -> how it acts on the logits ("mul": logits * v, "div": logits / v)
LOGIT_MULTIPLIERS = {"logit_scale": "mul", "lm_head_multiplier": "mul", "logits_scaling": "div"}
REFUSED = {"final_logit_softcapping": "a final-logit softcap (cap * tanh(logits / cap))"}


def _text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def check_supported(config, model_name: str = "this model") -> None:
    """Refuse a model whose logits are a transform of hidden @ W.T the training log-probs cannot reproduce."""
    cfg = _text_config(config)
    for attr, what in REFUSED.items():
        if getattr(cfg, attr, None) is not None:
            raise ConfigError(
                f"{model_name} applies {what} to its logits ({attr}={getattr(cfg, attr)}); gcpo-lite computes "
                "training log-probs from hidden @ lm_head without it, so what it trains would differ from what "
                "the model samples. Use a model without it (Qwen2.5, Llama 3, Mistral, Phi-3 ...)"
            )


def check_head(head, model_name: str = "this model") -> None:
    """Refuse an lm_head with a bias (the kernels read its weight only)."""
    if getattr(head, "bias", None) is not None:
        raise ConfigError(
            f"{model_name}'s lm_head has a bias, which gcpo-lite's log-prob kernels do not add; use a model "
            "whose lm_head is a plain projection (Qwen2.5, Llama 3, Mistral, Phi-3 ...)"
        )


def logit_multiplier(config) -> float:
    """m such that the model's logits = m * (hidden @ lm_head.weight.T); 1.0 for most models."""
    cfg = _text_config(config)
    m = 1.0
    for attr, how in LOGIT_MULTIPLIERS.items():
        v = getattr(cfg, attr, None)
        if v is not None and float(v) != 1.0:
            m = m * float(v) if how == "mul" else m / float(v)
    return m
