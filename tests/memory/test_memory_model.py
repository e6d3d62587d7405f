"""Memory model against exact counts: formulas, real bnb/peft tensors, autograd's saved tensors."""

from __future__ import annotations

import pytest
import torch

from gcpo_lite.memory import model as mm
from gcpo_lite.memory.architectures import from_hf_config, registry_architectures

KNOWN = registry_architectures()

TINY = dict(
    model_type="qwen2",
    hidden_size=128,
    intermediate_size=352,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=512,
    tie_word_embeddings=True,
)


def test_registry_parameter_counts_match_published_sizes():
    published_b = {
        "qwen2.5-0.5b": 0.494,
        "qwen2.5-1.5b": 1.544,
        "qwen2.5-3b": 3.086,
        "qwen2.5-7b": 7.616,
        "deepseek-r1-distill-qwen-1.5b": 1.777,
        "llama-3.2-1b": 1.236,
        "llama-3.2-3b": 3.213,
    }
    for name, billions in published_b.items():
        assert KNOWN[name].num_params() / 1e9 == pytest.approx(billions, abs=0.002), name


def test_kv_cache_formula():
    arch = KNOWN["qwen2.5-1.5b"]
    shape = mm.RunShape(prompt_tokens=256, completion_tokens=512, compute_dtype="bfloat16")
    # layers x 2 x kv_heads x head_dim x tokens x bytes
    assert mm.kv_cache_bytes(arch, shape, 8) == 28 * 2 * 2 * 128 * (768 * 8) * 2


def test_lora_and_optimizer_state():
    arch = KNOWN["qwen2.5-1.5b"]
    shape = mm.RunShape(lora_r=16)
    per_layer = 16 * ((1536 + 1536) * 2 + (1536 + 256) * 2 + (1536 + 8960) * 3)
    s = mm.lora_state_bytes(arch, shape)
    assert s["lora_params"] == 4 * 28 * per_layer
    assert s["optimizer_state"] == 2 * s["lora_params"]
    paged = mm.lora_state_bytes(arch, mm.with_changes(shape, optimizer="paged_adamw_8bit"))["optimizer_state"]
    assert paged < s["optimizer_state"] / 3.5


def test_estimate_is_monotone_in_each_size():
    arch, shape = KNOWN["qwen2.5-1.5b"], mm.RunShape(prompt_tokens=256, completion_tokens=512)
    base = mm.estimate(arch, shape, 4, 4, 256)
    assert mm.estimate(arch, shape, 8, 4, 256).phase_totals["generation"] > base.phase_totals["generation"]
    assert mm.estimate(arch, shape, 4, 8, 256).phase_totals["training"] > base.phase_totals["training"]
    assert mm.estimate(arch, shape, 4, 4, 512).phase_totals["training"] >= base.phase_totals["training"]
    assert base.peak_bytes == (
        base.components["runtime"]
        + base.phase_totals["static"]
        + max(base.phase_totals["generation"], base.phase_totals["training"])
        + base.components["allocator_overhead"]
    )


def _tiny_model_dir(path, layers=2):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = {k: v for k, v in TINY.items() if k != "model_type"}
    Qwen2ForCausalLM(Qwen2Config(**{**cfg, "num_hidden_layers": layers})).save_pretrained(path)
    return str(path)


def _load(path, dtype, r=8):
    from gcpo_lite.config import LoraConfig, ModelConfig
    from gcpo_lite.models.loading import add_lora, load_base_model

    base = load_base_model(path, ModelConfig(quantize=True, compute_dtype=dtype), torch.device("cpu"))
    return base, add_lora(base, LoraConfig(r=r), gradient_checkpointing=False)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {L: _tiny_model_dir(root / f"l{L}", L) for L in (1, 2)}


def test_weight_and_lora_bytes_match_real_tensors(tiny_dirs):
    base, model = _load(tiny_dirs[2], "float32")
    held = 0
    for p in base.parameters():
        if p.requires_grad:
            continue
        held += p.numel() * p.element_size()
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            held += qs.absmax.numel() * qs.absmax.element_size() + qs.code.numel() * 4
            if qs.state2 is not None:
                held += qs.state2.absmax.numel() * 4 + qs.state2.code.numel() * 4
    arch, shape = from_hf_config(TINY), mm.RunShape(compute_dtype="float32", lora_r=8)
    w = mm.weight_bytes(arch, shape)
    assert w["weights_4bit"] + w["weights_unquantized"] == pytest.approx(held, rel=0.01)
    lora = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    assert mm.lora_state_bytes(arch, shape)["lora_params"] == lora


def _saved_bytes(path, dtype, B, T) -> int:
    """Bytes of the tensors autograd saves in a training forward of the decoder (storage-deduplicated)."""
    from gcpo_lite.models.loading import decoder_and_head

    _, model = _load(path, dtype)
    decoder, _ = decoder_and_head(model)
    model.train()
    ids = torch.randint(0, 500, (B, T), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, :3] = 0  # left padding, as in training rows
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        decoder(input_ids=ids, attention_mask=mask, use_cache=False)
    return sum(seen.values())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_layer_activations_match_autograd_saved_tensors(tiny_dirs, dtype):
    """One more decoder layer saves exactly what layer_activation_bytes_per_token counts."""
    B, T = 2, 48
    one_layer = _saved_bytes(tiny_dirs[2], dtype, B, T) - _saved_bytes(tiny_dirs[1], dtype, B, T)
    shape = mm.RunShape(prompt_tokens=T, completion_tokens=0, lora_r=8, compute_dtype=dtype)
    assert one_layer == B * T * mm.layer_activation_bytes_per_token(from_hf_config(TINY), shape)


def test_logprob_chunk_bytes_per_backend():
    """Bytes per logit of one chunk, as measured by benchmarks/calibrate_memory.py."""
    arch = KNOWN["qwen2.5-1.5b"]
    V, H = arch.vocab_size, arch.hidden_size
    for dtype, native, reference in (("float32", 4, 8), ("bfloat16", 2, 12)):
        shape = mm.RunShape(completion_tokens=512, compute_dtype=dtype)
        rest = 512 * (H * shape.bytes + 8)  # hidden-state grad + lse / log-prob rows
        for backend, per_logit in (("native", native), ("reference", reference)):
            s = mm.with_changes(shape, logprob_backend=backend)
            assert mm.logits_bytes(arch, s, 1, 256) == 256 * V * per_logit + rest
            assert mm.logits_bytes(arch, s, 1, 4096) == 512 * V * per_logit + rest  # a chunk never exceeds N
