"""Planner: deterministic, monotone in the budget, within budget, clear refusals; the plan command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from time_limit import within

from gcpo_lite.commands import plan as plan_cmd
from gcpo_lite.config import Config, ConfigError, from_dict
from gcpo_lite.memory import model as mm
from gcpo_lite.memory.architectures import registry_architectures, resolve
from gcpo_lite.memory.planner import InfeasiblePlanError, Plan, make_plan, parse_bytes, plan_run

KNOWN = registry_architectures()

GiB = 2**30
ROOT = Path(__file__).resolve().parents[2]
SHAPE = mm.RunShape(prompt_tokens=256, completion_tokens=512)


def _plan(budget, name="qwen2.5-1.5b", shape=SHAPE, **kw):
    kw.setdefault("batch_size", 64)
    kw.setdefault("num_generations", 8)
    return plan_run(resolve(name), shape, budget_bytes=int(budget), **kw)


def test_parse_bytes():
    assert parse_bytes("8GiB") == 8 * GiB
    assert parse_bytes("8G") == 8 * GiB
    assert parse_bytes("7.5GB") == 7_500_000_000
    assert parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("1000") == 1000
    with pytest.raises(ConfigError, match="8GiB"):
        parse_bytes("eight gigs")


def test_plan_is_deterministic():
    a = _plan(8 * GiB).to_dict()
    b = _plan(8 * GiB).to_dict()
    assert a == b


@pytest.mark.parametrize(
    "name,shape",
    [
        ("qwen2.5-1.5b", SHAPE),
        (
            "qwen2.5-0.5b",
            mm.RunShape(prompt_tokens=512, completion_tokens=1024, gradient_checkpointing=False),
        ),
        ("llama-3.2-1b", mm.RunShape(prompt_tokens=128, completion_tokens=256, optimizer="paged_adamw_8bit")),
    ],
)
def test_more_memory_never_gives_smaller_batches(name, shape):
    prev = None
    for tenth in range(20, 400, 3):  # 2.0 .. 40 GiB
        budget = tenth * GiB / 10
        try:
            p = _plan(budget, name, shape)
        except InfeasiblePlanError:
            assert prev is None, f"feasible at a smaller budget but not at {budget / GiB:.1f} GiB"
            continue
        assert p.predicted_peak_bytes <= budget
        assert 64 % p.generation_batch_size == 0 and 64 % p.micro_batch_size == 0
        if prev is not None:
            assert p.generation_batch_size >= prev.generation_batch_size
            assert p.micro_batch_size >= prev.micro_batch_size
        prev = p
    assert prev is not None and prev.generation_batch_size == 64  # 40 GiB: the whole step generates at once


def test_auto_group_size_is_largest_that_fits_and_monotone():
    prev = 0
    for tenth in range(25, 400, 5):
        try:
            p = _plan(
                tenth * GiB / 10,
                batch_size=64,
                num_generations=8,
                auto_num_generations=True,
                generation_range=(2, 16),
                shape=mm.RunShape(prompt_tokens=512, completion_tokens=1024),
            )
        except InfeasiblePlanError:
            continue
        assert p.num_generations in (2, 4, 8, 16)
        assert p.num_generations >= prev
        assert p.generation_batch_size % p.num_generations == 0 or p.warnings
        if p.num_generations < 4:
            assert any("num_generations" in w for w in p.warnings)
        prev = p.num_generations
    assert prev == 16


def test_auto_group_size_needs_a_divisor():
    with pytest.raises(ConfigError, match="batch_size"):
        _plan(40 * GiB, batch_size=7, auto_num_generations=True, generation_range=(2, 6))


def test_infeasible_budget_names_what_to_change():
    with pytest.raises(InfeasiblePlanError) as e:
        _plan(2.2 * GiB, shape=mm.RunShape(prompt_tokens=256, completion_tokens=4096))
    msg = str(e.value)
    assert "too small" in msg and "max_completion_length=" in msg and "more memory" in msg
    # the suggested completion length really fits
    suggested = int(msg.split("max_completion_length=")[1].split(";")[0])
    _plan(2.2 * GiB, shape=mm.RunShape(prompt_tokens=256, completion_tokens=suggested))


def test_weights_alone_too_big_suggests_a_smaller_model():
    with pytest.raises(InfeasiblePlanError, match="model.name=qwen2.5-(0.5b|1.5b|3b)"):
        _plan(4 * GiB, name="qwen2.5-7b", model_name="qwen2.5-7b")


def test_explicit_sizes_are_kept_and_flagged_when_over_budget():
    p = _plan(3 * GiB, generation_batch_size=64, micro_batch_size=64, logits_chunk_size=128)
    assert (p.generation_batch_size, p.micro_batch_size, p.logits_chunk_size) == (64, 64, 128)
    assert p.predicted_peak_bytes > 3 * GiB and any("budget" in w for w in p.warnings)


def test_make_plan_from_config_cpu_tiny_model():
    cfg = Config()
    cfg.train.batch_size, cfg.gcpo.num_generations = 8, 4
    p = make_plan(cfg, budget_bytes=16 * GiB, device="cpu")
    assert isinstance(p, Plan)
    assert (p.generation_batch_size, p.micro_batch_size) == (8, 8)  # a tiny model: the whole step
    cfg.train.micro_batch_size = 2
    assert make_plan(cfg, budget_bytes=16 * GiB, device="cpu").micro_batch_size == 2
    assert Plan(4, 2, None).to_dict()["generation_batch_size"] == 4  # the trainer's original fields


def test_every_registry_model_plans_offline():
    for name in KNOWN:
        p = _plan(80 * GiB, name)
        assert p.predicted_peak_bytes <= 80 * GiB


def _run_plan(*argv):  # `gcpo-lite plan ...` as a user runs it
    return subprocess.run(
        [sys.executable, "-m", "gcpo_lite.cli", "plan", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_plan_command_json_and_speed():
    t0 = time.time()
    proc = _run_plan(
        "--model",
        "qwen2.5-1.5b",
        "--memory-budget",
        "8GiB",
        "--num-generations",
        "auto",
        "--max-completion-length",
        "1024",
        "--json",
    )
    elapsed = time.time() - t0
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    for key in (
        "generation_batch_size",
        "micro_batch_size",
        "num_generations",
        "logits_chunk_size",
        "predicted_peak_bytes",
        "components",
    ):
        assert key in d
    assert d["predicted_peak_bytes"] <= 8 * GiB
    assert set(d["components"]) >= {"weights_4bit", "kv_cache", "activations", "logits", "optimizer_state"}
    assert elapsed < 2.0, f"gcpo-lite plan took {elapsed:.2f}s"
    bad = _run_plan("--model", "qwen2.5-7b", "--memory-budget", "3GiB", "--json")
    assert bad.returncode == 2 and json.loads(bad.stdout)["feasible"] is False and "too small" in bad.stderr


def test_plan_command_table_and_refusal(capsys):
    args = ["--model", "qwen2.5-1.5b", "--memory-budget", "8GiB", "--max-completion-length", "512"]
    assert plan_cmd.main(args) == 0
    out = capsys.readouterr().out
    assert "kv_cache" in out and "predicted peak" in out and "micro_batch_size" in out
    assert plan_cmd.main(["--model", "qwen2.5-7b", "--memory-budget", "2GiB"]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and "model.name=" in err


def test_plan_command_accepts_local_config_json(tmp_path):
    arch = KNOWN["qwen2.5-0.5b"]
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "qwen2",
                "hidden_size": arch.hidden_size,
                "intermediate_size": arch.intermediate_size,
                "num_hidden_layers": arch.num_layers,
                "num_attention_heads": arch.num_heads,
                "num_key_value_heads": arch.num_kv_heads,
                "vocab_size": arch.vocab_size,
                "tie_word_embeddings": True,
            }
        )
    )
    d = plan_cmd.build(plan_cmd_args(["--model", str(tmp_path), "--memory-budget", "6GiB"]))
    ref = plan_cmd.build(plan_cmd_args(["--model", "qwen2.5-0.5b", "--memory-budget", "6GiB"]))
    assert d["predicted_peak_bytes"] == ref["predicted_peak_bytes"]


def plan_cmd_args(argv):
    import argparse

    p = argparse.ArgumentParser()
    plan_cmd.add_arguments(p)
    return p.parse_args(argv)


def test_unknown_model_error_says_what_to_pass():
    with pytest.raises(ValueError, match="registry name"):
        resolve("no-such/model-xyz")
    cfg = from_dict({"model": {"name": "qwen2.5-3b"}})
    assert (
        make_plan(cfg, budget_bytes=24 * GiB, device="cuda", compute_dtype="bfloat16").generation_batch_size
        >= 1
    )


def test_scheduler_config_section():
    cfg = from_dict(
        {
            "model": {"name": "qwen2.5-1.5b"},
            "gcpo": {"max_completion_length": 1024},
            "train": {"batch_size": 64},
            "memory": {"memory_budget": "6GiB", "auto_num_generations": True, "max_num_generations": 16},
        }
    )
    p = make_plan(cfg, device="cuda", compute_dtype="bfloat16")
    assert p.budget_bytes == 6 * GiB and p.predicted_peak_bytes <= 6 * GiB
    assert 64 % p.num_generations == 0
    effective = cfg.with_num_generations(
        p.num_generations
    )  # what the trainer runs with; cfg stays as validated
    assert (
        effective.prompts_per_step * p.num_generations == 64
        and effective.gcpo.num_generations == p.num_generations
    )
    with pytest.raises(ConfigError, match="min <= max"):
        from_dict({"memory": {"min_num_generations": 8, "max_num_generations": 4}})
    with pytest.raises(ConfigError, match="8GiB"):
        from_dict({"memory": {"memory_budget": "lots"}})
    with pytest.raises(ConfigError, match="divides train.batch_size"):
        from_dict(
            {
                "gcpo": {"num_generations": 7},
                "train": {"batch_size": 7},
                "memory": {
                    "auto_num_generations": True,
                    "min_num_generations": 2,
                    "max_num_generations": 6,
                },
            }
        )


def test_plan_to_json_is_what_plan_json_holds():
    p = _plan(8 * GiB)
    assert p.to_json() == json.dumps(p.to_dict(), indent=1, default=str)
    assert json.loads(p.to_json())["micro_batch_size"] == p.micro_batch_size


def test_a_plan_request_needs_no_command_line():
    """The plan command's logic is callable with a config: the same dict as `gcpo-lite plan --json`."""
    from gcpo_lite.memory.plan_request import PlanRequest, plan_device, plan_report

    cfg = from_dict({"model": {"name": "qwen2.5-0.5b"}, "gcpo": {"max_completion_length": 1024}})
    d = plan_report(PlanRequest(cfg, memory_budget="6GiB", optimizer="adamw_8bit"))
    argv = ["--model", "qwen2.5-0.5b", "--max-completion-length", "1024", "--memory-budget", "6GiB"]
    assert d == plan_cmd.build(plan_cmd_args(argv + ["--optimizer", "adamw_8bit"]))
    assert d["shape"]["optimizer"] == "adamw_8bit" and d["budget_bytes"] == 6 * GiB
    assert plan_device(PlanRequest(cfg, memory_budget="6GiB")) == "cuda"  # a budget: planning for a GPU
    assert plan_device(PlanRequest(from_dict({"train": {"device": "cpu"}}), memory_budget="6GiB")) == "cpu"


def test_divisors_take_square_root_time():
    """divisors() looped once per unit of n: train.batch_size=4000000000 planned for minutes (issue 28)."""
    from gcpo_lite.memory.planner import divisors

    for n in (1, 2, 12, 36, 97, 1024, 5040):
        assert divisors(n) == [d for d in range(1, n + 1) if n % d == 0]
    with within(2):
        big = divisors(4_000_000_000)
    assert big[:4] == [1, 2, 4, 5] and big[-1] == 4_000_000_000 and big == sorted(set(big))


def test_plan_with_a_huge_batch_size_is_refused_at_once(capsys):
    from gcpo_lite.cli import main

    with within(20):
        code = main(["plan", "--batch-size", "4000000000", "--memory-budget", "8GiB"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "train.batch_size=4000000000" in err, err
