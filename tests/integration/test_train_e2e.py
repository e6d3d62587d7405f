"""End to end on CPU: a real 4-bit NF4 + LoRA training run, and the `gcpo-lite train` command."""

import json
import subprocess
import sys

import pytest
import torch

from gcpo_lite.config import from_dict
from gcpo_lite.models.loading import REGISTRY, ModelNameError, resolve_model
from gcpo_lite.train.trainer import Trainer


def tiny_cfg(out_dir, **train):
    return from_dict(
        {
            "model": {"quantize": True, "gradient_checkpointing": True},
            "gcpo": {"num_generations": 4, "max_completion_length": 4},
            "data": {"eval_size": 4},
            "train": {
                "batch_size": 8,
                "output_dir": str(out_dir),
                "learning_rate": 5e-2,
                "max_steps": 2,
                "eval_steps": 0,
                "num_threads": 1,
                **train,
            },
        }
    )


def test_two_steps_4bit_lora_change_only_the_adapter(embedded_model_dir, tmp_path):
    import bitsandbytes as bnb

    tr = Trainer(tiny_cfg(tmp_path / "run", kernels="reference"), progress=False)
    linears4 = [m for m in tr.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linears4) == 2 * 7  # every attention and MLP projection of both layers is NF4
    assert all(m.weight.quant_state.quant_type == "nf4" for m in linears4)
    lora = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    base = {n: p.detach().clone() for n, p in tr.model.named_parameters() if not p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    tr.train()
    assert tr.step == 2
    after = dict(tr.model.named_parameters())
    changed = [n for n in lora if not torch.equal(lora[n], after[n].detach())]
    assert changed, "no LoRA weight moved in two steps"
    assert all(torch.equal(base[n], after[n].detach()) for n in base), "a frozen base weight changed"
    run = tmp_path / "run"
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert (run / "config.yaml").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward_mean" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for key in (
        "step",
        "reward_mean",
        "accuracy",
        "gold_injected_frac",
        "all_correct_frac",
        "all_wrong_frac",
        "loss",
        "completion_length_mean",
    ):
        assert key in steps[0], key
    assert any("eval_accuracy" in r for r in rows)


def test_registry_lookups_and_unknown_names():
    assert resolve_model("qwen2.5-1.5b").source == "Qwen/Qwen2.5-1.5B-Instruct"
    assert resolve_model("Qwen2.5-7B").source == "Qwen/Qwen2.5-7B-Instruct"
    assert resolve_model("deepseek-r1-distill-qwen-1.5b").family == "r1_distill"
    assert resolve_model("llama-3.2-1b").family == "llama"
    for name in ("qwen2.5-0.5b", "qwen2.5-3b", "qwen2.5-math-1.5b", "llama-3.2-3b"):
        assert name in REGISTRY
    assert resolve_model("someone/some-model").source == "someone/some-model"
    assert resolve_model(None).embedded
    with pytest.raises(ModelNameError) as e:
        resolve_model("qwen2.5-1.5")
    assert "Did you mean" in str(e.value) and "qwen2.5-1.5b" in str(e.value)


def test_local_path_model(embedded_model_dir):
    r = resolve_model(str(embedded_model_dir))
    assert r.source == str(embedded_model_dir) and not r.embedded


def test_cli_train_embedded_default_first_line_and_run_dir(embedded_model_dir, tmp_path):
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "gcpo_lite.cli",
        "train",
        "--output-dir",
        str(out),
        "--max-steps",
        "1",
        "--no-progress",
        "train.batch_size=16",
        "data.eval_size=4",
        "train.eval_steps=0",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = proc.stdout.splitlines()[0]
    assert "embedded default" in first
    assert {"config.yaml", "metrics.jsonl", "adapter"} <= {p.name for p in out.iterdir()}


def test_cli_rejects_bad_config_with_a_clear_message(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "gcpo_lite.cli",
        "train",
        "--output-dir",
        str(tmp_path),
        "gcpo.num_generations=1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "at least 2" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "gcpo_lite.cli", "train", "--model", "qwen-2.5-15b"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Did you mean" in proc.stderr


def test_train_help_documents_every_option():
    from gcpo_lite.config import describe_options

    proc = subprocess.run(
        [sys.executable, "-m", "gcpo_lite.cli", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    for key, _, _ in describe_options():
        assert key in proc.stdout, key


def test_lr_schedule_advances_once_per_step(embedded_model_dir, tmp_path):
    """With num_iterations = 2 a linear schedule still spans max_steps steps (issue 9, item 2)."""
    import json

    cfg = from_dict(
        {
            "model": {"gradient_checkpointing": False},
            "gcpo": {"num_generations": 4, "max_completion_length": 4, "num_iterations": 2},
            "data": {"eval_size": 4},
            "train": {
                "batch_size": 8,
                "output_dir": str(tmp_path),
                "learning_rate": 1e-3,
                "max_steps": 4,
                "eval_steps": 0,
                "lr_scheduler": "linear",
                "num_threads": 1,
                "kernels": "reference",
            },
        }
    )
    tr = Trainer(cfg, progress=False)
    tr.train()
    lrs = [json.loads(r)["lr"] for r in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"lr"' in r]
    assert lrs == pytest.approx([1e-3 * (1 - k / 4) for k in (1, 2, 3, 4)])
    assert tr.lr_schedule.last_epoch == 4


def test_a_real_model_without_dataset_trains_on_gsm8k(tmp_path):
    """The built-in tasks are for the embedded model; an instruct model solves them outright (issue 9, item 12)."""
    from gcpo_lite.cli import build_parser
    from gcpo_lite.commands.train import config_from_args

    parse = build_parser().parse_args
    cfg, embedded = config_from_args(parse(["train", "--model", "qwen2.5-1.5b"]))
    assert cfg.data.dataset == "gsm8k" and not embedded
    cfg, _ = config_from_args(parse(["train", "--model", "qwen2.5-1.5b", "--dataset", "math500"]))
    assert cfg.data.dataset == "math500"
    cfg, _ = config_from_args(parse(["train", "--model", "qwen2.5-1.5b", "data.dataset=addition"]))
    assert cfg.data.dataset == "addition"  # an explicit choice wins
    cfg, embedded = config_from_args(parse(["train"]))
    assert embedded and cfg.data.dataset in (None, "addition")
    cfg, _ = config_from_args(parse(["train", "--model", "embedded-tiny-qwen2-addition"]))
    assert cfg.data.dataset is None  # the demo's base is embedded: the built-in task, not gsm8k


def _strict_json(line: str) -> dict:
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize("max_minutes", [None, 1e-9])  # the last step, and a stop by max_minutes
def test_no_held_out_prompts_means_no_evaluation(embedded_model_dir, tmp_path, capsys, max_minutes):
    """Issue 28: data.eval_size=0 wrote "eval_accuracy": NaN (not JSON) and printed "nan%"."""
    from gcpo_lite.cli import main

    run = tmp_path / "run"
    argv = ["train", "--model", str(embedded_model_dir), "--dataset", "addition", "--output-dir", str(run),
            "--no-progress", "--max-steps", "2", "data.eval_size=0", "train.eval_steps=1", "train.batch_size=8",
            "gcpo.num_generations=4", "gcpo.max_completion_length=4", "train.kernels=reference",
            f"train.max_minutes={max_minutes}"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = [_strict_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert not any("eval_accuracy" in r for r in rows), rows
    assert [r["step"] for r in rows] == ([1, 2] if max_minutes is None else [])  # 1e-9 minutes: no step
    done = [line for line in out.splitlines() if line.startswith("done:")]
    assert done and "no held-out" in done[0] and "nan" not in out.lower(), out
