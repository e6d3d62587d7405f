"""The native kernels check themselves against the PyTorch reference before they are trusted.

On the first native call in a process for each device type (cpu, cuda), kernels/__init__.py runs `check` on
that device: a few small random cases of every op, forward and backward, in float32 and bfloat16, with
padding, suppressed ids, rows with -inf entries, chunking and both ratio levels, and (CPU) an out-of-range
id. Any mismatch or error makes the backend fall back to the reference for that device, with one loud line
(GCPO_LITE_KERNELS=native keeps native and still says so). `gcpo-lite doctor` runs the same check. Well under
a second: the largest case is 37 x 1031 logits.
"""

from __future__ import annotations

from typing import Callable

import torch

from gcpo_lite.kernels import reference

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def _close(name: str, got: torch.Tensor, want: torch.Tensor, dtype) -> None:
    got, want = got.detach().float().cpu(), want.detach().float().cpu()
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {tuple(got.shape)}, reference {tuple(want.shape)}")
    if not torch.isfinite(got).all() and torch.isfinite(want).all():
        raise AssertionError(f"{name}: non-finite values where the reference has none")
    torch.testing.assert_close(got, want, **TOL[dtype], msg=lambda m: f"{name}: {m.splitlines()[0]}")


def _grad(fn: Callable, *inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """fn(*leaves) and the gradient of a fixed random projection of it w.r.t. each input."""
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(3)).to(out.device, out.dtype)
    (out * probe).sum().backward()
    return out, [x.grad for x in leaves]


def _logprob_cases(ops, device, dtype) -> None:
    g = torch.Generator().manual_seed(0)
    N, V, H = 37, 1031, 24
    logits = (torch.randn(N, V, generator=g) * 3).to(device, dtype)
    ids = torch.randint(0, V, (N,), generator=g).to(device)
    supp = torch.tensor([5, 900], device=device)
    ids[ids == 5] = 6
    ids[ids == 900] = 901
    logits[0, : V // 2] = float("-inf")  # masked or padded vocab: a leading run of -inf (issue 15's NaN)
    logits[1, ::2] = float("-inf")  # and interleaved -inf
    ids[0], ids[1] = V - 1, 1  # targets stay finite
    for temp, s in ((1.0, None), (0.7, supp)):
        got, (g_got,) = _grad(lambda x, t=temp, s=s: ops.token_logprobs(x, ids, t, s), logits)
        want, (g_want,) = _grad(lambda x, t=temp, s=s: reference.token_logprobs(x, ids, t, s), logits)
        _close(f"token_logprobs {dtype} T={temp}", got, want, dtype)
        _close(f"token_logprobs backward {dtype} T={temp}", g_got, g_want, dtype)
    hidden = torch.randn(N, H, generator=g).to(device, dtype)
    weight = (torch.randn(V, H, generator=g) / H**0.5).to(device, dtype)
    got, (gh, _) = _grad(lambda h, w: ops.token_logprobs_from_hidden(h, w, ids, 0.9, 8, supp), hidden, weight)
    want, (wh, _) = _grad(
        lambda h, w: reference.token_logprobs_from_hidden(h, w, ids, 0.9, None, supp), hidden, weight
    )
    _close(f"token_logprobs_from_hidden {dtype}", got, want, dtype)
    _close(f"token_logprobs_from_hidden backward {dtype}", gh, wh, dtype)


def _loss_cases(ops, device) -> None:
    g = torch.Generator().manual_seed(1)
    B, T = 5, 9
    lp = (-torch.rand(B, T, generator=g) * 4).to(device)
    old = lp + (torch.randn(B, T, generator=g) * 0.05).to(device)
    ref = lp + (torch.randn(B, T, generator=g) * 0.1).to(device)
    adv = torch.randn(B, generator=g).to(device)
    mask = (torch.arange(T)[None, :] < torch.tensor([9, 4, 1, 7, 0])[:, None]).float().to(device)
    cases = [
        dict(importance_sampling_level="sequence", epsilon_low=3e-4, epsilon_high=4e-4),
        dict(importance_sampling_level="token", epsilon_low=0.2, epsilon_high=0.28, loss_type="token_mean"),
        dict(
            importance_sampling_level="token",
            beta=0.04,
            ref_per_token_logps=ref,
            loss_type="dr_grpo",
            max_completion_length=T,
        ),
    ]
    for kw in cases:
        name = f"gcpo_loss {kw['importance_sampling_level']} {kw.get('loss_type', 'seq_mean_token_mean')}"
        got, (g_got,) = _grad(lambda x, kw=kw: ops.gcpo_loss(x, old, adv, mask, **kw)[0], lp)
        want, (g_want,) = _grad(lambda x, kw=kw: reference.gcpo_loss(x, old, adv, mask, **kw)[0], lp)
        _close(name, got, want, torch.float32)
        _close(name + " backward", g_got, g_want, torch.float32)


def _bad_id_case(ops, device) -> None:
    """An id outside the vocab must raise, not read another row. On CUDA that is a device-side assert, which
    would end the process's CUDA context, so it is tested in a child process there (tests/kernels/test_native.py),
    not here."""
    if device.type != "cpu":
        return
    try:
        ops.token_logprobs(torch.zeros(2, 7), torch.tensor([0, -100]))
    except RuntimeError:
        return
    raise AssertionError("token_logprobs read an out-of-range id (-100) instead of raising")


def check(ops, device: torch.device) -> str:
    """'' when every native op matches the reference on `device`, else what failed (first failure)."""
    try:
        for dtype in (torch.float32, torch.bfloat16):
            _logprob_cases(ops, device, dtype)
        _loss_cases(ops, device)
        _bad_id_case(ops, device)
    except Exception as e:  # a mismatch (AssertionError) or a kernel error: either way, not trusted
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{type(e).__name__}: {first}"[:300]
    return ""
