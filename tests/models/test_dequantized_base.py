"""The resident dequantized base (gcpo_lite/dequantized_base.py): the same log-probs and LoRA gradients as
bitsandbytes' on-the-fly dequantization, attach/detach round trips, and the planner's choice of layers."""

from __future__ import annotations

import pytest
import torch

from gcpo_lite.config import from_dict
from gcpo_lite.data.collate import pad_batch
from gcpo_lite.demo.embedded_model import prepare_model
from gcpo_lite.memory import model as mm
from gcpo_lite.memory.architectures import resolve
from gcpo_lite.memory.planner import DEQUANT_BUDGET_FRACTION, plan_run
from gcpo_lite.models import dequantized_base
from gcpo_lite.models.loading import load_policy
from gcpo_lite.policy.logprobs import completion_logprobs

GiB = 2**30


@pytest.fixture(scope="module")
def policy(embedded_model_dir):
    cfg = from_dict({"model": {"name": str(embedded_model_dir), "gradient_checkpointing": False}})
    torch.manual_seed(0)
    model, tok = load_policy(cfg, prepare_model(cfg.model.name), torch.device("cpu"))
    for name, p in model.named_parameters():  # nonzero LoRA B, so the adapters take part in the check
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return model


def _rows(vocab: int):
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(1, vocab, (n,), generator=g).tolist() for n in (7, 12, 3)]
    completions = [torch.randint(1, vocab, (n,), generator=g).tolist() for n in (5, 9, 1)]
    return pad_batch(prompts, completions, pad_id=0, device="cpu")


def _logps_and_grads(model):
    model.zero_grad(set_to_none=True)
    lp = completion_logprobs(
        model, _rows(model.config.vocab_size), temperature=0.7, suppress_ids=None, chunk_size=16
    )
    lp.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return lp.detach(), grads


def test_same_logprobs_and_gradients_as_on_the_fly(policy):
    lp_ref, g_ref = _logps_and_grads(policy)
    layers = len(dequantized_base.decoder_layers(policy))
    held = dequantized_base.attach(policy, layers, torch.float32)
    try:
        assert held > 0 and dequantized_base.attached_layers(policy) == layers
        lp, g = _logps_and_grads(policy)
    finally:
        assert dequantized_base.detach(policy) == held
    assert dequantized_base.attached_layers(policy) == 0
    torch.testing.assert_close(lp, lp_ref, atol=1e-6, rtol=1e-6)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], atol=1e-6, rtol=1e-5, msg=name)
    lp_after, _ = _logps_and_grads(policy)  # detached: bitsandbytes' own path again
    torch.testing.assert_close(lp_after, lp_ref, atol=0, rtol=0)


def test_partial_attach_counts_bytes(policy):
    layers = dequantized_base.decoder_layers(policy)
    held = dequantized_base.attach(policy, 1, torch.float32)
    try:
        expected = sum(
            m.weight.quant_state.shape.numel() * 4 for m in dequantized_base._linear4bit_modules(layers[0])
        )
        assert held == expected and dequantized_base.attached_layers(policy) == 1
    finally:
        dequantized_base.detach(policy)


def test_planner_spends_only_spare_memory_on_the_copy():
    arch = resolve("qwen2.5-1.5b")
    shape = mm.RunShape(prompt_tokens=256, completion_tokens=256, device="cuda")
    kw = dict(batch_size=8, num_generations=8)
    plain = plan_run(arch, shape, budget_bytes=8 * GiB, **kw)
    spent = plan_run(arch, shape, budget_bytes=8 * GiB, dequantized_base=True, **kw)
    # the same batch sizes: the copy never costs a smaller batch
    assert (spent.generation_batch_size, spent.micro_batch_size) == (
        plain.generation_batch_size,
        plain.micro_batch_size,
    )
    assert 0 < spent.dequantized_layers < arch.num_layers
    assert spent.predicted_peak_bytes <= DEQUANT_BUDGET_FRACTION * 8 * GiB
    per_layer = sum(i * o for i, o in arch.linear_shapes().values()) * 2  # bf16
    assert spent.components["weights_dequantized"] == spent.dequantized_layers * per_layer
    assert plain.dequantized_layers == 0 and plain.components["weights_dequantized"] == 0
    # one more layer would cross the line
    more = mm.estimate(
        arch,
        mm.with_changes(shape, dequantized_layers=spent.dequantized_layers + 1),
        spent.generation_batch_size,
        spent.micro_batch_size,
        spent.logits_chunk_size,
    )
    assert more.peak_bytes > DEQUANT_BUDGET_FRACTION * 8 * GiB
    # plenty of memory: every layer; an unquantized base: none
    assert (
        plan_run(arch, shape, budget_bytes=64 * GiB, dequantized_base=True, **kw).dequantized_layers
        == arch.num_layers
    )
    unq = mm.with_changes(shape, quantize=False)
    assert plan_run(arch, unq, budget_bytes=64 * GiB, dequantized_base=True, **kw).dequantized_layers == 0


@pytest.mark.parametrize("train_mode", [False, True])
def test_lean_lora_forward_is_bit_identical_to_peft(policy, train_mode):
    """The clone-free LoRA forward over the dequantized copy: the same outputs and input gradients as peft's
    own forward over it, bit for bit (LoRA dropout on, in train mode, with the same random stream)."""
    layer = dequantized_base.decoder_layers(policy)[0]
    dequantized_base.attach(policy, 1, torch.float32)
    try:
        wrappers = dequantized_base._lora_wrappers(layer)
        assert wrappers and all("forward" in w.__dict__ for w in wrappers)
        for w in wrappers:
            name = w.active_adapters[0]
            saved = w.lora_dropout[name]
            w.lora_dropout[name] = torch.nn.Dropout(0.3)
            w.train(train_mode)
            try:
                x = torch.randn(3, 5, w.in_features, generator=torch.Generator().manual_seed(2))
                outs = []
                for forward in (w.forward, lambda t, w=w: type(w).forward(w, t)):
                    xi = x.clone().requires_grad_()
                    torch.manual_seed(3)
                    out = forward(xi)
                    out.square().sum().backward()
                    outs.append((out.detach(), xi.grad))
                torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
            finally:
                w.lora_dropout[name] = saved
                w.train(False)
    finally:
        dequantized_base.detach(policy)
    assert not any("forward" in m.__dict__ for m in layer.modules() if hasattr(m, "lora_A"))  # peft's again


def test_merged_lora_sampling_matches_the_unmerged_path(policy):
    """rollout.merge_lora: greedy completions are the same and their log-probs equal to fp32 rounding; the
    training forward (grad on) inside the context still runs unmerged, bit for bit; the merged weights go on
    exit."""
    from gcpo_lite.rollout.sampler import sample_completions

    layers = len(dequantized_base.decoder_layers(policy))
    dequantized_base.attach(policy, layers, torch.float32)
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(1, policy.config.vocab_size, (n,), generator=g).tolist() for n in (4, 7, 7, 2)]
    kw = dict(max_new_tokens=8, temperature=0.0, top_p=1.0, eos_ids={10**9}, pad_id=0)
    try:
        plain = sample_completions(policy, prompts, **kw)
        lp_ref, g_ref = _logps_and_grads(policy)
        with dequantized_base.merged_lora(policy) as held:
            wrappers = [w for layer in dequantized_base.decoder_layers(policy) for w in
                        dequantized_base._lora_wrappers(layer)]  # fmt: skip
            assert held > 0 and all(dequantized_base.MERGED in w.__dict__ for w in wrappers)
            merged = sample_completions(policy, prompts, **kw)
            x = torch.randn(2, wrappers[0].in_features, generator=g)
            with torch.no_grad():  # no grad: the wrapper's one matmul is on the merged weight
                w0 = wrappers[0]
                want = torch.nn.functional.linear(x, w0.__dict__[dequantized_base.MERGED], w0.base_layer.bias)
                torch.testing.assert_close(wrappers[0](x), want, atol=0, rtol=0)
            lp, grads = _logps_and_grads(policy)  # grad on: the unmerged forward
        assert not any(dequantized_base.MERGED in w.__dict__ for w in wrappers)
    finally:
        dequantized_base.detach(policy)
    assert merged.completions == plain.completions
    torch.testing.assert_close(
        torch.tensor(merged.mean_logprobs), torch.tensor(plain.mean_logprobs), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(lp, lp_ref, atol=0, rtol=0)
    for name in g_ref:
        torch.testing.assert_close(grads[name], g_ref[name], atol=0, rtol=0, msg=name)


def test_plan_counts_the_merged_copy_while_sampling():
    arch = resolve("qwen2.5-0.5b")
    shape = mm.RunShape(prompt_tokens=64, completion_tokens=64, device="cpu", compute_dtype="float32",
                        dequantized_layers=3)  # fmt: skip
    plain = mm.estimate(arch, shape, 8, 8, 64)
    merged = mm.estimate(arch, mm.with_changes(shape, merged_lora_sampling=True), 8, 8, 64)
    copy = plain.components["weights_dequantized"]
    assert copy > 0 and plain.components["weights_merged"] == 0
    assert merged.components["weights_merged"] == copy
    assert merged.phase_totals["generation"] == plain.phase_totals["generation"] + copy
    assert merged.phase_totals["training"] == plain.phase_totals["training"]


def test_a_bf16_base_samples_unmerged(policy):
    """Issue 24.4: W + s.B@A stored in bf16 rounds deltas under half an ulp of W back to W, so merged_lora
    merges only fp32 bases; the plan counts no merged copy in bf16."""
    layers = len(dequantized_base.decoder_layers(policy))
    dequantized_base.attach(policy, layers, torch.float32)
    for layer in dequantized_base.decoder_layers(policy):  # as a bf16-compute model holds them
        for m in dequantized_base._linear4bit_modules(layer):
            setattr(m, dequantized_base.ATTR, getattr(m, dequantized_base.ATTR).to(torch.bfloat16))
    try:
        with dequantized_base.merged_lora(policy) as held:
            wrappers = [w for layer in dequantized_base.decoder_layers(policy) for w in
                        dequantized_base._lora_wrappers(layer)]  # fmt: skip
            assert held == 0 and not any(dequantized_base.MERGED in w.__dict__ for w in wrappers)
    finally:
        dequantized_base.detach(policy)
    w = torch.randn(64, 64, dtype=torch.bfloat16)
    delta = w.float() * 4e-4  # a realistic |dW|/|W|: in bf16 most of it is lost
    assert (w.float().add(delta).to(torch.bfloat16) == w).float().mean() > 0.5


def test_the_plan_counts_no_merged_copy_in_bf16():
    from gcpo_lite.config import from_dict
    from gcpo_lite.memory.run_shape import shape_from_config

    cfg = from_dict({"rollout": {"merge_lora": True}})
    assert shape_from_config(cfg, "cpu", "float32").merged_lora_sampling
    assert not shape_from_config(cfg, "cuda", "bfloat16").merged_lora_sampling
