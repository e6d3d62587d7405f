"""--resume survives a damaged newest checkpoint: it falls back to the newest intact one and says why."""

import os
import random
import shutil

import pytest
import torch

from gcpo_lite.cli import main
from gcpo_lite.config import ConfigError
from gcpo_lite.run import checkpoints as ck


@pytest.fixture
def run(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    return run_dir


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "truncated trainer_state.pt": lambda c: truncate(c / "trainer_state.pt"),
    "truncated adapter": lambda c: truncate(c / "adapter" / "adapter_model.safetensors"),
    "missing adapter folder": lambda c: shutil.rmtree(c / "adapter"),
    "missing metrics.jsonl": lambda c: (c / "metrics.jsonl").unlink(),
    "missing plan.json": lambda c: (c / "plan.json").unlink(),
    "garbage plan.json": lambda c: (c / "plan.json").write_bytes(b"\x00\xff{"),
    "garbage metrics.jsonl": lambda c: (c / "metrics.jsonl").write_bytes(b'{"step": 1}\n\x8f\xff\x00\n'),
    "trainer_state.pt without its state": lambda c: torch.save({"format": 1}, c / "trainer_state.pt"),
    "random bytes as trainer_state.pt": lambda c: (c / "trainer_state.pt").write_bytes(
        bytes(random.Random(0).randrange(256) for _ in range(4096))
    ),
    "text as trainer_state.pt": lambda c: (c / "trainer_state.pt").write_text("hello world\n"),
    "trainer_state.pt with altered data": lambda c: alter_state(c, data=[1]),
    "trainer_state.pt with a bad step": lambda c: alter_state(c, step="two"),
    "plan.json not an object": lambda c: (c / "plan.json").write_text("[]"),
    "metrics.jsonl row not an object": lambda c: (c / "metrics.jsonl").write_text(
        (c / "metrics.jsonl").read_text() + "5\n"
    ),
}


def alter_state(ckpt, **changes):
    state = torch.load(ckpt / "trainer_state.pt", weights_only=True)
    state.update(changes)
    torch.save(state, ckpt / "trainer_state.pt")


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_newest_checkpoint_falls_back(run, damage):
    DAMAGE[damage](run / "checkpoints" / "step-000002")
    said = []
    path = ck.find_checkpoint(run, echo=said.append)
    assert path.name == "step-000001"
    assert any("skipping checkpoint step-000002" in s for s in said)
    with pytest.raises(ConfigError, match="cannot be used"):  # asked for by number: an error, not a fallback
        ck.find_checkpoint(run, 2)


def test_garbage_latest_uses_the_newest_intact(run):
    (run / "checkpoints" / "latest").write_bytes(b"\x8f\xff\x00garbage\n")
    said = []
    assert ck.find_checkpoint(run, echo=said.append).name == "step-000002"
    assert any("latest is unreadable" in s for s in said)
    assert ck.latest_checkpoint(run).name == "step-000002"


def test_unsafe_pickle_is_refused_with_a_sentence(run):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": 1, "payload": Evil()}, run / "checkpoints" / "step-000002" / "trainer_state.pt")
    said = []
    assert ck.find_checkpoint(run, echo=said.append).name == "step-000001"
    assert any("refused as unsafe" in s for s in said)
    with pytest.raises(ck.UnsafeCheckpointError, match="refused as unsafe"):
        ck.find_checkpoint(run, 2)


def test_nothing_intact_is_a_clean_error(run, capsys):
    for step in (1, 2):
        truncate(run / "checkpoints" / f"step-{step:06d}" / "trainer_state.pt")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no intact checkpoint" in err and "step-000001" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["truncated trainer_state.pt", "garbage metrics.jsonl"])
def test_cli_resume_falls_back_and_finishes(run, capsys, damage):
    DAMAGE[damage](run / "checkpoints" / "step-000002")
    with open(run / "completions.jsonl", "ab") as f:
        f.write(b"\x8f\xff cut short by a kill")  # damaged bytes in the run's own log: that row is dropped
    (run / "checkpoints" / ".tmp-step-000003-abc").mkdir()  # left by a kill during a save
    assert main(["train", "--resume", str(run), "--no-progress", "train.max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert "skipping checkpoint step-000002" in out and "resuming from" in out and "step-000001" in out
    assert "removed 1 unfinished checkpoint folder" in out
    assert not list((run / "checkpoints").glob(".tmp-step-*"))
    steps = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"reward_mean"' in line]
    assert len(steps) == 3  # steps 1 (kept), 2 and 3 (re-run): no duplicate, no gap
    assert ck.find_checkpoint(run).name == "step-000003"


def test_damaged_state_json_does_not_stop_a_resume(run):
    (run / "checkpoints" / "step-000002" / "state.json").write_bytes(b"\x8f\xff{")
    path = ck.find_checkpoint(run)
    assert path.name == "step-000002"  # state.json is for people: not needed to resume
    assert str(path) in ck.resume_note(path)


def test_adapter_of_another_shape_is_a_clean_error(run, capsys):
    from safetensors.torch import load_file, save_file

    adapter = run / "checkpoints" / "step-000002" / "adapter" / "adapter_model.safetensors"
    weights = load_file(str(adapter))
    name = next(k for k in weights if "lora_A" in k)
    weights[name] = torch.zeros(weights[name].shape[0] * 2, weights[name].shape[1])  # another LoRA rank
    save_file(weights, str(adapter))
    assert main(["train", "--resume", str(run), "--no-progress", "train.max_steps=3"]) == 2
    err = capsys.readouterr().err
    assert "does not fit this model" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["random bytes as trainer_state.pt", "text as trainer_state.pt"])
def test_damaged_bytes_are_called_damaged_not_unsafe(run, damage):
    DAMAGE[damage](run / "checkpoints" / "step-000002")
    with pytest.raises(ConfigError) as err:
        ck.find_checkpoint(run, 2)
    assert not isinstance(err.value, ck.UnsafeCheckpointError)
    assert "damaged" in str(err.value) and "unsafe" not in str(err.value)
    assert "trainer_state.pt" in str(err.value)


def test_a_blocked_global_is_refused_as_unsafe(run):
    torch.save({"format": 1, "payload": os.system}, run / "checkpoints" / "step-000002" / "trainer_state.pt")
    with pytest.raises(ck.UnsafeCheckpointError, match=r"step-000002/trainer_state.pt was refused as unsafe"):
        ck.find_checkpoint(run, 2)


@pytest.mark.parametrize("damage", ["trainer_state.pt with altered data", "plan.json not an object"])
def test_loading_an_altered_checkpoint_directly_is_a_clean_error(run, damage):
    import yaml

    from gcpo_lite.config import from_dict
    from gcpo_lite.train.trainer import Trainer

    DAMAGE[damage](run / "checkpoints" / "step-000002")
    cfg = from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    with pytest.raises(ConfigError, match="step-000002"):
        ck.load_checkpoint(Trainer(cfg, progress=False), run / "checkpoints" / "step-000002")


def test_rows_that_are_not_objects_are_dropped_from_the_logs(tmp_path):
    log = tmp_path / "completions.jsonl"
    log.write_text('{"step": 1}\n5\n["x"]\n{"step": 2}\n{"step": "?"}\n')
    assert ck._rows_up_to(log, 1) == ['{"step": 1}', '{"step": "?"}']
