"""Native kernels check themselves against the reference on first use per device type (issue 9, item 11):
a wrong or failing native op makes `auto` fall back with one loud line; `native` keeps it and still says so."""

import logging

import pytest
import torch

import gcpo_lite.kernels as K
from gcpo_lite.kernels import _ext, reference, selfcheck

pytestmark = pytest.mark.skipif(
    not _ext.available(), reason=f"native kernels unavailable: {_ext.why_unavailable()}"
)


@pytest.fixture
def ops(monkeypatch):
    from gcpo_lite.kernels import ops

    monkeypatch.delenv("GCPO_LITE_KERNELS", raising=False)
    monkeypatch.setattr(K, "_selfchecks", {})
    monkeypatch.setattr(K, "_fallbacks_logged", set())
    saved = K._requested
    yield ops
    K._requested = saved


def _inputs():
    g = torch.Generator().manual_seed(5)
    return torch.randn(6, 50, generator=g), torch.randint(0, 50, (6,), generator=g)


def test_real_native_kernels_pass(ops):
    assert selfcheck.check(ops, torch.device("cpu")) == ""
    K.set_backend("auto")
    assert K.self_check("cpu") == "" and K.active_backend() == "native"


def test_first_use_inside_no_grad_still_checks_backward(ops):
    K.set_backend("auto")
    logits, ids = _inputs()
    with torch.no_grad():
        K.token_logprobs(logits, ids, 0.8)  # the old-policy pass can be the first native call
    assert K._selfchecks["cpu"] == "" and K.active_backend() == "native"
    K._selfchecks.clear()
    with torch.inference_mode():
        K.token_logprobs(logits, ids, 0.8)
    assert K._selfchecks["cpu"] == ""


def test_a_wrong_native_result_falls_back_to_the_reference(ops, monkeypatch, caplog):
    real = ops.token_logprobs
    monkeypatch.setattr(ops, "token_logprobs", lambda *a, **kw: real(*a, **kw) + 1e-2)  # subtly wrong
    K.set_backend("auto")
    logits, ids = _inputs()
    with caplog.at_level(logging.WARNING, logger="gcpo_lite.kernels"):
        got = K.token_logprobs(logits, ids, 0.8)
        K.token_logprobs(logits, ids, 0.8)
    torch.testing.assert_close(got, reference.token_logprobs(logits, ids, 0.8))  # the reference answered
    failed = [r for r in caplog.records if "FAILED their self-check" in r.getMessage()]
    assert len(failed) == 1 and "token_logprobs" in failed[0].getMessage()
    assert "using the reference instead" in failed[0].getMessage()
    assert K.active_backend() == "reference"


def test_a_native_error_falls_back_too(ops, monkeypatch):
    def boom(*a, **kw):
        raise RuntimeError("illegal memory access (simulated)")

    monkeypatch.setattr(ops, "gcpo_loss", boom)
    K.set_backend("auto")
    assert "illegal memory access" in K.self_check("cpu")
    lp = torch.randn(2, 3, requires_grad=True)
    loss, _ = K.gcpo_loss(lp, lp.detach(), torch.randn(2), torch.ones(2, 3))
    loss.backward()  # the reference ran: no error


def test_forced_native_keeps_native_and_reports(ops, monkeypatch, caplog):
    real = ops.token_logprobs
    monkeypatch.setattr(ops, "token_logprobs", lambda *a, **kw: real(*a, **kw) + 1e-2)
    monkeypatch.setenv("GCPO_LITE_KERNELS", "native")
    K.set_backend("auto")
    logits, ids = _inputs()
    with caplog.at_level(logging.WARNING, logger="gcpo_lite.kernels"):
        got = K.token_logprobs(logits, ids, 0.8)
    torch.testing.assert_close(got, reference.token_logprobs(logits, ids, 0.8) + 1e-2)  # native answered
    assert any("GCPO_LITE_KERNELS=native keeps them" in r.getMessage() for r in caplog.records)


def test_doctor_prints_the_check(ops, monkeypatch):
    from gcpo_lite.commands.doctor import collect, format_report, kernels_report

    K.set_backend("auto")
    report = kernels_report()
    assert report["self_check"]["cpu"] == "passed"
    monkeypatch.setattr(K, "_selfchecks", {})
    real = ops.token_logprobs_from_hidden
    monkeypatch.setattr(ops, "token_logprobs_from_hidden", lambda *a, **kw: real(*a, **kw) * 1.01)
    report = kernels_report()
    assert report["self_check"]["cpu"].startswith("FAILED: AssertionError: token_logprobs_from_hidden")
    assert report["live"] == "reference" and "self-check" in report["why_not_native"]
    text = format_report({**collect(), "kernels": report})
    assert "native cpu kernels vs the PyTorch reference (fwd + bwd, fp32 + bf16): FAILED" in text
