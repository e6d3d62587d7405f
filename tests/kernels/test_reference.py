"""The reference kernels (the specification) against hand-worked values and naive PyTorch, and the
chunked PyTorch hidden-state path (the reference backend's training path) against the plain one."""

import math

import pytest
import torch

from gcpo_lite.kernels import chunked, reference

# Two completions, two tokens. old = 0 so the token ratios are exp(lp): row 0 {1.5, 0.5}, row 1 {1.0, 1.1}
# with row 1's second token masked. A = (+1, -1); clip range [1 - 0.2, 1 + 0.3] = [0.8, 1.3].
R = [[1.5, 0.5], [1.0, 1.1]]
LP = torch.tensor(R).log()
OLD = torch.zeros(2, 2)
ADV = torch.tensor([1.0, -1.0])
MASK = torch.tensor([[1, 1], [1, 0]])
EPS = dict(epsilon_low=0.2, epsilon_high=0.3)
# token level: -min(r A, clip(r) A): (0,0) -1.3 (clipped), (0,1) -0.5, (1,0) +1.0
# sequence level: s_0 = exp(mean(log 1.5, log 0.5)) = sqrt(0.75), s_1 = 1: per token -sqrt(.75) and +1
S0 = math.sqrt(0.75)
HAND = {
    ("token", "seq_mean_token_mean"): ((-1.3 - 0.5) / 2 + 1.0) / 2,
    ("token", "token_mean"): (-1.3 - 0.5 + 1.0) / 3,
    ("token", "dr_grpo"): (-1.3 - 0.5 + 1.0) / (2 * 4),
    ("sequence", "seq_mean_token_mean"): (-S0 + 1.0) / 2,
    ("sequence", "token_mean"): (-2 * S0 + 1.0) / 3,
    ("sequence", "dr_grpo"): (-2 * S0 + 1.0) / (2 * 4),
}


@pytest.mark.parametrize("level,loss_type", list(HAND))
def test_hand_worked_loss(level, loss_type):
    loss, m = reference.gcpo_loss(
        LP,
        OLD,
        ADV,
        MASK,
        importance_sampling_level=level,
        loss_type=loss_type,
        max_completion_length=4,
        **EPS,
    )
    assert loss.item() == pytest.approx(HAND[(level, loss_type)], abs=1e-6)
    if level == "token":  # one of three tokens clipped high (r = 1.5 > 1.3 with A > 0)
        assert m["clip_ratio_high"].item() == pytest.approx(1 / 3) and m["clip_ratio_low"].item() == 0
        assert m["importance_ratio_mean"].item() == pytest.approx((1.5 + 0.5 + 1.0) / 3)
    else:  # sqrt(.75) = 0.866 sits inside [0.8, 1.3]: no clipping
        assert m["clip_ratio"].item() == 0
        assert m["importance_ratio_mean"].item() == pytest.approx((2 * S0 + 1.0) / 3)
    assert m["kl"].item() == 0


def test_hand_worked_token_gradient():
    lp = LP.clone().requires_grad_()
    loss, _ = reference.gcpo_loss(
        lp, OLD, ADV, MASK, importance_sampling_level="token", loss_type="token_mean", **EPS
    )
    loss.backward()
    # d/d lp of -r A / 3 = -A r / 3 where unclipped; the clipped token and the masked token get 0
    expected = torch.tensor([[0.0, -0.5 / 3], [1.0 / 3, 0.0]])
    torch.testing.assert_close(lp.grad, expected)


def test_hand_worked_kl_term():
    delta = torch.tensor([[0.0, math.log(2)], [-math.log(2), 5.0]])  # ref - lp; the last token is masked
    k3 = [[0.0, 2 - math.log(2) - 1], [0.5 + math.log(2) - 1, None]]
    beta = 0.1
    loss_nokl, _ = reference.gcpo_loss(
        LP, OLD, ADV, MASK, importance_sampling_level="token", loss_type="token_mean", **EPS
    )
    loss, m = reference.gcpo_loss(
        LP,
        OLD,
        ADV,
        MASK,
        ref_per_token_logps=LP + delta,
        beta=beta,
        importance_sampling_level="token",
        loss_type="token_mean",
        **EPS,
    )
    kl_sum = k3[0][0] + k3[0][1] + k3[1][0]
    assert loss.item() == pytest.approx(loss_nokl.item() + beta * kl_sum / 3, abs=1e-6)
    assert m["kl"].item() == pytest.approx(kl_sum / 3, abs=1e-6)


def test_fully_masked_completion_counts_in_B_only():
    mask = torch.tensor([[1, 1], [0, 0]])
    loss, _ = reference.gcpo_loss(
        LP, OLD, ADV, mask, importance_sampling_level="token", loss_type="seq_mean_token_mean", **EPS
    )
    assert loss.item() == pytest.approx((-1.3 - 0.5) / 2 / 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_token_logprobs_equals_naive_log_softmax_gather(dtype, temperature):
    logits = (torch.randn(7, 4231) * 3).to(dtype)
    ids = torch.randint(0, 4231, (7,))
    naive = torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, ids[:, None]).squeeze(-1)
    torch.testing.assert_close(
        reference.token_logprobs(logits, ids, temperature), naive, atol=1e-5, rtol=1e-5
    )
    ban = torch.tensor([1, 2, 4000])
    masked = (logits.float() / temperature).index_fill(-1, ban, float("-inf"))
    naive_s = torch.log_softmax(masked, dim=-1).gather(-1, ids[:, None]).squeeze(-1)
    torch.testing.assert_close(
        reference.token_logprobs(logits, ids, temperature, ban), naive_s, atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("chunk", [1, 3, 11, None])
@pytest.mark.parametrize("suppress", [False, True])
def test_chunked_hidden_equals_plain_reference(dtype, atol, chunk, suppress):
    n, H, V = 11, 16, 4231
    hidden = torch.randn(n, H).to(dtype)
    weight = (torch.randn(V, H) * 0.3).to(dtype)
    ids = torch.randint(5, V, (n,))
    supp = torch.tensor([0, 1, 2]) if suppress else None
    g = torch.randn(n)
    outs = []
    for fn in (reference.token_logprobs_from_hidden, chunked.token_logprobs_from_hidden):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        out = fn(h, w, ids, 0.8, chunk, supp)
        (out * g).sum().backward()
        outs.append((out, h.grad, w.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(b.float(), a.float(), atol=atol, rtol=atol)


def test_default_chunk_size_bounds_the_logits():
    c = chunked.default_chunk_size(151936, torch.float32)
    assert c * 151936 * 4 <= chunked.LOGITS_CHUNK_BUDGET_BYTES and c >= 16
    assert (
        chunked.default_chunk_size(151936, torch.bfloat16) == 2 * c
        or chunked.default_chunk_size(151936, torch.bfloat16) == 2 * c + 1
    )


def test_native_enum_codes_follow_the_one_list():
    """The op takes loss_type / importance_sampling_level as indexes into objective's tuples; the C++ enums
    must list them in the same order."""
    import re
    from pathlib import Path

    from gcpo_lite.config.objective import IS_LEVELS, LOSS_TYPES

    header = (Path(__file__).resolve().parents[2] / "csrc" / "loss_math.h").read_text()

    def enum(name):
        body = re.search(rf"enum {name} : int {{([^}}]*)}}", header).group(1)
        return [int(v) for v in re.findall(r"=\s*(\d+)", body)], re.findall(r"k(\w+)\s*=", body)

    codes, names = enum("LossType")
    assert codes == list(range(len(LOSS_TYPES))) and [n.lower() for n in names] == [
        t.replace("_", "") for t in LOSS_TYPES
    ]
    codes, names = enum("IsLevel")
    assert codes == list(range(len(IS_LEVELS))) and [n.lower() for n in names] == list(IS_LEVELS)
