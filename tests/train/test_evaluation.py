"""train/evaluation.py: eval samples through the configured rollout backend, reproducibly, and scores with
RewardModel (a raising verifier is counted, not fatal)."""

import json

from gcpo_lite.config import RolloutConfig
from gcpo_lite.rollout.sampler import SampleOutput
from gcpo_lite.train.evaluation import EvalSettings, prepare_evaluation


def _settings(tmp_path, **kw) -> EvalSettings:
    return EvalSettings(quantize=False, device="cpu", cpu_allocator="system", output_dir=str(tmp_path), **kw)


def test_settings_rollout_picks_the_backend_and_progress_is_reported(
    embedded_model_dir, tmp_path, monkeypatch
):
    from gcpo_lite.rollout import backends

    made, seen = [], []

    class Echo:  # answers every prompt with its own last token, then EOS
        def __init__(self, cfg):
            made.append(cfg)

        def generate(self, model, prompts, *, eos_ids, **kw):
            seen.append(len(prompts))
            return SampleOutput([[p[-1], min(eos_ids)] for p in prompts], [0.0] * len(prompts))

    monkeypatch.setitem(backends.BACKENDS, "echo", Echo)
    rollout = RolloutConfig(backend="echo", share_prompts=False)
    ev = prepare_evaluation(
        _settings(tmp_path, limit=5, num_samples=2, temperature=1.0, batch_size=4, rollout=rollout)
    )
    progress = []
    summary = ev.run(lambda done, acc: progress.append(done))
    assert made == [rollout] and seen == [4, 4, 2] and progress == seen
    assert summary["num_prompts"] == 5 and summary["accuracy"] == 0.0 and summary["reward_errors"] == 0
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 10


def test_builtin_backend_samples_what_a_seeded_sampler_does(embedded_model_dir, tmp_path):
    """Through the backend (no generator in its contract) eval draws the samples the sampler draws from a
    generator seeded with settings.seed: the same samples as before eval went through the backend."""
    import torch

    from gcpo_lite.rollout.sampler import sample_completions

    ev = prepare_evaluation(
        _settings(tmp_path, limit=6, num_samples=3, temperature=1.0, batch_size=8, seed=3)
    )
    ev.run()
    got = [json.loads(line)["completion"] for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    prompts = [p for p in ev.prompts for _ in range(3)]
    generator, want = torch.Generator().manual_seed(3), []
    for b in range(0, len(prompts), 8):
        out = sample_completions(
            ev.model,
            prompts[b : b + 8],
            max_new_tokens=ev.max_new_tokens,
            temperature=1.0,
            top_p=1.0,
            eos_ids=ev.eos_ids,
            pad_id=ev.pad_id,
            suppress_ids=ev.suppress_ids,
            generator=generator,
        )
        want += ev.tokenizer.batch_decode(out.completions, skip_special_tokens=True)
    assert got == want and len(set(got)) > 1  # sampled, not one greedy answer repeated


def test_limit_below_one_is_refused(tmp_path):
    """--limit -3 used to score 497 of 500 prompts (a negative slice) and --limit 0 said the split was empty."""
    import pytest

    from gcpo_lite.config import ConfigError

    for limit in (-3, 0):
        with pytest.raises(ConfigError, match=rf"--limit={limit} must be >= 1; omit it to score the whole"):
            prepare_evaluation(_settings(tmp_path, limit=limit))


def test_unknown_split_of_a_builtin_task_is_refused(tmp_path):
    """--split nosuch used to score the test split, labelled [nosuch]."""
    import pytest

    from gcpo_lite.config import ConfigError

    with pytest.raises(ConfigError, match=r"has no split 'nosuch'; its splits: train, test"):
        prepare_evaluation(_settings(tmp_path, split="nosuch"))


def _refuse_writes_to(monkeypatch, name: str, error: OSError) -> None:
    """Writing OUTPUT_DIR/name raises `error`, as on a read-only filesystem (tests run as root: chmod won't)."""
    import builtins
    from pathlib import Path

    real_open, real_write_text = builtins.open, Path.write_text

    def guarded_open(file, mode="r", *a, **kw):
        if Path(str(file)).name == name and "w" in mode:
            raise error
        return real_open(file, mode, *a, **kw)

    def guarded_write_text(self, *a, **kw):
        if self.name == name:
            raise error
        return real_write_text(self, *a, **kw)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(Path, "write_text", guarded_write_text)


def test_unwritable_output_is_one_sentence_naming_the_file(embedded_model_dir, tmp_path, monkeypatch):
    import errno

    import pytest

    from gcpo_lite.config import ConfigError

    cases = [
        ("samples.jsonl", PermissionError(errno.EACCES, "Permission denied")),
        ("summary.json", OSError(errno.EROFS, "Read-only file system")),
        ("samples.jsonl", OSError(errno.ENOSPC, "No space left on device")),
    ]
    ev = prepare_evaluation(_settings(tmp_path, limit=2))
    for name, error in cases:
        with monkeypatch.context() as m:
            _refuse_writes_to(m, name, error)
            with pytest.raises(ConfigError) as info:
                ev.run()
        message = str(info.value)
        assert str(tmp_path / name) in message and error.strerror in message, message
        assert "--output-dir" in message and "\n" not in message, message


def test_an_output_dir_that_cannot_be_made_fails_before_the_model_loads(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    import pytest

    from gcpo_lite.config import ConfigError
    from gcpo_lite.train import evaluation

    def read_only(self, *a, **kw):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    monkeypatch.setattr(evaluation, "load_eval_model", lambda *a: pytest.fail("loaded the model"))
    with pytest.raises(ConfigError, match=r"cannot write .*ev \(Read-only file system\); pass --output-dir"):
        prepare_evaluation(_settings(tmp_path / "ev"))


def test_sampling_flags_out_of_range_are_refused(tmp_path):
    """--max-new-tokens -5, --top-p 0 or -1 and --temperature nan were tracebacks from inside sampling;
    --max-new-tokens 0 silently meant the default and --top-p 7 silently meant 1."""
    import pytest

    from gcpo_lite.config import ConfigError

    for kw, needle in [
        (dict(max_new_tokens=-5), r"--max-new-tokens=-5 must be >= 1; omit it for"),
        (dict(max_new_tokens=0), r"--max-new-tokens=0 must be >= 1"),
        (dict(top_p=0.0, num_samples=2, temperature=1.0), r"--top-p=0.0 must be > 0 and <= 1"),
        (dict(top_p=-1.0, num_samples=2, temperature=1.0), r"--top-p=-1.0 must be > 0 and <= 1"),
        (dict(top_p=7.0, num_samples=2, temperature=1.0), r"--top-p=7.0 must be > 0 and <= 1"),
        (dict(temperature=float("nan")), r"--temperature=nan must be a number >= 0"),
        (dict(temperature=float("inf")), r"--temperature=inf must be a number >= 0"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            prepare_evaluation(_settings(tmp_path, limit=2, **kw))
