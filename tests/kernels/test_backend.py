"""Backend selection: auto falls back with one log line, explicit native raises with the rebuild
command, GCPO_LITE_KERNELS wins, and the trainer's loss entry point equals the reference."""

import logging

import pytest
import torch

import gcpo_lite.kernels as K
from gcpo_lite import kernels as trainer_loss  # what the trainer calls
from gcpo_lite.kernels import _ext, reference


@pytest.fixture
def restore(monkeypatch):
    saved_req, saved_state = K._requested, dict(_ext._state)
    monkeypatch.delenv("GCPO_LITE_KERNELS", raising=False)
    K._fallbacks_logged.clear()
    yield
    K._requested = saved_req
    _ext._state.clear()
    _ext._state.update(saved_state)
    K._fallbacks_logged.clear()


def _break_native(reason="simulated: compiler missing"):
    _ext._state.update(tried=True, ok=False, why=reason, cuda=False)


def test_reference_backend(restore):
    assert K.set_backend("reference") == "reference"


def test_invalid_backend_names(restore, monkeypatch):
    with pytest.raises(ValueError, match="auto"):
        K.set_backend("fast")
    monkeypatch.setenv("GCPO_LITE_KERNELS", "bogus")
    with pytest.raises(ValueError, match="GCPO_LITE_KERNELS"):
        K.set_backend("auto")


def test_env_var_wins(restore, monkeypatch):
    monkeypatch.setenv("GCPO_LITE_KERNELS", "reference")
    assert K.set_backend("native") == "reference"


def test_auto_falls_back_with_one_log_line(restore, caplog):
    _break_native()
    K.set_backend("auto")
    logits, ids = torch.randn(4, 50), torch.randint(0, 50, (4,))
    with caplog.at_level(logging.WARNING, logger="gcpo_lite.kernels"):
        for _ in range(3):
            out = K.token_logprobs(logits, ids)
            K.token_logprobs_from_hidden(torch.randn(4, 8), torch.randn(50, 8), ids)
    torch.testing.assert_close(out, reference.token_logprobs(logits, ids))
    lines = [r for r in caplog.records if "simulated" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]


def test_explicit_native_without_build_raises_with_rebuild_command(restore):
    _break_native()
    with pytest.raises(RuntimeError, match="gcpo-lite build-ext"):
        K.set_backend("native")


def test_status_and_build_report(restore):
    s = K.status()
    assert {"requested", "live", "native_loaded", "why_not_native", "build_dir"} <= set(s)
    _break_native("simulated: no compiler")
    assert "NOT available" in _ext.build(verbose=False) and "simulated" in _ext.build(verbose=False)
    assert K.status()["why_not_native"] == "simulated: no compiler"


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("level", reference.IS_LEVELS)
def test_trainer_loss_equals_reference(restore, backend, level):
    """gcpo_lite.kernels.gcpo_loss (what the trainer calls) on log-probs from the hidden-state path."""
    K.set_backend(backend)
    B, T, H, V = 3, 5, 16, 4231
    hidden = torch.randn(B, T, H)
    weight = torch.randn(V, H) * 0.3
    ids = torch.randint(0, V, (B, T))
    old = -torch.rand(B, T) * 4
    adv = torch.randn(B)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 3:] = False
    kw = dict(
        importance_sampling_level=level, epsilon_low=0.2, epsilon_high=0.28, loss_type="seq_mean_token_mean"
    )
    h1, h2 = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    lp1 = K.token_logprobs_from_hidden(h1, weight, ids, 0.9, chunk_size=4)
    loss1, _ = trainer_loss.gcpo_loss(lp1, old, adv, mask, **kw)
    loss1.backward()
    lp2 = reference.token_logprobs_from_hidden(h2, weight, ids, 0.9)
    loss2, _ = reference.gcpo_loss(lp2, old, adv, mask, **kw)
    loss2.backward()
    torch.testing.assert_close(loss1, loss2, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h1.grad, h2.grad, atol=1e-6, rtol=1e-4)


def test_native_loss_defers_to_reference_when_old_logps_need_grad(restore):
    K.set_backend("auto")
    lp, old = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    loss, _ = K.gcpo_loss(lp, old, torch.randn(2), torch.ones(2, 3), epsilon_low=0.2, epsilon_high=0.2)
    loss.backward()
    assert old.grad is not None


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_gcpo_loss_from_hidden_equals_composition(restore, backend):
    K.set_backend(backend)
    B, T, H, V = 2, 4, 8, 300
    hidden, weight = torch.randn(B, T, H), torch.randn(V, H)
    ids, old, adv = torch.randint(0, V, (B, T)), -torch.rand(B, T) * 5, torch.randn(B)
    mask, supp = torch.ones(B, T), torch.tensor([7])
    kw = dict(
        importance_sampling_level="sequence", epsilon_low=0.2, epsilon_high=0.28, loss_type="token_mean"
    )
    h1, h2 = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    loss1, m1 = K.gcpo_loss_from_hidden(
        h1, weight, ids, old, adv, mask, temperature=0.8, chunk_size=3, suppress_ids=supp, **kw
    )
    loss1.backward()
    lp = reference.token_logprobs(h2.reshape(-1, H) @ weight.t(), ids.reshape(-1), 0.8, supp).view(B, T)
    loss2, m2 = reference.gcpo_loss(lp, old, adv, mask, **kw)
    loss2.backward()
    torch.testing.assert_close(loss1, loss2, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h1.grad, h2.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(m1["importance_ratio_mean"], m2["importance_ratio_mean"])
