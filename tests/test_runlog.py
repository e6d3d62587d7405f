"""Per-step extras, the optional metric sinks and the progress bar."""
import sys
import types

import pytest

from gcpo_lite.config import ConfigError, from_dict
from gcpo_lite.runlog import ProgressBar, Reporters


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
    sinks.log({"step": 3, "loss": 0.5, "plan_logits_chunk_size": None, "gold": True, "reward_mean": float("nan")})
    sinks.close()
    assert logged == [(3, {"loss": 0.5}), "finished"]
    Reporters(cfg(tmp_path, "wandb"), tmp_path)
    assert inits[0]["id"] == inits[1]["id"] and inits[0]["resume"] == "allow"  # --resume continues the W&B run


@pytest.mark.parametrize("rich", [True, False])
def test_progress_bar_starts_at_the_resumed_step(rich):
    bar = ProgressBar(10, initial=4, prefer_rich=rich)
    bar.update({"reward_mean": 0.5, "accuracy": 0.25, "gold_injected_frac": 0.0, "eval_accuracy": 0.1})
    if bar._rich is not None:
        assert bar._rich.tasks[0].completed == 5
    else:
        assert bar._tqdm.n == 5
    bar.close()
