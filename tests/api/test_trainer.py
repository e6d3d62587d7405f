"""GCPOTrainer beyond the README snippet: a loaded model, a peft model refused, evaluate() on other rows, and
train(resume_from_checkpoint=True) continuing the run."""

import json

import pytest

from gcpo_lite import GCPOConfig, GCPOTrainer
from gcpo_lite.config import ConfigError

ROWS = [
    {"prompt": f"{a}+{b}=", "answer": str(a + b), "solution": str(a + b)}
    for a in range(10, 20)
    for b in range(10, 14)
]


def exact(prompts, completions, answer, **kwargs):
    return [float(c.strip() == a) for c, a in zip(completions, answer)]


def small(out_dir, **kw) -> GCPOConfig:
    over = {"train.batch_size": 8, "data.eval_size": 4, "train.eval_steps": 0, "train.kernels": "reference"}
    return GCPOConfig(
        output_dir=str(out_dir), num_generations=4, max_completion_length=4, overrides=over, **kw
    )


def test_a_loaded_model_trains_and_a_peft_model_is_refused(embedded_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir)
    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    trainer = GCPOTrainer(model, exact, small(tmp_path / "run", max_steps=1), train_dataset=ROWS,
                          processing_class=tok, progress=False, say=lambda _: None)  # fmt: skip
    assert trainer.train().global_step == 1
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert str(embedded_model_dir) in config  # eval and export find the base by its name_or_path
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(embedded_model_dir), LoraConfig(r=2))
    with pytest.raises(ConfigError, match="pass its base model"):
        GCPOTrainer(peft_model, exact, small(tmp_path / "run2", max_steps=1), train_dataset=ROWS,
                    progress=False, say=lambda _: None).train()  # fmt: skip


def test_evaluate_other_rows_and_resume_the_run(embedded_model_dir, tmp_path):
    args = small(tmp_path / "run", max_steps=1, save_steps=1)
    first = GCPOTrainer(
        str(embedded_model_dir), exact, args, train_dataset=ROWS, progress=False, say=lambda _: None
    )
    first.train()
    scored = first.evaluate(eval_dataset=ROWS[:6])
    assert set(scored) == {"eval_accuracy"} and 0.0 <= scored["eval_accuracy"] <= 1.0
    args.max_steps = 2
    again = GCPOTrainer(
        str(embedded_model_dir), exact, args, train_dataset=ROWS, progress=False, say=lambda _: None
    )
    out = again.train(resume_from_checkpoint=True)
    assert out.global_step == 2
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
