"""OOM backoff with injected out-of-memory errors: no sample lost, same update as a clean run."""

from __future__ import annotations

import copy

import pytest
import torch

from gcpo_lite.memory.oom import OOMBackoff, OutOfMemoryAtSizeOne, is_oom
from gcpo_lite.memory.planner import Plan


def _oom():
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")


def test_is_oom():
    assert is_oom(_oom())
    assert is_oom(
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 123 bytes"
        )
    )
    assert is_oom(MemoryError())
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))  # only errors allocators raise


def test_generation_backoff_keeps_every_sample_and_later_steps_use_the_new_size():
    plan = Plan(generation_batch_size=8, micro_batch_size=8, logits_chunk_size=None)
    backoff = OOMBackoff(plan)
    calls = []

    def generate(s, e):  # "runs out of memory" for more than 2 sequences at once, after sampling a bit
        calls.append((s, e))
        torch.rand(3)
        if e - s > 2:
            raise _oom()
        return [f"sample-{i}-{torch.rand(1).item():.6f}" for i in range(s, e)]

    torch.manual_seed(0)
    out = [x for chunk in backoff.map("generation", 10, generate) for x in chunk]
    assert [x.split("-")[1] for x in out] == [str(i) for i in range(10)]  # every prompt, in order, once
    assert plan.generation_batch_size == 2
    assert [(ev["from"], ev["to"]) for ev in plan.backoffs] == [(8, 4), (4, 2)]
    # the retried slices draw what a run at size 2 from the start draws (RNG restored before a retry)
    torch.manual_seed(0)
    clean = [x for chunk in OOMBackoff(Plan(2, 8, None)).map("generation", 10, generate) for x in chunk]
    assert out == clean
    calls.clear()
    backoff.map("generation", 4, generate)  # the next step starts at the new size: no more errors
    assert calls == [(0, 2), (2, 4)] and len(plan.backoffs) == 2


def test_non_oom_errors_propagate_and_size_one_explains():
    plan = Plan(4, 4, None)
    with pytest.raises(ValueError):
        OOMBackoff(plan).map("generation", 4, lambda s, e: (_ for _ in ()).throw(ValueError("bug")))
    assert plan.generation_batch_size == 4

    def always_oom(s, e):
        raise _oom()

    with pytest.raises(OutOfMemoryAtSizeOne, match="max_completion_length"):
        OOMBackoff(plan).map("training", 3, always_oom)
    assert plan.micro_batch_size == 1


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(6, 16)
        self.b = torch.nn.Linear(16, 1)

    def forward(self, x, fail: bool = False):
        h = torch.tanh(self.a(x))
        if fail:  # raises during backward, after b's gradients were already accumulated
            h.register_hook(lambda g: (_ for _ in ()).throw(_oom()))
        return self.b(h).squeeze(-1)


def _train(net, x, y, plan, fail_sizes=()):
    """One optimizer step over all rows in micro-batches; fails once per size in fail_sizes."""
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    params = list(net.parameters())
    seen = []
    pending = set(fail_sizes)

    def micro_step(s, e):
        seen.extend(range(s, e))
        fail = (e - s) in pending
        pending.discard(e - s)
        loss = ((net(x[s:e], fail) - y[s:e]) ** 2).sum() / len(x)  # share of the whole batch's mean
        loss.backward()
        return e - s

    OOMBackoff(plan).accumulate(len(x), micro_step, params)
    grads = [p.grad.clone() for p in params]
    opt.step()
    return grads, seen


def test_training_backoff_gives_the_same_update_as_a_clean_run():
    torch.manual_seed(0)
    x, y = torch.randn(12, 6), torch.randn(12)
    net = _Net()
    clean_net, backoff_net = copy.deepcopy(net), copy.deepcopy(net)
    clean_grads, _ = _train(clean_net, x, y, Plan(8, 4, None))
    plan = Plan(8, 4, None)
    grads, seen = _train(backoff_net, x, y, plan, fail_sizes=(4,))  # first micro-step dies mid-backward
    assert plan.micro_batch_size == 2 and len(plan.backoffs) == 1
    assert sorted(set(seen)) == list(range(12))  # every row trained (rows 0..3 retried in halves)
    for g, c in zip(grads, clean_grads):
        torch.testing.assert_close(g, c, rtol=1e-6, atol=1e-7)
    for p, q in zip(backoff_net.parameters(), clean_net.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_training_backoff_mid_step_discards_partial_gradients():
    """An OOM on a later micro-step must not keep that micro-step's partial gradients."""
    torch.manual_seed(1)
    x, y = torch.randn(8, 6), torch.randn(8)
    net = _Net()
    clean = _train(copy.deepcopy(net), x, y, Plan(8, 2, None))[0]
    calls = {"n": 0}
    params = list(net.parameters())

    def micro_step(s, e):
        calls["n"] += 1
        fail = calls["n"] == 3  # the third micro-step (rows 4:6) dies mid-backward
        ((net(x[s:e], fail) - y[s:e]) ** 2).sum().div(len(x)).backward()

    plan = Plan(8, 2, None)
    OOMBackoff(plan).accumulate(len(x), micro_step, params)
    assert plan.micro_batch_size == 1
    for p, c in zip(params, clean):
        torch.testing.assert_close(p.grad, c, rtol=1e-6, atol=1e-7)

    # control: retrying without setting accumulated gradients aside double-counts the partial backward
    for p in params:
        p.grad = None
    calls["n"] = 0
    OOMBackoff(Plan(8, 2, None)).map("training", len(x), micro_step)
    assert not all(torch.allclose(p.grad, c) for p, c in zip(params, clean))
