"""Native ops (csrc/) against the PyTorch reference: forward and gradients on random inputs.

Liger-style: (dtype, atol, rtol) per comparison, odd vocab 4231 and Qwen's 151936 (few rows, so the
suite stays fast), temperature != 1, suppressed ids, rows with zero gradient, both importance-sampling
levels and every loss_type. bf16/fp16 must be at most 2x as wrong as eager low-precision PyTorch.
CUDA cases run only with a GPU and a CUDA build; the CPU build JIT-compiles once (~1 min, cached).
"""

import os
import subprocess
import sys

import pytest
import torch

from gcpo_lite.kernels import _ext, chunked, reference

if os.environ.get("GCPO_LITE_KERNELS") == "reference":
    pytest.skip("GCPO_LITE_KERNELS=reference: native kernels not under test", allow_module_level=True)
if not _ext.available():  # a broken build must fail CI, not skip it
    pytest.fail(f"native kernels unavailable: {_ext.why_unavailable()}", pytrace=False)

from gcpo_lite.kernels import ops  # noqa: E402  (needs the loaded extension)

CUDA_OK = torch.cuda.is_available() and _ext.has_cuda()
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not CUDA_OK, reason="no GPU / no CUDA build")),
]
VOCABS = [4231, 151936]
ROWS = {4231: 48, 151936: 5}  # tokens per test: the big vocab keeps N small
LP_TOL = {
    torch.float32: (2e-5, 1e-5),
    torch.bfloat16: (2e-5, 1e-5),
    torch.float16: (2e-5, 1e-5),
}  # logp vs ref
GRAD_TOL = {torch.float32: (1e-6, 1e-4), torch.bfloat16: (1e-5, 8e-3), torch.float16: (1e-6, 1e-3)}


def assert_close(actual, expected, atol, rtol, what):
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    worst = (actual - expected).abs().nan_to_num(0.0).max().item() if actual.numel() else 0.0
    torch.testing.assert_close(
        actual,
        expected,
        atol=atol,
        rtol=rtol,
        equal_nan=True,
        msg=lambda m: f"{what}: worst abs mismatch {worst:.3g}\n{m}",
    )


def make_logits(n, v, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g) * 2.5).to(dtype).to(device)  # (N, V)
    ids = torch.randint(0, v, (n,), generator=g).to(device)  # (N,)
    grad = torch.randn(n, generator=g).to(device)  # (N,) upstream gradient
    grad[1::4] = 0.0  # rows whose tokens are masked out of the loss: zero gradient
    return logits, ids, grad


def suppress_for(v, ids, device):
    ban = torch.tensor([0, 3, v // 2, v - 1], device=device)
    return ban[~torch.isin(ban, ids)]  # never ban a target (its log-prob would be -inf)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("V", VOCABS)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("suppress", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_token_logprobs_matches_reference(device, dtype, V, temperature, suppress, inplace):
    logits, ids, g = make_logits(ROWS[V], V, dtype, device)
    supp = suppress_for(V, ids, device) if suppress else None
    ref_in = logits.clone().requires_grad_()
    ref = reference.token_logprobs(ref_in, ids, temperature, supp)
    (ref * g).sum().backward()
    x = logits.clone().requires_grad_()
    out = ops.token_logprobs(x, ids, temperature, supp, inplace_backward=inplace)
    assert out.dtype == torch.float32 and out.shape == ids.shape
    assert_close(out, ref, *LP_TOL[dtype], "logp")
    (out * g).sum().backward()
    assert x.grad.dtype == dtype
    assert_close(x.grad, ref_in.grad, *GRAD_TOL[dtype], "grad logits")
    if inplace:
        assert x.grad.data_ptr() == x.data_ptr(), "in-place backward must reuse the logits buffer"
    assert (x.grad[1::4] == 0).all(), "zero-gradient rows must get zero logits gradient"
    if supp is not None:
        assert (x.grad[:, supp] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("V", VOCABS)
def test_low_precision_error_at_most_twice_eager(device, dtype, V):
    """|native(x_lp) - exact| <= 2 |eager_lp(x_lp) - exact|, exact = fp32 maths on the same values."""
    logits, ids, g = make_logits(ROWS[V], V, dtype, device, seed=1)
    t = 0.8
    exact_in = logits.float().requires_grad_()
    exact = reference.token_logprobs(exact_in, ids, t)
    (exact * g).sum().backward()
    eager_in = logits.clone().requires_grad_()
    eager = torch.log_softmax(eager_in / t, dim=-1).gather(-1, ids[:, None]).squeeze(-1)
    (eager.float() * g).sum().backward()
    x = logits.clone().requires_grad_()
    out = ops.token_logprobs(x, ids, t)
    (out * g).sum().backward()
    err = lambda a, b: (a.double() - b.double()).abs().max().item()  # noqa: E731
    assert err(out, exact) <= 2 * err(eager, exact) + 1e-6
    assert err(x.grad, exact_in.grad) <= 2 * err(eager_in.grad, exact_in.grad) + 1e-9


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("V", VOCABS)
@pytest.mark.parametrize("temperature,suppress,chunk", [(1.0, False, None), (0.7, True, 2), (1.3, False, 3)])
def test_from_hidden_matches_reference(device, dtype, V, temperature, suppress, chunk):
    n, H = ROWS[V] + 2, 24
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(n, H, generator=gen).to(dtype).to(device)
    weight = (torch.randn(V, H, generator=gen) * 0.3).to(dtype).to(device)
    ids = torch.randint(0, V, (n,), generator=gen).to(device)
    g = torch.randn(n, generator=gen).to(device)
    g[::3] = 0.0
    supp = suppress_for(V, ids, device) if suppress else None
    results = {}
    for name, fn in [
        ("reference", reference.token_logprobs_from_hidden),
        ("chunked", chunked.token_logprobs_from_hidden),
        ("native", ops.token_logprobs_from_hidden),
    ]:
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_(chunk == 2)
        out = fn(h, w, ids, temperature, chunk, supp)
        (out * g).sum().backward()
        results[name] = (out, h.grad, w.grad)
    ref_out, ref_gh, ref_gw = results["reference"]
    atol, rtol = (
        (2e-5, 1e-5) if dtype == torch.float32 else (1e-2, 1e-2)
    )  # bf16: matmul chunking changes rounding
    for name in ("chunked", "native"):
        out, gh, gw = results[name]
        assert out.dtype == torch.float32
        assert_close(out, ref_out, atol, rtol, f"{name} logp")
        assert_close(
            gh, ref_gh, *((1e-5, 1e-4) if dtype == torch.float32 else (2e-2, 2e-2)), f"{name} grad hidden"
        )
        if ref_gw is not None:
            assert_close(
                gw, ref_gw, *((1e-5, 1e-4) if dtype == torch.float32 else (2e-2, 2e-2)), f"{name} grad W"
            )


def loss_inputs(B, T, device, seed=3, dtype=torch.float32, spread=0.3):
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=gen, dtype=torch.float64) * 3
    lp = (
        old + torch.randn(B, T, generator=gen, dtype=torch.float64) * spread
    )  # ratios on both sides of the clip
    ref = old + torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.2
    adv = torch.randn(B, generator=gen, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[1] = 0  # a fully masked completion
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return [t.to(dtype).to(device) for t in (lp, old, ref, adv)] + [mask.to(device)]


LOSS_CASES = [
    (lvl, lt, beta) for lvl in reference.IS_LEVELS for lt in reference.LOSS_TYPES for beta in (0.0, 0.04)
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("level,loss_type,beta", LOSS_CASES)
def test_loss_matches_reference(device, level, loss_type, beta):
    lp, old, ref_lp, adv, mask = loss_inputs(6, 9, device)
    kw = dict(
        ref_per_token_logps=ref_lp,
        importance_sampling_level=level,
        epsilon_low=0.2,
        epsilon_high=0.28,
        beta=beta,
        loss_type=loss_type,
        max_completion_length=12,
    )
    a, b = lp.clone().requires_grad_(), lp.clone().requires_grad_()
    ref_loss, ref_m = reference.gcpo_loss(a, old, adv, mask, **kw)
    ref_loss.backward()
    loss, m = ops.gcpo_loss(b, old, adv, mask, **kw)
    loss.backward()
    assert_close(loss, ref_loss, 1e-6, 1e-5, "loss")
    assert_close(b.grad, a.grad, 1e-7, 1e-5, "grad logps")
    assert (b.grad[1] == 0).all(), "fully masked completion gets no gradient"
    for k, v in ref_m.items():
        assert_close(m[k], v, 1e-6, 1e-5, f"metric {k}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("level", reference.IS_LEVELS)
def test_fused_logits_to_loss_gradient(device, inplace, level):
    """token_logprobs -> gcpo_loss at Qwen's vocab: one vocab pass in backward, equal to the reference."""
    B, T, V = 2, 3, 151936
    logits, ids, _ = make_logits(B * T, V, torch.float32, device, seed=4)
    _, old, ref_lp, adv, mask = loss_inputs(B, T, device, seed=5)
    kw = dict(
        ref_per_token_logps=ref_lp,
        importance_sampling_level=level,
        epsilon_low=0.2,
        epsilon_high=0.28,
        beta=0.04,
        loss_type="token_mean",
        max_completion_length=T,
    )
    x_ref, x = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ref_loss, _ = reference.gcpo_loss(
        reference.token_logprobs(x_ref, ids, 0.9).view(B, T), old, adv, mask, **kw
    )
    ref_loss.backward()
    loss, _ = ops.gcpo_loss(
        ops.token_logprobs(x, ids, 0.9, inplace_backward=inplace).view(B, T), old, adv, mask, **kw
    )
    loss.backward()
    assert_close(loss, ref_loss, 1e-6, 1e-5, "loss")
    assert_close(x.grad, x_ref.grad, 1e-8, 1e-4, "grad logits")


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(4, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    ids, supp = torch.tensor([0, 6, 2, 2]), torch.tensor([4])
    assert torch.autograd.gradcheck(lambda x: ops.token_logprobs(x, ids, 0.7, supp), (logits,))
    hidden = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    hid_ids = torch.tensor([1, 8, 0, 5, 5])
    assert torch.autograd.gradcheck(
        lambda h, w: ops.token_logprobs_from_hidden(h, w, hid_ids, 1.3, 2, supp), (hidden, weight)
    )
    for level in reference.IS_LEVELS:
        for loss_type in reference.LOSS_TYPES:
            lp, old, ref_lp, adv, mask = loss_inputs(3, 4, "cpu", seed=7, dtype=torch.float64, spread=0.05)
            lp.requires_grad_()
            kw = dict(
                ref_per_token_logps=ref_lp,
                importance_sampling_level=level,
                epsilon_low=0.2,
                epsilon_high=0.3,
                beta=0.1,
                loss_type=loss_type,
                max_completion_length=5,
            )
            assert torch.autograd.gradcheck(
                lambda x, old=old, adv=adv, mask=mask, kw=kw: ops.gcpo_loss(x, old, adv, mask, **kw)[0], (lp,)
            )


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    gen = torch.Generator().manual_seed(8)
    op = torch.ops.gcpo_lite
    logits = torch.randn(5, 33, generator=gen).to(device).requires_grad_()
    ids = torch.randint(0, 33, (5,), generator=gen).to(device)
    supp = torch.tensor([2, 7], device=device)
    logp, lse = op.token_logprobs_fwd(logits, ids, 0.9, supp)
    g = torch.randn(5, generator=gen).to(device)
    hidden = torch.randn(6, 4, generator=gen).to(device).requires_grad_()
    weight = torch.randn(33, 4, generator=gen).to(device)
    hid_ids = torch.randint(0, 33, (6,), generator=gen).to(device)
    _, hlse = op.logprobs_from_hidden_fwd(hidden, weight, hid_ids, 1.0, 4, None)
    lp, old, ref_lp, adv, mask = loss_inputs(3, 4, device)
    cases = [
        (op.token_logprobs_fwd, (logits, ids, 0.9, supp)),
        (op.token_logprobs_fwd, (logits, ids, 1.0, None)),
        (op.token_logprobs_bwd, (g, logits.detach(), ids, lse.detach(), 0.9, supp)),
        (op.token_logprobs_bwd_, (g, logits.detach().clone(), ids, lse.detach(), 0.9, supp)),
        (op.logprobs_from_hidden_fwd, (hidden, weight, hid_ids, 1.0, 4, None)),
        (
            op.logprobs_from_hidden_bwd,
            (
                torch.randn(6, device=device),
                hidden.detach(),
                weight,
                hid_ids,
                hlse.detach(),
                1.0,
                4,
                None,
                True,
            ),
        ),
        (op.gcpo_loss_fwd, (lp.requires_grad_(), old, ref_lp, adv, mask, 0, 0.2, 0.28, 0.04, 0, 0)),
        (op.gcpo_loss_fwd, (lp, old, None, adv, mask, 1, 0.2, 0.28, 0.0, 2, 7)),
    ]
    for fn, args in cases:
        torch.library.opcheck(fn, args)


def test_torch_compile_traces_the_ops():
    logits, ids, _ = make_logits(6, 301, torch.float32, "cpu", seed=9)
    _, old, _, adv, mask = loss_inputs(2, 3, "cpu", seed=10)

    def f(x):
        lp = ops.token_logprobs(x, ids, 0.9).view(2, 3)
        return ops.gcpo_loss(lp, old, adv, mask, epsilon_low=0.2, epsilon_high=0.28)[0]

    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    f(x1).backward()
    torch.compile(f, backend="aot_eager", fullgraph=True)(x2).backward()
    assert_close(x2.grad, x1.grad, 1e-7, 1e-5, "compiled grad")


def test_errors_name_the_problem():
    x = torch.randn(3, 10)
    with pytest.raises(RuntimeError, match="outside the vocab"):
        ops.token_logprobs(x, torch.tensor([0, 1, 10]))
    with pytest.raises(RuntimeError, match="temperature must be > 0"):
        ops.token_logprobs(x, torch.tensor([0, 1, 2]), 0.0)
    with pytest.raises(RuntimeError, match="suppress_ids: id 12"):
        ops.token_logprobs(x, torch.tensor([0, 1, 2]), 1.0, torch.tensor([12]))
    with pytest.raises(RuntimeError, match="cast one of them"):
        ops.token_logprobs_from_hidden(
            torch.randn(3, 4), torch.randn(10, 4, dtype=torch.bfloat16), torch.tensor([0, 1, 2])
        )
    with pytest.raises(ValueError, match="max_completion_length"):
        ops.gcpo_loss(
            torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1), torch.ones(1, 2), loss_type="dr_grpo"
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_rows_with_minus_inf_entries(device, dtype):
    """Masked or padded vocab entries at -inf (whole stretches of a thread's share on CUDA, issue 15) give the
    reference's log-probs and gradients, never NaN."""
    V = 2053
    logits, ids, grad = make_logits(6, V, dtype, device)
    logits[0, : V // 2] = float("-inf")  # a leading run: the first threads see only -inf
    logits[1, ::2] = float("-inf")  # interleaved
    logits[2, 1:] = float("-inf")  # a single finite entry
    logits[3, V - 64 :] = float("-inf")  # a padded vocab tail
    ids[0], ids[1], ids[2], ids[3] = V - 1, 1, 0, 5
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    lp = ops.token_logprobs(x1, ids, 0.8)
    want = reference.token_logprobs(x2, ids, 0.8)
    assert torch.isfinite(lp).all()
    assert_close(lp, want, *LP_TOL[dtype], "logp with -inf entries")
    (lp * grad).sum().backward()
    (want * grad).sum().backward()
    assert not torch.isnan(x1.grad).any()
    assert_close(x1.grad, x2.grad, *GRAD_TOL[dtype], "grad with -inf entries")


@pytest.mark.skipif(not CUDA_OK, reason="no GPU / no CUDA build")
@pytest.mark.parametrize("bad_id", [-100, 4231])
def test_cuda_out_of_range_id_is_a_device_assert(bad_id):
    """An id outside [0, V) stops the CUDA kernel with a device-side assertion instead of reading another row.
    A device assert ends the process's CUDA context, so it runs in a child process."""
    code = (
        "import torch; from gcpo_lite.kernels import _ext; _ext.require(); from gcpo_lite.kernels import ops\n"
        f"x = torch.randn(4, 4231, device='cuda'); ids = torch.tensor([0, 1, {bad_id}, 3], device='cuda')\n"
        "ops.token_logprobs(x, ids); torch.cuda.synchronize()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "assert" in (r.stderr + r.stdout).lower(), r.stderr[-2000:]


@pytest.mark.skipif(not CUDA_OK, reason="no GPU / no CUDA build")
def test_cuda_suppress_ids_checked_before_the_move():
    x = torch.randn(3, 10, device="cuda")
    with pytest.raises(RuntimeError, match="suppress_ids: id 12"):
        ops.token_logprobs(x, torch.tensor([0, 1, 2], device="cuda"), 1.0, torch.tensor([12]))


def test_inplace_backward_refuses_overlapping_logits():
    base = torch.randn(10)
    x = base.as_strided((3, 10), (0, 1))  # three rows on one buffer
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
        torch.ops.gcpo_lite.token_logprobs_bwd_(
            torch.ones(3), x, torch.tensor([0, 1, 2]), torch.zeros(3), 1.0, None
        )
