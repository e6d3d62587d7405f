"""The trainer's default loss path, the fused op gcpo_loss_from_hidden, against the composition (per-token
log-probs, then gcpo_loss): same loss, same LoRA gradients (issue 9, item 9)."""

import pytest
import torch

from gcpo_lite import kernels as K
from gcpo_lite.data.tasks import Example
from gcpo_lite.kernels import reference

G = 4
EX = [Example("12+30=", "42", "42"), Example("10+10=", "20", "20")]


@pytest.fixture(scope="module")
def trainer(small_trainer):
    tr = small_trainer()
    for p in tr.model.parameters():  # LoRA B starts at 0: give the adapter a non-trivial state
        if p.requires_grad:
            p.data.normal_(0, 0.05)
    return tr


def batch_of(tr, monkeypatch, texts):
    tok, eos = tr.tokenizer, tr.tokenizer.eos_token_id
    ids = [tok(t, add_special_tokens=False).input_ids + [eos] for t in texts]  # uneven lengths: padding
    monkeypatch.setattr(tr, "generate", lambda prompts, temperature, max_new_tokens: (ids, [-1.0] * len(ids)))
    return tr.rollout(EX)


def update_grads(tr, monkeypatch, batch, fused):
    params = [p for p in tr.model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    seen = []
    monkeypatch.setattr(tr.optimizer, "step", lambda: seen.append([p.grad.clone() for p in params]))
    monkeypatch.setattr(tr.cfg.train, "fused_loss", fused)
    out = tr.update(batch)
    for p, s in zip(params, start):
        p.data.copy_(s)
    return out, seen


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize(
    "gcpo",
    [
        {},
        {"loss_type": "token_mean", "importance_sampling_level": "token"},
        {"num_iterations": 2},  # stored old log-probs
        {"beta": 0.05},  # a KL term against the adapter-free base
    ],
)
def test_fused_and_composed_update_agree(trainer, monkeypatch, backend, gcpo):
    monkeypatch.setattr(K, "_requested", backend)
    for k, v in gcpo.items():
        monkeypatch.setattr(trainer.cfg.gcpo, k, v)
    batch = batch_of(trainer, monkeypatch, ["42", "4", "420", "1", "20", "2", "0", "202"])
    fused_out, fused = update_grads(trainer, monkeypatch, batch, True)
    comp_out, comp = update_grads(trainer, monkeypatch, batch, False)
    assert len(fused) == len(comp) == trainer.cfg.gcpo.num_iterations
    assert fused_out["loss"] == pytest.approx(comp_out["loss"], rel=1e-5, abs=1e-7)
    assert fused_out["kl"] == pytest.approx(comp_out["kl"], rel=1e-4, abs=1e-7)
    for a, b in zip(fused[-1], comp[-1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert any(float(g.abs().sum()) > 0 for g in fused[0])


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_op_with_padding_and_on_policy_old(monkeypatch, backend, dtype):
    """Masked positions never reach the lm_head; old=None means old = the log-probs themselves."""
    monkeypatch.setattr(K, "_requested", backend)
    torch.manual_seed(0)
    B, T, H, V = 3, 5, 8, 301
    hidden, weight = torch.randn(B, T, H, dtype=dtype), torch.randn(V, H, dtype=dtype)
    ids, adv = torch.randint(0, V, (B, T)), torch.randn(B)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.float32)
    ids[mask == 0] = V + 7  # an id past the vocabulary: reading it would fail
    kw = dict(importance_sampling_level="sequence", epsilon_low=3e-4, epsilon_high=4e-4, normalizer=4.0)
    h1, h2 = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    loss1, _ = K.gcpo_loss_from_hidden(h1, weight, ids, None, adv, mask, temperature=0.7, chunk_size=2, **kw)
    loss1.backward()
    safe = ids.where(mask.bool(), 0)
    lp = reference.token_logprobs((h2.reshape(-1, H) @ weight.t()).float(), safe.reshape(-1), 0.7).view(B, T)
    loss2, _ = reference.gcpo_loss(lp, lp.detach(), adv, mask, **kw)
    loss2.backward()
    tol = dict(rtol=2e-2, atol=2e-3) if dtype == torch.bfloat16 else dict(rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss1.float(), loss2.float(), **tol)
    torch.testing.assert_close(h1.grad.float(), h2.grad.float(), **tol)
    assert h1.grad[mask == 0].abs().sum() == 0
