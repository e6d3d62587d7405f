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
