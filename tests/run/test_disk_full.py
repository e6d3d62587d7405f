"""A full disk anywhere in training is one line (which file, the space left, free space and --resume), exit 2,
and the last checkpoint stays what `latest` names (issue 28, item 3).

The writers' own errors are raised where they happen (torch.save's RuntimeError, safetensors' SafetensorError,
a plain OSError ENOSPC); where this machine lets a test mount a small tmpfs, real full disks too.
"""

import contextlib
import errno
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from safetensors import SafetensorError

from gcpo_lite.cli import main
from gcpo_lite.config import ConfigError, from_dict
from gcpo_lite.run import checkpoints as ck
from gcpo_lite.run.directory import unlock_run_dir
from gcpo_lite.train.trainer import Trainer

TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 1322688 vs 1322580"
SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


def tiny(run_dir, **train):
    return from_dict(
        {
            "model": {"gradient_checkpointing": False},
            "gcpo": {"num_generations": 4, "max_completion_length": 4},
            "data": {"eval_size": 4},
            "train": {
                "batch_size": 8,
                "output_dir": str(run_dir),
                "eval_steps": 0,
                "num_threads": 1,
                "kernels": "reference",
                "max_steps": 2,
                "save_steps": 1,
                **train,
            },
        }
    )


@pytest.fixture
def run(finished_run, tmp_path):
    """A copy of the finished 2-step run (checkpoints after steps 1 and 2), and a trainer of its config."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    return run_dir


def assert_one_line(message: str, *needles: str) -> None:
    assert "\n" not in message.strip(), message
    for needle in needles:
        assert needle in message, message


def _full_torch_save(*a, **k):
    raise RuntimeError(TORCH_FULL)


def _full_torch_iostream(*a, **k):
    raise RuntimeError("basic_ios::clear: iostream error")


def _full_safetensors(*a, **k):
    raise SafetensorError(SAFETENSORS_FULL)


def _full_plain(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    "writer, file",
    [
        ("torch.save", "trainer_state.pt"),
        ("torch.save iostream", "trainer_state.pt"),  # its other short-write error
        ("safetensors", "adapter_model.safetensors"),
        ("plain", "plan.json"),
    ],
)
def test_a_full_disk_during_a_checkpoint(run, monkeypatch, writer, file):
    tr = Trainer(tiny(run), progress=False)
    ck.load_checkpoint(tr, ck.find_checkpoint(run))
    before = (run / "checkpoints" / "latest").read_text()
    if writer == "torch.save":
        monkeypatch.setattr(ck.torch, "save", _full_torch_save)
    elif writer == "torch.save iostream":
        monkeypatch.setattr(ck.torch, "save", _full_torch_iostream)
    elif writer == "safetensors":
        monkeypatch.setattr(tr.model, "save_pretrained", _full_safetensors)
    else:
        real = Path.write_text
        monkeypatch.setattr(
            Path,
            "write_text",
            lambda p, *a, **k: _full_plain() if p.name == "plan.json" else real(p, *a, **k),
        )
    tr.step = 3
    with pytest.raises(ConfigError) as e:
        ck.save_checkpoint(tr, tr.state_dict())
    assert_one_line(
        str(e.value), "no space left on device", file, "step-000003", "free", f"--resume {run}", "step-000002"
    )
    assert (run / "checkpoints" / "latest").read_text() == before  # still the intact step 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-000001", "step-000002"]


def test_a_full_disk_while_logging_a_step(embedded_model_dir, tmp_path, monkeypatch):
    """metrics.jsonl cannot grow: the CLI says so in one line, and the run resumes from its checkpoint."""
    import gcpo_lite.train.metrics as metrics

    real = metrics.MetricsLog.write

    def write(self, row, **kw):
        if row.get("step") == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, row, **kw)

    monkeypatch.setattr(metrics.MetricsLog, "write", write)
    run_dir = tmp_path / "run"
    argv = ["train", "--model", str(embedded_model_dir), "--dataset", "addition", "--output-dir", str(run_dir),
            "--no-progress", "--max-steps", "3", "train.save_steps=1", "train.batch_size=8",
            "gcpo.num_generations=4", "gcpo.max_completion_length=4", "data.eval_size=4", "train.eval_steps=0",
            "train.kernels=reference"]  # fmt: skip
    err = _cli_error(argv)
    assert_one_line(
        err, "no space left on device", str(run_dir), "free", f"--resume {run_dir}", "step-000001"
    )
    monkeypatch.setattr(metrics.MetricsLog, "write", real)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0


def _cli_error(argv) -> str:
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(argv) == 2
    text = err.getvalue()
    assert "Traceback" not in text, text
    return text


# ---------------------------------------------------------------- real full disks (a small tmpfs)


@pytest.fixture
def small_disk():
    """mount(size) -> a directory on a tmpfs of that size (skipped where this machine cannot mount one). Outside
    pytest's own temporary folders, which other pytest sessions clean up."""
    mounted = []

    def mount(size: str) -> Path:
        where = Path(tempfile.mkdtemp(prefix="gcpo-small-disk-"))
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            where.rmdir()
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()[:80]})")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        for run_dir in where.iterdir():
            unlock_run_dir(run_dir)  # the CLI ran in this process: its run lock keeps the mount busy
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        with contextlib.suppress(OSError):
            where.rmdir()


@pytest.mark.parametrize("size", ["2m", "5m"])  # 2m: the first torch.save fails; 5m: a later safetensors save
def test_a_real_full_disk(embedded_model_dir, small_disk, size):
    run_dir = small_disk(size) / "run"
    argv = ["train", "--model", str(embedded_model_dir), "--dataset", "addition", "--output-dir", str(run_dir),
            "--no-progress", "--max-steps", "8", "train.save_steps=1", "train.save_total_limit=null",
            "lora.r=64", "lora.alpha=128", "train.batch_size=8", "gcpo.num_generations=4",
            "gcpo.max_completion_length=4", "data.eval_size=4", "train.eval_steps=0",
            "train.kernels=reference"]  # fmt: skip
    err = _cli_error(argv)
    assert_one_line(err, "no space left on device", str(run_dir), "free")
    latest = ck.latest_checkpoint(run_dir)
    if latest is None:  # nothing saved yet: the message says how to start over
        assert "--overwrite" in err, err
    else:
        assert f"--resume {run_dir}" in err and latest.name in err, err
        assert ck.checkpoint_problem(latest) is None
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))  # no half-written checkpoint left
