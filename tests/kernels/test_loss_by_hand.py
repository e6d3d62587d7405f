"""The reference GCPO loss against values worked out by hand, for every option."""

import math

import pytest
import torch

from gcpo_lite.kernels import gcpo_loss, reference

LP = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])
OLD = torch.tensor([[-1.1, -2.0, -3.0], [-1.0, -1.2, 0.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
ADV = torch.tensor([1.0, -1.0])
# token ratios: row 0 (e^0.1, 1, 1), row 1 (1, e^0.2); A = (+1, -1)
R0, R1 = math.exp(0.1), math.exp(0.2)


def loss_of(**kw):
    args = dict(
        importance_sampling_level="token",
        epsilon_low=0.2,
        epsilon_high=0.28,
        beta=0.0,
        loss_type="seq_mean_token_mean",
        max_completion_length=4,
    )
    args.update(kw)
    return gcpo_loss(LP, OLD, ADV, MASK, **args)


@pytest.mark.parametrize(
    "loss_type, expected",
    [
        ("seq_mean_token_mean", (-(R0 + 2) / 3 + (1 + R1) / 2) / 2),
        ("token_mean", (-(R0 + 2) + (1 + R1)) / 5),
        ("dr_grpo", (-(R0 + 2) + (1 + R1)) / (2 * 4)),
    ],
)
def test_token_level_unclipped(loss_type, expected):
    loss, m = loss_of(loss_type=loss_type)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["clip_ratio"].item() == 0.0


def test_token_level_clipping_and_clip_metrics():
    loss, m = loss_of(epsilon_low=0.05, epsilon_high=0.05)
    # row 0 token 0: ratio 1.105 > 1.05 with A > 0 -> clipped to 1.05; row 1 token 1: A < 0, min keeps 1.2214
    expected = (-(1.05 + 2) / 3 + (1 + R1) / 2) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["clip_ratio_high"].item() == pytest.approx(1 / 5)
    assert m["clip_ratio_low"].item() == 0.0


def test_sequence_level_ratio_is_geometric_mean_and_clips():
    s0, s1 = math.exp(0.1 / 3), math.exp(0.2 / 2)
    loss, m = loss_of(importance_sampling_level="sequence", epsilon_low=3e-4, epsilon_high=4e-4)
    # s0 > 1 + 4e-4 with A > 0 -> clipped; s1 with A < 0 -> -min(-s1, -1.0004) = s1
    assert loss.item() == pytest.approx((-1.0004 + s1) / 2, rel=1e-6)
    assert m["clip_ratio_high"].item() == pytest.approx(3 / 5)
    wide, _ = loss_of(importance_sampling_level="sequence", epsilon_low=1.0, epsilon_high=1.0)
    assert wide.item() == pytest.approx((-s0 + s1) / 2, rel=1e-6)


def test_sequence_level_gradient():
    lp = LP.clone().requires_grad_(True)
    loss, _ = gcpo_loss(
        lp,
        OLD,
        ADV,
        MASK,
        importance_sampling_level="sequence",
        epsilon_low=1.0,
        epsilon_high=1.0,
        beta=0.0,
        loss_type="seq_mean_token_mean",
        max_completion_length=4,
    )
    loss.backward()
    s0, s1 = math.exp(0.1 / 3), math.exp(0.2 / 2)
    # d(-s A)/d lp_t = -A s / n_tokens, then / B
    expected = torch.tensor([[-s0 / 3 / 2] * 3, [s1 / 2 / 2, s1 / 2 / 2, 0.0]])
    assert torch.allclose(lp.grad, expected, atol=1e-6)


def test_k3_kl_term():
    ref = LP + 0.5  # delta = ref - logp = 0.5 on every token
    k3 = math.exp(0.5) - 0.5 - 1
    base, _ = loss_of()
    with_kl, m = loss_of(beta=0.1, ref_per_token_logps=ref)
    assert with_kl.item() == pytest.approx(base.item() + 0.1 * k3, abs=1e-6)
    assert m["kl"].item() == pytest.approx(k3, rel=1e-6)
    with pytest.raises(ValueError, match="ref_per_token_logps"):
        loss_of(beta=0.1)


def test_fully_masked_row_contributes_zero_but_counts():
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]])
    loss, _ = gcpo_loss(
        LP,
        OLD,
        ADV,
        mask,
        importance_sampling_level="token",
        epsilon_low=0.2,
        epsilon_high=0.28,
        beta=0.0,
        loss_type="seq_mean_token_mean",
        max_completion_length=4,
    )
    assert loss.item() == pytest.approx(-(R0 + 2) / 3 / 2, rel=1e-6)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="loss_type"):
        loss_of(loss_type="grpo")
    with pytest.raises(ValueError, match="importance_sampling_level"):
        loss_of(importance_sampling_level="seq")
    with pytest.raises(ValueError, match="max_completion_length"):
        loss_of(loss_type="dr_grpo", max_completion_length=None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_match_naive_log_softmax(dtype, temperature):
    torch.manual_seed(0)
    logits = (torch.randn(13, 4231) * 3).to(dtype)
    ids = torch.randint(0, 4231, (13,))
    got = reference.token_logprobs(logits, ids, temperature)
    naive = torch.log_softmax(logits.float() / temperature, -1).gather(-1, ids[:, None]).squeeze(-1)
    assert got.dtype == torch.float32
    assert torch.allclose(got, naive, atol=1e-5)


def test_suppressed_ids_are_excluded_from_the_softmax():
    torch.manual_seed(1)
    logits = torch.randn(5, 11)
    ids = torch.tensor([1, 2, 3, 4, 5])
    banned = torch.tensor([0, 7])
    got = reference.token_logprobs(logits, ids, 1.0, suppress_ids=banned)
    keep = torch.ones(11, dtype=torch.bool)
    keep[banned] = False
    naive = logits.gather(-1, ids[:, None]).squeeze(-1) - torch.logsumexp(logits[:, keep], -1)
    assert torch.allclose(got, naive, atol=1e-6)


def test_from_hidden_reference_equals_logits_path():
    torch.manual_seed(2)
    h, w = torch.randn(7, 16), torch.randn(50, 16)
    ids = torch.randint(0, 50, (7,))
    assert torch.allclose(
        reference.token_logprobs_from_hidden(h, w, ids, 0.9),
        reference.token_logprobs(h @ w.t(), ids, 0.9),
        atol=1e-6,
    )


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("loss_type", ["seq_mean_token_mean", "token_mean", "dr_grpo"])
def test_micro_batches_with_the_step_normalizer_add_up_to_the_whole_step(backend, loss_type):
    """The step's normalizer is an argument of the loss: split losses and gradients sum to the unsplit ones."""
    import gcpo_lite.kernels as K
    from gcpo_lite.kernels import _ext

    if backend == "native" and not _ext.available():
        pytest.skip(f"native kernels not built here: {_ext.why_unavailable()}")
    g = torch.Generator().manual_seed(0)
    B, T = 7, 5
    lp = (-torch.rand(B, T, generator=g, dtype=torch.float64)).float().requires_grad_()
    old = lp.detach() + 0.01 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    mask = (torch.rand(B, T, generator=g) > 0.3).long()
    mask[3] = 0  # a row with no token still counts as a row
    kw = dict(importance_sampling_level="token", loss_type=loss_type, max_completion_length=T)
    previous = K.requested_backend()
    K.set_backend(backend)
    try:
        whole, _ = K.gcpo_loss(lp, old, adv, mask, **kw)
        (g_whole,) = torch.autograd.grad(whole, lp)
        norm = float(mask.sum()) if loss_type == "token_mean" else float(B)
        parts = [
            K.gcpo_loss(lp[s:e], old[s:e], adv[s:e], mask[s:e], normalizer=norm, **kw)[0]
            for s, e in ((0, 3), (3, 4), (4, 7))
        ]
        (g_parts,) = torch.autograd.grad(sum(parts), lp)
    finally:
        K.set_backend(previous)
    torch.testing.assert_close(sum(parts), whole, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g_parts, g_whole, rtol=1e-5, atol=1e-7)
