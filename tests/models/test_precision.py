"""One rule for the compute dtype: loading the model, the trainer's memory plan and `gcpo-lite plan` agree,
so a plan counts the bytes the model really computes in (a T4 or V100 runs float32, not a 2-byte dtype)."""

import json

import pytest
import torch

from gcpo_lite.cli import main
from gcpo_lite.config import ModelConfig, from_dict
from gcpo_lite.memory.planner import make_plan, shape_from_config
from gcpo_lite.models.loading import compute_dtype
from gcpo_lite.models.precision import compute_dtype_name

GiB = 2**30


@pytest.mark.parametrize(
    "requested, device, bf16, expected",
    [
        ("auto", "cuda", True, "bfloat16"),
        ("auto", "cuda", False, "float32"),
        ("auto", "cuda:1", False, "float32"),
        ("auto", "cuda", None, "bfloat16"),  # a GPU known only by its budget: the common case
        ("auto", "cpu", None, "float32"),
        ("auto", "cpu", True, "float32"),
        ("float16", "cuda", False, "float16"),  # an explicit dtype is kept
        ("bfloat16", "cpu", None, "bfloat16"),
    ],
)
def test_the_rule(requested, device, bf16, expected):
    assert compute_dtype_name(requested, device, bf16) == expected


def test_an_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="auto or one of"):
        compute_dtype_name("fp8", "cuda", True)


@pytest.fixture
def gpu(monkeypatch):
    """This machine has a GPU (16 GiB, 12 free); the test sets whether it computes in bf16."""

    def has_bf16(supported: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (12 * GiB, 16 * GiB))
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a: 0)

    return has_bf16


def plan_command_json(capsys, *argv) -> dict:
    assert main(["plan", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("bf16, expected", [(False, "float32"), (True, "bfloat16")])
def test_loading_the_trainers_plan_and_the_plan_command_agree(gpu, capsys, bf16, expected):
    gpu(bf16)
    cfg = from_dict({"model": {"name": "qwen2.5-1.5b"}})
    assert compute_dtype(ModelConfig(), torch.device("cuda")) == getattr(torch, expected)
    assert shape_from_config(cfg, "cuda").compute_dtype == expected
    planned = make_plan(cfg, budget_bytes=12 * GiB, device="cuda")
    as_loaded = make_plan(cfg, budget_bytes=12 * GiB, device="cuda", compute_dtype=expected)
    assert planned.to_dict() == as_loaded.to_dict()
    d = plan_command_json(capsys, "--model", "qwen2.5-1.5b", "--device", "cuda")  # budget: this GPU's
    assert (d["compute_dtype"], d["compute_dtype_assumed"]) == (expected, False)


def test_a_gpu_without_bf16_is_planned_at_four_bytes(gpu, capsys):
    """The defect this rule fixes: a T4 was planned with 2-byte tensors while the model ran in fp32."""
    gpu(False)
    cfg = from_dict({"model": {"name": "qwen2.5-1.5b"}})
    fp32 = make_plan(cfg, budget_bytes=12 * GiB, device="cuda")
    bf16 = make_plan(cfg, budget_bytes=12 * GiB, device="cuda", compute_dtype="bfloat16")
    assert fp32.components["weights_unquantized"] == 2 * bf16.components["weights_unquantized"]


def test_the_plan_command_says_when_it_assumed_bf16(capsys):
    """With a budget given the GPU may be another machine's: it is not asked, and the plan says so."""
    d = plan_command_json(capsys, "--model", "qwen2.5-1.5b", "--memory-budget", "8GiB")
    assert (d["device"], d["compute_dtype"], d["compute_dtype_assumed"]) == ("cuda", "bfloat16", True)
    assert main(["plan", "--model", "qwen2.5-1.5b", "--memory-budget", "8GiB"]) == 0
    assert "bfloat16 compute (assumed: a GPU with bf16" in capsys.readouterr().out
    d = plan_command_json(capsys, "--memory-budget", "8GiB", "--compute-dtype", "float32")
    assert (d["compute_dtype"], d["compute_dtype_assumed"]) == ("float32", False)
    d = plan_command_json(capsys, "--memory-budget", "8GiB", "--device", "cpu")
    assert (d["compute_dtype"], d["compute_dtype_assumed"]) == ("float32", False)
