"""Per-step extras, the optional metric sinks and the progress bar."""

import sys
import types

import pytest

from gcpo_lite.config import ConfigError, from_dict
from gcpo_lite.run.reporting import ProgressBar, Reporters


def cfg(tmp_path, report_to):
    return from_dict({"train": {"output_dir": str(tmp_path), "report_to": report_to}})


def test_missing_sink_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails like a missing package
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        Reporters(cfg(tmp_path, "tensorboard"), tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match="pip install wandb"):
        Reporters(cfg(tmp_path, "wandb"), tmp_path)
    with pytest.raises(ConfigError, match="report_to"):
        cfg(tmp_path, "mlflow")


def test_wandb_gets_numeric_metrics_and_a_stable_run_id(tmp_path, monkeypatch):
    logged, inits = [], []

    class Run:
        def log(self, data, step):
            logged.append((step, data))

        def finish(self):
            logged.append("finished")

    fake = types.SimpleNamespace(init=lambda **kw: inits.append(kw) or Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    sinks = Reporters(cfg(tmp_path, "wandb"), tmp_path)
    sinks.log(
        {"step": 3, "loss": 0.5, "plan_logits_chunk_size": None, "gold": True, "reward_mean": float("nan")}
    )
    sinks.close()
    assert logged == [(3, {"loss": 0.5}), "finished"]
    Reporters(cfg(tmp_path, "wandb"), tmp_path)
    assert (
        inits[0]["id"] == inits[1]["id"] and inits[0]["resume"] == "allow"
    )  # --resume continues the W&B run


@pytest.mark.parametrize("rich", [True, False])
def test_progress_bar_starts_at_the_resumed_step(rich):
    bar = ProgressBar(10, initial=4, prefer_rich=rich)
    bar.update({"reward_mean": 0.5, "accuracy": 0.25, "gold_injected_frac": 0.0, "eval_accuracy": 0.1})
    if bar._rich is not None:
        assert bar._rich.tasks[0].completed == 5
    else:
        assert bar._tqdm.n == 5
    bar.close()


def test_sampler_entropy_is_the_sampling_distributions_entropy():
    import math

    import torch

    from gcpo_lite.rollout.sampler import sample_completions

    class Fixed(torch.nn.Module):  # same logits at every position: [2, 1, 0, 0, ...] over 6 tokens
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, **kw):
            logits = torch.tensor([2.0, 1.0, 0.0, 0.0, 0.0, 0.0]).expand(*input_ids.shape, 6)
            return types.SimpleNamespace(logits=logits)

    out = sample_completions(
        Fixed(),
        [[1, 2], [3]],
        max_new_tokens=3,
        temperature=2.0,
        top_p=1.0,
        eos_ids={5},
        pad_id=4,
        suppress_ids=[4],
    )  # pad suppressed: 5 live tokens
    p = torch.softmax(torch.tensor([2.0, 1.0, 0.0, 0.0, 0.0]) / 2.0, -1)
    per_token = float(-(p * p.log()).sum())
    for ids, total in zip(out.completions, out.entropy_sums):
        assert math.isclose(total, per_token * len(ids), rel_tol=1e-5)
