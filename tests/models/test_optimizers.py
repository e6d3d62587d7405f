"""train.optimizer (issue 9, item 8): the optimizer the plan budgets is the one the trainer builds and the
checkpoint records; one that cannot run here fails before the model loads."""

import pytest
import torch

import gcpo_lite.run.checkpoints as ck
import gcpo_lite.train.trainer as trainer_mod
from gcpo_lite.config import ConfigError, from_dict
from gcpo_lite.memory import model as mm
from gcpo_lite.memory.architectures import from_hf_config
from gcpo_lite.memory.planner import shape_from_config
from gcpo_lite.train.trainer import Trainer


def config(run_dir, optimizer, **train):
    return from_dict(
        {
            "model": {"gradient_checkpointing": False, "quantize": False},
            "lora": {"r": 64},  # 64 x hidden 64 = 4096: bitsandbytes quantizes tensors this size and up
            "gcpo": {"num_generations": 4, "max_completion_length": 4},
            "data": {"eval_size": 4},
            "train": {
                "optimizer": optimizer,
                "batch_size": 8,
                "output_dir": str(run_dir),
                "learning_rate": 3e-2,
                "eval_steps": 0,
                "num_threads": 1,
                "kernels": "reference",
                **train,
            },
        }
    )


def test_paged_optimizer_on_cpu_fails_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "load_policy", lambda *a: pytest.fail("the model loaded"))
    with pytest.raises(ConfigError, match="CUDA unified memory.*train.optimizer=adamw_8bit"):
        Trainer(config(tmp_path, "paged_adamw_8bit"), progress=False)


def test_unknown_optimizer_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="adamw_8bit"):
        config(tmp_path, "sgd")


def test_plan_budgets_the_configured_optimizer(tmp_path):
    a, b = (shape_from_config(config(tmp_path, o), "cpu").optimizer for o in ("adamw", "adamw_8bit"))
    assert (a, b) == ("adamw", "adamw_8bit")


def _state_bytes(opt) -> int:
    """Bytes of the per-parameter moments (and 8-bit block scales) an optimizer holds."""
    keys = {"exp_avg", "exp_avg_sq", "state1", "state2", "absmax1", "absmax2"}
    return sum(v.numel() * v.element_size() for s in opt.state.values() for k, v in s.items() if k in keys)


@pytest.mark.parametrize("optimizer", ["adamw", "adamw_8bit"])
def test_trainer_builds_what_the_plan_budgets(embedded_model_dir, tmp_path, optimizer):
    cfg = config(tmp_path, optimizer, max_steps=1)
    tr = Trainer(cfg, progress=False)
    want = "AdamW8bit" if optimizer == "adamw_8bit" else "AdamW"
    assert type(tr.optimizer).__name__ == want
    tr.train()
    arch = from_hf_config(tr.model.config.to_dict())
    predicted = mm.lora_state_bytes(arch, shape_from_config(cfg, "cpu"))["optimizer_state"]
    assert _state_bytes(tr.optimizer) == predicted
    if optimizer == "adamw_8bit":
        assert any(s["state1"].dtype == torch.uint8 for s in tr.optimizer.state.values() if "state1" in s)


def test_8bit_state_resumes_exactly_and_a_changed_optimizer_is_refused(embedded_model_dir, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    a = Trainer(config(whole, "adamw_8bit", max_steps=3), progress=False)
    a.train()
    Trainer(config(split, "adamw_8bit", max_steps=2, save_steps=1), progress=False).train()
    b = Trainer(config(split, "adamw_8bit", max_steps=3), progress=False)
    assert ck.load_checkpoint(b, ck.find_checkpoint(split)) == 2
    b.train()
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    c = Trainer(config(tmp_path / "other", "adamw", max_steps=3), progress=False)
    with pytest.raises(ConfigError, match="optimizer state is adamw_8bit's.*train.optimizer=adamw_8bit"):
        ck.load_checkpoint(c, ck.find_checkpoint(split), restore_logs=False)
