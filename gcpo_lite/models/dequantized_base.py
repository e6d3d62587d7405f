"""A resident dequantized copy of the frozen 4-bit base, for the decoder layers the memory plan has room for.

The 4-bit base never changes, yet bitsandbytes dequantizes each weight again on every matmul of every decode
step, recomputed forward and backward. Where the budget allows (memory/planner.py picks `dequantized_layers`),
each bnb `Linear4bit` of the first k decoder layers keeps its weight dequantized once, in the compute dtype
(bf16 on GPU, fp32 on CPU), and its forward becomes a plain `F.linear` on it. The values are the ones
bitsandbytes' own dequantization gives, so the outputs are the same; the 4-bit weights stay as the storage
format (adapter export, merge and the layers past k still use them).

The peft LoRA wrapper around such a projection gets a lean forward too: peft's own clones the base output on
every call (a guard for bitsandbytes' 4-bit matmul output, which a plain F.linear does not need) and goes
through its adapter-routing checks and three sub-module calls. The lean one runs the same ops in the same
order, F.linear(x, W) + lora_B(lora_A(dropout(x))) * scaling, so its values are bit-identical; anything it
does not cover (several or disabled adapters, merged weights, DoRA-style variants, extra arguments) goes
to peft's forward.

While sampling (merged_lora, rollout.merge_lora), each such LoRA projection runs one matmul on a merged
weight W + scaling * B @ A, built when the rollout starts (the adapter changes every step) and dropped when
it ends: a decode step is many small matmuls, and on the CPU each costs about as much in dispatch as in
arithmetic. Its outputs equal the unmerged sum to fp32 rounding (not bit for bit), and only sampling uses
it: the training forward, with its gradients, never does.

Shapes: a projection's weight is (out_features, in_features); x is (..., in_features).
"""

from __future__ import annotations

import contextlib
import types

import torch
import torch.nn.functional as F

ATTR = "_gcpo_dequantized"  # the dequantized (out, in) weight on a Linear4bit
MERGED = "_gcpo_merged"  # W + scaling * B @ A (out, in) on a LoRA wrapper, while sampling


def _dequantized_forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Linear4bit.forward with the resident weight (or `weight`): compute in its dtype, return in x's (as
    bitsandbytes)."""
    weight = getattr(self, ATTR) if weight is None else weight
    bias = None if self.bias is None else self.bias.to(weight.dtype)
    return F.linear(x.to(weight.dtype), weight, bias).to(x.dtype)


def _plain(self) -> bool:
    """One active vanilla LoRA adapter, not disabled, not merged into the 4-bit weight: what the lean forward
    and the sampling merge cover."""
    active = self.active_adapters
    variants = getattr(self, "lora_variant", {})
    return not self.disable_adapters and not self.merged and len(active) == 1 and active[0] not in variants


def _lean_lora_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """peft LoRA Linear4bit.forward over a dequantized base, without the clone: result (..., out)."""
    if args or kwargs or not _plain(self):
        return type(self).forward(self, x, *args, **kwargs)
    merged = self.__dict__.get(MERGED)
    if merged is not None and not torch.is_grad_enabled():  # sampling: one matmul (merged_lora)
        return _dequantized_forward(self.base_layer, x, merged)
    name = self.active_adapters[0]
    result = _dequantized_forward(self.base_layer, x)
    lora_a = self.lora_A[name].weight  # (r, in)
    if not torch.is_autocast_enabled():
        x = x.to(lora_a.dtype)
    lora_b = self.lora_B[name]  # (out, r), a bias with peft's lora_bias
    update = F.linear(F.linear(self.lora_dropout[name](x), lora_a), lora_b.weight, lora_b.bias)  # (..., out)
    update = update * self.scaling[name]
    return result + update.to(result.dtype)


def _lora_wrappers(layer) -> list:
    """peft LoRA layers (they have a base_layer and lora_A) in `layer` whose base has a dequantized copy."""
    return [
        m for m in layer.modules() if hasattr(m, "lora_A") and hasattr(getattr(m, "base_layer", None), ATTR)
    ]


def _linear4bit_modules(layer) -> list:
    import bitsandbytes as bnb

    return [m for m in layer.modules() if isinstance(m, bnb.nn.Linear4bit)]


def decoder_layers(model) -> list:
    """The decoder's layer modules, in order (peft-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return list(base.get_decoder().layers)


@torch.no_grad()
def attach(model, num_layers: int, dtype: torch.dtype) -> int:
    """Keep a dequantized weight for every 4-bit projection of the first num_layers decoder layers, in the
    layer's compute dtype (`dtype` where it has none set); returns the bytes now held. Layers already
    attached are kept as they are."""
    import bitsandbytes.functional as bnbf

    held = 0
    for layer in decoder_layers(model)[:num_layers]:
        for m in _linear4bit_modules(layer):
            if not hasattr(m, ATTR):
                w = m.weight
                as_dtype = m.compute_dtype or dtype  # bitsandbytes computes in the layer's compute dtype
                setattr(m, ATTR, bnbf.dequantize_4bit(w.data, w.quant_state).to(as_dtype))
                m.forward = types.MethodType(_dequantized_forward, m)
            held += getattr(m, ATTR).numel() * getattr(m, ATTR).element_size()
        for wrapper in _lora_wrappers(layer):
            if "forward" not in wrapper.__dict__:
                wrapper.forward = types.MethodType(_lean_lora_forward, wrapper)
    return held


def detach(model, keep: int = 0) -> int:
    """Drop the dequantized copies of every layer past the first `keep` (back to on-the-fly dequantization);
    returns the bytes released."""
    released = 0
    for layer in decoder_layers(model)[keep:]:
        for wrapper in _lora_wrappers(layer):
            wrapper.__dict__.pop("forward", None)  # peft's own forward again
            wrapper.__dict__.pop(MERGED, None)
        for m in _linear4bit_modules(layer):
            if hasattr(m, ATTR):
                released += getattr(m, ATTR).numel() * getattr(m, ATTR).element_size()
                delattr(m, ATTR)
                del m.forward  # the class's Linear4bit.forward again
    return released


def attached_layers(model) -> int:
    """How many leading decoder layers have their dequantized copy."""
    n = 0
    for layer in decoder_layers(model):
        mods = _linear4bit_modules(layer)
        if not mods or not all(hasattr(m, ATTR) for m in mods):
            break
        n += 1
    return n


@contextlib.contextmanager
def merged_lora(model):
    """Within: every plain LoRA wrapper over a dequantized base samples (under no_grad) with one merged weight
    W + scaling * B @ A; yields the bytes those weights hold. They are dropped on exit."""
    wrappers = [w for layer in decoder_layers(model) for w in _lora_wrappers(layer) if _plain(w)]
    # fp32 bases only: W + s.B@A stored in bf16 rounds every delta under half an ulp of W back to W (measured:
    # 91% of weights unchanged at |dW|/|W| = 4e-4), so a bf16/fp16 base samples through the unmerged path
    wrappers = [w for w in wrappers if getattr(w.base_layer, ATTR).dtype == torch.float32]
    held = 0
    try:
        with torch.no_grad():
            for w in wrappers:
                name = w.active_adapters[0]
                base = getattr(w.base_layer, ATTR)  # (out, in)
                a, b = w.lora_A[name], w.lora_B[name]  # (r, in), (out, r)
                if b.bias is not None:  # peft's lora_bias: not merged here, the lean forward adds it
                    continue
                merged = torch.addmm(
                    base, b.weight.to(base.dtype), a.weight.to(base.dtype), alpha=w.scaling[name]
                )
                w.__dict__[MERGED] = merged
                held += merged.numel() * merged.element_size()
        yield held
    finally:
        for w in wrappers:
            w.__dict__.pop(MERGED, None)
