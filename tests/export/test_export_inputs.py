"""Export of a damaged run (issue 28): export checks what it ships (the adapter's file, its config, and that
they fit the base), offers the newest intact checkpoint by name, and every bad input is one line, exit 2."""

import errno
import json
import os
import shutil

import pytest
import torch

from gcpo_lite.cli import main

ADAPTER = "adapter_model.safetensors"


@pytest.fixture
def run(finished_run, tmp_path):
    run_dir = tmp_path / "runs" / "mine"
    shutil.copytree(finished_run, run_dir)
    return run_dir


def export_cli(capsys, run_dir, out, *extra):
    """(exit status, stderr) of `gcpo-lite export RUN --output-dir OUT ...`."""
    rc = main(["export", str(run_dir), "--output-dir", str(out), *extra])
    return rc, capsys.readouterr().err


def one_line(err):
    """The single error line, after checking there is exactly one and no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def no_leftovers(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


# ---------------------------------------------------------------- item 1: a damaged adapter is never shipped


def test_truncated_adapter_is_refused_never_pushed_and_the_checkpoint_offered(
    run, tmp_path, capsys, monkeypatch
):
    import gcpo_lite.commands.export as command

    def no_push(*a, **k):
        raise AssertionError("pushed a damaged adapter")

    monkeypatch.setattr(command, "push_to_hub", no_push)
    os.truncate(run / "adapter" / ADAPTER, 40)
    rc, err = export_cli(capsys, run, tmp_path / "out", "--push-to-hub", "me/x")
    line = one_line(err)
    assert rc == 2 and ADAPTER in line and "damaged" in line
    assert "--checkpoint latest" in line and "step-000002" in line
    assert no_leftovers(tmp_path)
    rc, err = export_cli(capsys, run, tmp_path / "out", "--checkpoint", "latest")
    assert rc == 0, err
    ck2 = tensors(run / "checkpoints" / "step-000002" / "adapter" / ADAPTER)
    got = tensors(tmp_path / "out" / ADAPTER)
    assert ck2.keys() == got.keys() and all(torch.equal(ck2[k], got[k]) for k in got)


@pytest.mark.parametrize("damage", ["missing_weights", "missing_config", "config_not_json", "config_a_list"])
def test_missing_or_corrupt_adapter_files_are_one_line(run, tmp_path, capsys, damage):
    adapter = run / "adapter"
    if damage == "missing_weights":
        (adapter / ADAPTER).unlink()
    elif damage == "missing_config":
        (adapter / "adapter_config.json").unlink()
    elif damage == "config_not_json":
        (adapter / "adapter_config.json").write_text('{"r": 16, "target_')
    else:
        (adapter / "adapter_config.json").write_text("[1, 2]")
    rc, err = export_cli(capsys, run, tmp_path / "out")
    line = one_line(err)
    assert rc == 2 and "--checkpoint latest" in line
    assert (ADAPTER if damage == "missing_weights" else "adapter_config.json") in line
    assert no_leftovers(tmp_path)


def test_merge_of_a_truncated_adapter_is_one_line(run, tmp_path, capsys):
    os.truncate(run / "adapter" / ADAPTER, 40)
    rc, err = export_cli(capsys, run, tmp_path / "out", "--merge", "--dtype", "float32")
    assert rc == 2 and ADAPTER in one_line(err)
    assert no_leftovers(tmp_path)


def _rewrite_weights(folder, change):
    from safetensors.torch import save_file

    weights = tensors(folder / ADAPTER)
    save_file({k: v.contiguous() for k, v in change(weights).items()}, str(folder / ADAPTER))


@pytest.mark.parametrize("change", ["rank_8_tensors", "config_says_rank_8", "wrong_out_features", "extra"])
def test_tensors_that_do_not_fit_the_config_or_the_base_are_refused(run, tmp_path, capsys, change):
    adapter = run / "adapter"
    if change == "rank_8_tensors":  # a loadable file whose tensors do not have adapter_config's r
        _rewrite_weights(adapter, lambda w: {k: v[:8] if "lora_A" in k else v[:, :8] for k, v in w.items()})
    elif change == "config_says_rank_8":
        acfg = json.loads((adapter / "adapter_config.json").read_text())
        (adapter / "adapter_config.json").write_text(json.dumps({**acfg, "r": 8}))
    elif change == "wrong_out_features":  # lora_B of q_proj one row short of the base's q_proj
        name = next(k for k in tensors(adapter / ADAPTER) if "q_proj.lora_B" in k)
        _rewrite_weights(adapter, lambda w: {**w, name: w[name][:-1]})
    else:
        name = "base_model.model.model.layers.0.mlp.not_a_module.lora_A.weight"
        _rewrite_weights(adapter, lambda w: {**w, name: torch.zeros(16, 4)})
    rc, err = export_cli(capsys, run, tmp_path / "out")
    line = one_line(err)
    assert rc == 2 and "--checkpoint latest" in line
    assert {
        "rank_8_tensors": "shape",
        "config_says_rank_8": "shape",
        "wrong_out_features": "shape",
        "extra": "not_a_module",
    }[change] in line
    assert no_leftovers(tmp_path)


def test_a_checkpoint_whose_tensors_do_not_fit_is_refused(run, tmp_path, capsys):
    folder = run / "checkpoints" / "step-000001" / "adapter"
    _rewrite_weights(folder, lambda w: {k: v[:8] if "lora_A" in k else v[:, :8] for k, v in w.items()})
    rc, err = export_cli(capsys, run, tmp_path / "out", "--checkpoint", "1")
    line = one_line(err)
    assert rc == 2 and "step-000001" in line and "shape" in line
    assert no_leftovers(tmp_path)


def test_checkpoint_latest_skips_a_damaged_checkpoint(run, tmp_path, capsys):
    os.truncate(run / "checkpoints" / "step-000002" / "adapter" / ADAPTER, 100)
    rc = main(["export", str(run), "--output-dir", str(tmp_path / "out"), "--checkpoint", "latest"])
    out = capsys.readouterr().out
    assert rc == 0 and "step-000002" in out
    marker = json.loads((tmp_path / "out" / ".gcpo-lite-export").read_text())
    assert marker["checkpoint"] == 1


def test_no_intact_adapter_anywhere_is_refused_in_one_line(run, tmp_path, capsys):
    os.truncate(run / "adapter" / ADAPTER, 40)
    for step in ("step-000001", "step-000002"):
        os.truncate(run / "checkpoints" / step / "adapter" / ADAPTER, 40)
    rc, err = export_cli(capsys, run, tmp_path / "out")
    line = one_line(err)
    assert rc == 2 and ADAPTER in line and "no checkpoint" in line and "--checkpoint latest" not in line
    rc, err = export_cli(capsys, run, tmp_path / "out", "--checkpoint", "latest")
    assert rc == 2 and "no checkpoint" in one_line(err)
    assert no_leftovers(tmp_path)


def test_a_run_without_a_final_adapter_exports_its_newest_intact_checkpoint_and_says_so(
    run, tmp_path, capsys
):
    shutil.rmtree(run / "adapter")  # a run stopped before its end has no adapter/ yet
    os.truncate(run / "checkpoints" / "step-000002" / "adapter" / ADAPTER, 40)
    rc = main(["export", str(run), "--output-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0 and "step-000001" in out
    assert json.loads((tmp_path / "out" / ".gcpo-lite-export").read_text())["checkpoint"] == 1


# ---------------------------------------------------------------- item 3: a full disk names what was written


def _stage_names(err):
    return [w.strip("'\"(),;") for w in err.split() if ".out.gcpo-export-" in w]


DISK_FULL = {
    "oserror": lambda: OSError(errno.ENOSPC, "No space left on device"),
    "torch_save": lambda: RuntimeError(
        "[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file "
        "data/3: file write failed; unexpected pos 1920 vs 1856"
    ),
    "safetensors": lambda: Exception(
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
    ),
}


@pytest.mark.parametrize("shape", sorted(DISK_FULL))
def test_disk_full_during_merge_names_the_file_being_written(run, tmp_path, capsys, monkeypatch, shape):
    from transformers import PreTrainedModel

    def full(self, save_directory, **kwargs):
        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, "model.safetensors"), "wb") as f:
            f.write(b"\0" * 1000)  # the part that fitted
        raise DISK_FULL[shape]()

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    rc, err = export_cli(capsys, run, tmp_path / "out", "--merge", "--dtype", "float32")
    line = one_line(err)
    assert rc == 2 and "no space left" in line.lower()
    named = _stage_names(line)
    assert named and named[0].endswith("model.safetensors"), line
    assert "--output-dir" in line and "--resume" not in line and str(run) not in line
    assert no_leftovers(tmp_path)


def test_disk_full_while_copying_the_adapter_names_the_copy_not_the_source(
    run, tmp_path, capsys, monkeypatch
):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "sendfile", full)  # shutil's fast copy: it names the source and the copy
    rc, err = export_cli(capsys, run, tmp_path / "out")
    line = one_line(err)
    assert rc == 2 and "no space left" in line.lower()
    named = _stage_names(line)
    assert named and named[0].endswith(ADAPTER), line
    assert "--resume" not in line and str(run) not in line
    assert no_leftovers(tmp_path)


# ---------------------------------------------------------------- item 4: a damaged config.yaml


@pytest.mark.parametrize(
    "content",
    [b"model: [unclosed\ntrain: {", b"\xff\xfe\x00m\x00o\x00d\x00e\x00l", b"- a list\n- not a config\n"],
    ids=["not_yaml", "not_utf8", "not_a_mapping"],
)
def test_a_damaged_run_config_is_one_line_naming_it(run, tmp_path, capsys, content):
    (run / "config.yaml").write_bytes(content)
    rc, err = export_cli(capsys, run, tmp_path / "out")
    line = one_line(err)
    assert rc == 2 and str(run / "config.yaml") in line and "restore" in line
    assert no_leftovers(tmp_path)


def test_damaged_metrics_rows_do_not_stop_an_export(run, tmp_path, capsys):
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'7\n["a list"]\n{"step": 3, "loss": 0.5, \xff\xfe}\n')
    rc, err = export_cli(capsys, run, tmp_path / "out")
    assert rc == 0, err
