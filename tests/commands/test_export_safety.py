"""`gcpo-lite export` never deletes or overwrites what it did not create (issue: export wiped the run)."""

import shutil

import pytest

from gcpo_lite.cli import main
from gcpo_lite.export.marker import MARKER


def snapshot(root):
    """{relative path: bytes} of every file under root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def run(finished_run, tmp_path):
    run_dir = tmp_path / "runs" / "mine"
    shutil.copytree(finished_run, run_dir)
    (tmp_path / "runs" / "sibling").mkdir()
    (tmp_path / "runs" / "sibling" / "notes.txt").write_text("keep me")
    return run_dir


def export_cli(run_dir, out, *extra):
    return main(["export", str(run_dir), "--output-dir", str(out), *extra])


@pytest.mark.parametrize("where", ["run", "checkpoints", "parent", "grandparent"])
def test_output_inside_or_around_the_run_is_refused(run, where, capsys):
    out = {
        "run": run,
        "checkpoints": run / "checkpoints",
        "parent": run.parent,
        "grandparent": run.parent.parent,
    }[where]
    before = snapshot(run.parent.parent)
    assert export_cli(run, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "run directory" in err and "Traceback" not in err
    assert snapshot(run.parent.parent) == before  # the run, its checkpoints and its siblings intact


def test_symlink_into_the_run_is_refused(run, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(run / "checkpoints")
    before = snapshot(run)
    assert export_cli(run, link) == 2
    assert "run directory" in capsys.readouterr().err
    assert snapshot(run) == before and link.is_symlink()


def test_unrelated_nonempty_directory_is_refused_even_with_overwrite(run, tmp_path, capsys):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8 not really")
    for extra in ((), ("--overwrite",)):
        assert export_cli(run, out, *extra) == 2
        assert "not a gcpo-lite export" in capsys.readouterr().err
    assert snapshot(out) == {"holiday.jpg": b"\xff\xd8 not really"}


def test_a_file_in_the_way_is_refused_not_moved(run, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("my file")
    assert export_cli(run, out, "--overwrite") == 2
    assert "not a directory" in capsys.readouterr().err
    assert out.read_text() == "my file"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_fresh_then_refused_then_overwritten(run, tmp_path, capsys):
    out = tmp_path / "out" / "adapter"
    assert export_cli(run, out) == 0
    assert (out / MARKER).is_file() and (out / "adapter_model.safetensors").is_file()
    first = snapshot(out)
    assert export_cli(run, out) == 2  # a previous export: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(out) == first
    assert export_cli(run, out, "--checkpoint", "1", "--overwrite") == 0
    assert (out / MARKER).is_file()
    assert (
        snapshot(out)["adapter_model.safetensors"] != first["adapter_model.safetensors"]
    )  # step 1, not final
    assert sorted(p.name for p in out.parent.iterdir()) == ["adapter"]  # no temp or old folders left


def test_empty_existing_directory_is_used(run, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert export_cli(run, out) == 0
    assert (out / MARKER).is_file()


def test_failed_export_leaves_the_previous_one(run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert export_cli(run, out) == 0
    before = snapshot(out)
    import gcpo_lite.export.write as ex

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ex, "model_card", broken)
    with pytest.raises(RuntimeError):
        export_cli(run, out, "--overwrite")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "runs"]


def test_help_describes_the_promise(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--overwrite" in text and "nothing is ever deleted" in text


# ---------------------------------------------------------------- the swap, the marker, the corners


def test_marker_records_the_export(run, tmp_path):
    import json

    out = tmp_path / "out"
    assert export_cli(run, out, "--checkpoint", "1") == 0
    marker = json.loads((out / MARKER).read_text())
    assert marker["tool"] == "gcpo-lite export" and marker["run_dir"] == str(run.resolve())
    assert marker["checkpoint"] == 1 and marker["merged"] is False and marker["time"]
    assert "gcpo_lite_version" in marker and "version" in marker
    assert set(marker["files"]) == set(snapshot(out)) - {MARKER}


def test_refusal_comes_before_any_model_is_loaded(run, monkeypatch):
    import gcpo_lite.models.loading as models
    from gcpo_lite.config import ConfigError
    from gcpo_lite.export.target import ExportTargetError
    from gcpo_lite.export.write import export

    def no_model(*a, **k):
        raise AssertionError("loaded a model before checking --output-dir")

    monkeypatch.setattr(models, "resolve_model", no_model)
    with pytest.raises(ExportTargetError) as e:
        export(run, run / "checkpoints")
    assert isinstance(e.value, ConfigError) and str(e.value).count("\n") <= 2


def test_files_added_to_a_previous_export_are_not_deleted(run, tmp_path, capsys):
    out = tmp_path / "out"
    assert export_cli(run, out) == 0
    (out / "my_notes.md").write_text("results of my eval")
    before = snapshot(out)
    assert export_cli(run, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "my_notes.md" in err and "did not write" in err
    assert snapshot(out) == before


def test_a_fake_or_broken_marker_is_not_a_previous_export(run, tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / MARKER).write_text("not json")
    (out / "table.csv").write_text("a,b\n1,2\n")
    assert export_cli(run, out, "--overwrite") == 2
    assert "not a gcpo-lite export" in capsys.readouterr().err
    assert snapshot(out) == {MARKER: b"not json", "table.csv": b"a,b\n1,2\n"}


def test_a_folder_that_looks_like_the_temporary_one_is_left_alone(run, tmp_path):
    import os

    lookalike = tmp_path / f".out.tmp-{os.getpid()}"  # the name earlier versions wrote to, then removed
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("mine")
    assert export_cli(run, tmp_path / "out") == 0
    assert (lookalike / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [lookalike.name, "out", "runs"]


def test_a_failed_swap_puts_the_previous_export_back(run, tmp_path, monkeypatch):
    """The new export is complete but cannot be moved in: the previous one is restored, not lost."""
    from pathlib import Path

    out = tmp_path / "out"
    assert export_cli(run, out) == 0
    before = snapshot(out)
    rename = Path.rename

    def flaky(self, target):
        if Path(target) == out and self.name != "old":  # the move of the new export into place
            raise OSError("device busy")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", flaky)
    with pytest.raises(OSError, match="device busy"):
        export_cli(run, out, "--overwrite")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "runs"]


def test_a_file_above_the_output_is_refused(run, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file")
    assert export_cli(run, blocker / "adapter") == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err
    assert blocker.read_text() == "a file"


def test_a_symlink_to_an_empty_directory_elsewhere_is_refused(run, tmp_path, capsys):
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "out"
    link.symlink_to(target)
    assert export_cli(run, link) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert link.is_symlink() and target.is_dir() and not any(target.iterdir())


def test_merged_export_can_be_overwritten(run, tmp_path):
    out = tmp_path / "merged"
    assert export_cli(run, out, "--merge", "--dtype", "float32") == 0
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert export_cli(run, out, "--merge", "--dtype", "float32", "--overwrite") == 0
    assert (out / MARKER).is_file() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged", "runs"]
