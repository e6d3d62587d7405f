"""Shared fixtures: every test uses a private model cache, so tests never touch ~/.cache."""

import os
import signal

import pytest

# A job started in the background by a non-interactive shell (`cmd &`, nohup) has SIGINT ignored, and its
# children inherit that: the tests that press Ctrl-C on a child would then test nothing and fail. A Python
# handler here is reset to the default in every child at exec, so children see SIGINT as a terminal gives it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("gcpo_cache")
    old = os.environ.get("GCPO_LITE_CACHE")
    os.environ["GCPO_LITE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GCPO_LITE_CACHE", None)
    else:
        os.environ["GCPO_LITE_CACHE"] = old


@pytest.fixture(scope="session")
def embedded_model_dir(_private_cache):
    from gcpo_lite.demo.embedded_model import ensure_embedded_model

    return ensure_embedded_model()


@pytest.fixture(scope="module")
def embedded_policy(embedded_model_dir):
    """(model, tokenizer): the embedded model, 4-bit + LoRA as the trainer loads it, seeded; one per module."""
    import torch

    from gcpo_lite.config import from_dict
    from gcpo_lite.demo.embedded_model import prepare_model
    from gcpo_lite.models.loading import load_policy

    cfg = from_dict({"model": {"name": str(embedded_model_dir)}})
    torch.manual_seed(0)
    model, tok = load_policy(cfg, prepare_model(cfg.model.name), torch.device("cpu"))
    return model, tok


@pytest.fixture(scope="session")
def finished_run(embedded_model_dir, tmp_path_factory):
    """A finished 2-step run of the embedded model with a checkpoint after each step (built once; copy it
    with shutil.copytree before changing it)."""
    from gcpo_lite.config import from_dict
    from gcpo_lite.train.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("finished") / "run"
    cfg = from_dict(
        {
            "model": {"gradient_checkpointing": False},
            "gcpo": {"num_generations": 4, "max_completion_length": 4},
            "data": {"eval_size": 4},
            "train": {
                "batch_size": 8,
                "output_dir": str(run_dir),
                "learning_rate": 3e-2,
                "max_steps": 2,
                "eval_steps": 0,
                "save_steps": 1,
                "save_total_limit": None,
                "num_threads": 1,
                "kernels": "reference",
            },
        }
    )
    Trainer(cfg, progress=False).train()
    return run_dir


@pytest.fixture(scope="session")
def small_trainer(embedded_model_dir, tmp_path_factory):
    """make(**gcpo) -> a Trainer on the embedded model, unquantized, no checkpointing, G=4, 2 prompts per step,
    completions of up to 6 tokens, with the given gcpo.* settings on top (one fresh run directory each)."""
    from gcpo_lite.config import from_dict
    from gcpo_lite.train.trainer import Trainer

    def make(**gcpo) -> Trainer:
        cfg = from_dict(
            {
                "model": {"quantize": False, "gradient_checkpointing": False},
                "gcpo": {"num_generations": 4, "max_completion_length": 6, **gcpo},
                "train": {"batch_size": 8, "output_dir": str(tmp_path_factory.mktemp("run"))},
                "data": {"eval_size": 4},
            }
        )
        return Trainer(cfg, progress=False)

    return make
