"""The full-vocabulary path in CI: a tiny Qwen2 (2 layers, hidden 64) with Qwen2.5's real vocabulary size
(lm_head 151,936 wide) and a synthetic 151,665-token tokenizer, through train (4-bit + LoRA, 2 steps, sampling
and chunked log-probs over the whole vocabulary), eval and export (issue 10). The real-size run with the full
Qwen2.5-0.5B architecture is benchmarks/real_shapes.py."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from synthetic_model import QWEN25_05B, save_model  # noqa: E402

from gcpo_lite.cli import main  # noqa: E402

TINY_FULL_VOCAB = {**QWEN25_05B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256}  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("full_vocab_model"), TINY_FULL_VOCAB)


def test_synthetic_tokenizer_has_the_real_size_and_round_trips(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    assert type(tok).__name__.startswith("Qwen2Tokenizer") and len(tok) == 151665
    text = "What is 12+30? Answer: 42.\n"
    assert tok.decode(tok(text).input_ids) == text
    assert json.loads((model_dir / "config.json").read_text())["vocab_size"] == 151936


def test_train_eval_export_with_the_full_vocabulary(model_dir, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "export"
    code = main(
        [
            "train",
            "--model",
            str(model_dir),
            "--dataset",
            "addition",
            "--output-dir",
            str(run),
            "--no-progress",
            "train.max_steps=2",
            "train.batch_size=8",
            "gcpo.num_generations=4",
            "gcpo.max_completion_length=8",
            "train.eval_steps=0",
            "data.eval_size=4",
            "train.logits_chunk_size=16",
        ]  # fmt: skip
    )
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(r["sampled_tokens"] > 0 for r in steps)
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert main(["eval", "--model", str(model_dir), "--adapter", str(run / "adapter"), "--dataset", "addition",
                 "--limit", "4", "--max-new-tokens", "8", "--no-progress"]) == 0  # fmt: skip
    assert main(["export", str(run), "--output-dir", str(out)]) == 0
    assert (out / "adapter_model.safetensors").is_file()
