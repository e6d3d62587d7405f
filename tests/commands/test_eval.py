"""`gcpo-lite eval`: offline on the embedded default, metrics from a known rollout backend, adapters, local math
files, a verifier that raises."""

import json
import re

import pytest

from gcpo_lite.commands import evaluate
from gcpo_lite.config import ConfigError
from gcpo_lite.rollout.sampler import SampleOutput
from gcpo_lite.train import evaluation


def _args(*argv):
    import argparse

    p = argparse.ArgumentParser()
    evaluate.add_arguments(p)
    return p.parse_args(list(argv))


def _read(out_dir):
    summary = json.loads((out_dir / "summary.json").read_text())
    samples = [json.loads(line) for line in (out_dir / "samples.jsonl").read_text().splitlines()]
    return summary, samples


def test_pass_at_k_estimator():
    assert evaluation.pass_at_k(4, 0, 1) == 0.0
    assert evaluation.pass_at_k(4, 4, 1) == 1.0
    assert evaluation.pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert evaluation.pass_at_k(4, 1, 4) == 1.0
    assert evaluation.pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)


def test_embedded_default_offline(embedded_model_dir, tmp_path):
    out = tmp_path / "ev"
    assert (
        evaluate.run(
            _args(
                "--limit", "6", "-k", "2", "--temperature", "1.0", "--no-progress", "--output-dir", str(out)
            )
        )
        == 0
    )
    summary, samples = _read(out)
    assert summary["dataset"] == "addition" and summary["num_prompts"] == 6 and summary["num_samples"] == 2
    assert 0.0 <= summary["accuracy"] <= summary["pass_at_k"] <= 1.0
    assert len(samples) == 12
    assert set(samples[0]) >= {"prompt", "completion", "extracted", "correct", "gold"}


def fake_backend(monkeypatch, answer) -> list:
    """Register, as `builtin` (the backend eval's default RolloutConfig names), a rollout backend whose
    completions are answer(prompts); returns the list of its calls: (number of prompts, keyword names)."""
    from gcpo_lite.rollout import backends

    calls = []

    class Fake:
        def __init__(self, cfg):
            pass

        def generate(self, model, prompts, **kw):
            calls.append((len(prompts), sorted(kw)))
            return answer(prompts)

    monkeypatch.setitem(backends.BACKENDS, "builtin", Fake)
    return calls


def test_metrics_with_a_known_backend(embedded_model_dir, tmp_path, monkeypatch):
    """Sample 0 of every prompt is the right sum, sample 1 is wrong: accuracy 0.5, pass@2 1.0, pass@1 0.5.
    Generation goes through the rollout backend (a registered fake here), in --batch-size batches."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(embedded_model_dir))
    eos = tok.convert_tokens_to_ids("<|im_end|>")

    def answer(prompts):
        out = []
        for pos, ids in enumerate(prompts):
            a, b = map(int, re.search(r"(\d+)\+(\d+)=", tok.decode(ids)).groups())
            text = str(a + b) if pos % 2 == 0 else str(a + b + 1)
            out.append(tok(text, add_special_tokens=False).input_ids + [eos])
        return SampleOutput(out, [0.0] * len(out))

    calls = fake_backend(monkeypatch, answer)
    out = tmp_path / "ev"
    evaluate.run(
        _args(
            "--limit",
            "10",
            "-k",
            "2",
            "--temperature",
            "1",
            "--batch-size",
            "4",
            "--no-progress",
            "--no-quantize",
            "--output-dir",
            str(out),
        )
    )
    summary, samples = _read(out)
    assert summary["accuracy"] == 0.5 and summary["pass_at_k"] == 1.0 and summary["pass_at"]["1"] == 0.5
    assert all(s["correct"] == (s["sample"] == 0) for s in samples)
    assert all(s["extracted"] == s["completion"] for s in samples)
    contract = sorted(["max_new_tokens", "temperature", "top_p", "eos_ids", "pad_id", "suppress_ids"])
    assert calls == [(4, contract)] * 5  # 20 sequences; the backend contract's arguments only


def test_adapter_and_local_math_file(embedded_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(embedded_model_dir))
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(
        str(tmp_path / "adapter")
    )
    data = tmp_path / "math.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"question": f"{i}+1=", "final": f"\\frac{{{2 * i + 2}}}{{2}}"}) for i in range(6)
        )
    )
    out = tmp_path / "ev"
    evaluate.run(
        _args(
            "--adapter",
            str(tmp_path / "adapter"),
            "--dataset",
            str(data),
            "--prompt-field",
            "question",
            "--answer-field",
            "final",
            "--verifier",
            "math",
            "--no-quantize",
            "--no-progress",
            "--max-new-tokens",
            "4",
            "--output-dir",
            str(out),
        )
    )
    summary, samples = _read(out)
    assert summary["adapter"] == str(tmp_path / "adapter") and summary["verifier"] == "math"
    assert len(samples) == 6 and summary["temperature"] == 0.0


def test_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="identical greedy"):
        evaluate.run(_args("-k", "4", "--temperature", "0", "--output-dir", str(tmp_path)))
    with pytest.raises(ConfigError, match="adapter_config.json"):
        evaluate.run(_args("--adapter", str(tmp_path), "--output-dir", str(tmp_path)))


def test_cli_has_eval(embedded_model_dir, tmp_path):
    from gcpo_lite.cli import main

    assert (
        main(["eval", "--limit", "2", "--no-progress", "--no-quantize", "--output-dir", str(tmp_path / "ev")])
        == 0
    )
    assert (tmp_path / "ev" / "summary.json").is_file()


def test_eval_without_model_uses_the_adapters_own_base(tmp_path):
    """`eval --adapter RUN/adapter` scores the adapter on the base it was trained on (the demo's base is not the
    default model), unless that base was a path on another machine."""
    import json

    from gcpo_lite.train.evaluation import adapter_base

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for base, want in [
        (str(tmp_path), str(tmp_path)),
        ("embedded-tiny-qwen2-addition", "embedded-tiny-qwen2-addition"),
        ("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct"),
        ("/elsewhere/model", None),
    ]:
        (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
        assert adapter_base(str(adapter)) == want
    assert adapter_base(None) is None


@pytest.mark.parametrize("allocator", ["caching", "system"])
def test_eval_on_cpu_runs_the_trainers_cpu_allocator(embedded_model_dir, tmp_path, monkeypatch, allocator):
    """Like `train`, eval on CPU installs the caching allocator (its smallest cap) unless told otherwise."""
    from gcpo_lite.memory import cpu_allocator

    calls = []
    monkeypatch.setattr(cpu_allocator, "install", lambda cap: calls.append(cap) or (True, ""))
    argv = ["--limit", "2", "--device", "cpu", "--no-progress", "--output-dir", str(tmp_path / "ev")]
    assert evaluate.run(_args(*argv, "--cpu-allocator", allocator)) == 0
    assert calls == ([cpu_allocator.MIN_CAP_BYTES] if allocator == "caching" else [])


def test_eval_says_when_the_caching_allocator_is_unavailable(
    embedded_model_dir, tmp_path, monkeypatch, capsys
):
    from gcpo_lite.memory import cpu_allocator

    monkeypatch.setattr(
        cpu_allocator, "install", lambda cap: (False, "the native extension is unavailable (x)")
    )
    argv = ["--limit", "2", "--device", "cpu", "--no-progress", "--output-dir", str(tmp_path / "ev")]
    assert evaluate.run(_args(*argv)) == 0
    assert (
        "caching CPU allocator is unavailable (the native extension is unavailable (x)); using the system"
        in (capsys.readouterr().out)
    )


def test_a_verifier_that_raises_scores_wrong_and_is_counted(
    embedded_model_dir, tmp_path, monkeypatch, capsys
):
    """As in training (RewardModel), a verifier exception scores that sample 0 and is counted; eval goes on."""
    from gcpo_lite.rewards import reward_model

    first = []

    def verifier(text, example):  # raises on every sample of the first prompt scored (greedy, k=1)
        first.append(first[0] if first else example.answer)
        if example.answer == first[0]:
            raise RuntimeError("verifier bug")
        return 1.0

    monkeypatch.setitem(reward_model.VERIFIERS, "math", verifier)
    out = tmp_path / "ev"
    argv = ["--limit", "4", "--verifier", "math", "--no-progress", "--no-quantize", "--output-dir", str(out)]
    assert evaluate.run(_args(*argv)) == 0
    summary, samples = _read(out)
    assert [s["correct"] for s in samples] == [False, True, True, True]
    assert summary["reward_errors"] == 1 and summary["accuracy"] == 0.75
    assert "1 reward error (scored wrong)" in capsys.readouterr().out


@pytest.fixture(scope="module")
def saved_adapter(embedded_model_dir, tmp_path_factory):
    """A LoRA adapter directory of the embedded model, as save_pretrained writes it (copy it before damage)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("adapter") / "adapter"
    base = AutoModelForCausalLM.from_pretrained(str(embedded_model_dir))
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(str(path))
    return path


def _eval_cli(capsys, *argv) -> tuple[int, str]:
    from gcpo_lite.cli import main

    code = main(["eval", "--limit", "2", "--no-progress", "--no-quantize", *argv])
    return code, capsys.readouterr().err


def _one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def _truncate(adapter):
    with open(adapter / "adapter_model.safetensors", "r+b") as fh:
        fh.truncate(40)


def _truncate_data(adapter):  # the header intact, the tensors cut short
    path = adapter / "adapter_model.safetensors"
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 100)


DAMAGE = {
    "truncated weights": (_truncate, "adapter_model.safetensors is damaged or truncated"),
    "weights cut short": (_truncate_data, "adapter_model.safetensors is damaged or truncated"),
    "missing weights": (
        lambda a: (a / "adapter_model.safetensors").unlink(),
        "has no adapter_model.safetensors",
    ),
    "config not JSON": (
        lambda a: (a / "adapter_config.json").write_text('{"r": 4, '),
        "adapter_config.json is not readable JSON",
    ),
    "config a list": (
        lambda a: (a / "adapter_config.json").write_text("[1, 2]"),
        "adapter_config.json is a JSON list, not an object",
    ),
    "config values peft rejects": (
        lambda a: (a / "adapter_config.json").write_text('{"peft_type": "LORA", "r": "x"}'),
        "peft cannot load it onto",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_adapter_is_one_line(saved_adapter, tmp_path, capsys, damage):
    """A truncated, missing or corrupt adapter file: one line naming it and what to pass, no traceback."""
    import shutil

    adapter = tmp_path / "adapter"
    shutil.copytree(saved_adapter, adapter)
    make, needle = DAMAGE[damage]
    make(adapter)
    code, err = _eval_cli(capsys, "--adapter", str(adapter), "--output-dir", str(tmp_path / "ev"))
    _one_line(code, err, needle, str(adapter), "--adapter")


@pytest.mark.parametrize("device", ["foo", "cuda:x", "meta", "cpu:0:1", ""])
def test_eval_device_that_is_not_one_is_one_line(embedded_model_dir, tmp_path, capsys, device):
    code, err = _eval_cli(capsys, "--device", device, "--output-dir", str(tmp_path / "ev"))
    _one_line(code, err, f"--device {device!r} is not a device", "auto, cpu, cuda or cuda:N")


def test_eval_device_cuda_without_one_names_the_flag(embedded_model_dir, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = _eval_cli(capsys, "--device", "cuda:1", "--output-dir", str(tmp_path / "ev"))
    _one_line(code, err, "--device cuda:1", "no CUDA device", "--device cpu")


def test_eval_to_a_read_only_place_is_one_line(embedded_model_dir, tmp_path, capsys, monkeypatch):
    import errno
    from pathlib import Path

    def read_only(self, *a, **kw):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, err = _eval_cli(capsys, "--output-dir", str(tmp_path / "ev"))
    _one_line(code, err, f"cannot write {tmp_path / 'ev'} (Read-only file system)", "--output-dir")


def test_an_adapter_of_another_base_is_one_line(embedded_model_dir, tmp_path, capsys):
    """Trained on a base of other shapes (its config names no base here): peft's size mismatch, one line."""
    import json

    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = json.loads((embedded_model_dir / "config.json").read_text())
    other = Qwen2ForCausalLM(Qwen2Config(**{**config, "hidden_size": 2 * config["hidden_size"]}))
    adapter = tmp_path / "adapter"
    get_peft_model(other, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(str(adapter))
    settings = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**settings, "base_model_name_or_path": None}))
    code, err = _eval_cli(capsys, "--adapter", str(adapter), "--output-dir", str(tmp_path / "ev"))
    _one_line(
        code, err, "its tensor shapes are another base's", "pass --model with the base it was trained on"
    )
