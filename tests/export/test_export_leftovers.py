"""What export leaves behind and what it may replace (issue 28): staging folders of killed exports, OUT given
as the current directory, and --overwrite of an export whose files the user edited."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from gcpo_lite.cli import main
from gcpo_lite.export.marker import MARKER


@pytest.fixture
def run(finished_run, tmp_path):
    run_dir = tmp_path / "runs" / "mine"
    shutil.copytree(finished_run, run_dir)
    return run_dir


def export_cli(run_dir, out, *extra):
    return main(["export", str(run_dir), "--output-dir", str(out), *extra])


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- stale staging folders


def test_the_staging_folder_records_its_owner(run, tmp_path, monkeypatch):
    import gcpo_lite.export.write as write

    seen = []
    real = write.write_export

    def spy(folder, job, echo=print):
        seen.append(folder.parent.name)
        return real(folder, job, echo)

    monkeypatch.setattr(write, "write_export", spy)
    assert export_cli(run, tmp_path / "out") == 0
    assert seen and seen[0].startswith(f".out.gcpo-export-{os.getpid()}-")


def test_a_killed_exports_staging_folder_is_removed_by_the_next_export(run, tmp_path, capsys):
    stale = tmp_path / f".out.gcpo-export-{dead_pid()}-k1ll3d00"
    (stale / "new").mkdir(parents=True)
    (stale / "new" / "model.safetensors").write_bytes(b"\0" * 300_000)  # a partial merge
    assert export_cli(run, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert not stale.exists() and stale.name in out and "removed" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "runs"]


def test_staging_folders_of_unknown_or_live_owners_are_reported_not_removed(run, tmp_path, capsys):
    unknown = tmp_path / ".out.gcpo-export-ab12cd34"  # written by an export before pids were recorded
    (unknown / "new").mkdir(parents=True)
    (unknown / "new" / "model.safetensors").write_bytes(b"\0" * 2_000_000)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = tmp_path / f".out.gcpo-export-{alive.pid}-l1ve0000"  # another export, still running
        (live / "new").mkdir(parents=True)
        assert export_cli(run, tmp_path / "out") == 0
    finally:
        alive.kill()
        alive.wait()
    out = capsys.readouterr().out
    assert unknown.is_dir() and live.is_dir()
    line = next(ln for ln in out.splitlines() if unknown.name in ln)
    assert "MiB" in line and f"rm -rf {unknown}" in line
    assert live.name not in out


def test_a_previous_export_left_in_a_killed_swap_is_kept(run, tmp_path, capsys):
    stale = tmp_path / f".out.gcpo-export-{dead_pid()}-sw4p0000"
    (stale / "old").mkdir(parents=True)
    (stale / "old" / "README.md").write_text("the previous export")
    assert export_cli(run, tmp_path / "out") == 0
    assert (stale / "old" / "README.md").read_text() == "the previous export"
    assert str(stale / "old") in capsys.readouterr().out


def test_other_outputs_staging_folders_are_not_touched(run, tmp_path, capsys):
    other = tmp_path / f".other.gcpo-export-{dead_pid()}-0th3r000"
    (other / "new").mkdir(parents=True)
    assert export_cli(run, tmp_path / "out") == 0
    assert other.is_dir() and other.name not in capsys.readouterr().out


# ---------------------------------------------------------------- OUT given as "."


def test_export_into_the_current_directory(run, tmp_path, monkeypatch, capsys):
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    assert export_cli(run, ".") == 0
    assert (here / MARKER).is_file() and (here / "adapter_model.safetensors").is_file()
    assert os.path.samefile(".", here)  # the shell's directory is still the export's
    assert (here / "README.md").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["empty", "runs"]
    capsys.readouterr()
    assert export_cli(run, ".", "--checkpoint", "1", "--overwrite") == 0
    assert json.loads((here / MARKER).read_text())["checkpoint"] == 1
    assert f"`cd {here}`" in capsys.readouterr().out  # the shell's folder was swapped out: say so
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "runs"]


# ---------------------------------------------------------------- --overwrite and edited files


def test_marker_records_sizes_and_hashes(run, tmp_path):
    import hashlib

    out = tmp_path / "out"
    assert export_cli(run, out) == 0
    marker = json.loads((out / MARKER).read_text())
    files = snapshot(out)
    del files[MARKER]
    assert marker["hashes"] == {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()
    }


@pytest.mark.parametrize("edited", ["README.md", "adapter_config.json"])
def test_overwrite_refuses_an_export_the_user_edited(run, tmp_path, capsys, edited):
    out = tmp_path / "out"
    assert export_cli(run, out) == 0
    path = out / edited
    text = path.read_text()
    path.write_text(text.replace("GCPO", "gcpo") if edited == "README.md" else text.replace('"r"', '"R"'))
    assert len(path.read_text()) == len(text)  # same size: only the hash tells
    before = snapshot(out)
    assert export_cli(run, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert edited in err and "--discard-edits" in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1
    assert snapshot(out) == before
    assert export_cli(run, out, "--overwrite", "--discard-edits") == 0
    assert (out / edited).read_text() == text  # the edit was discarded, as asked
    assert json.loads((out / MARKER).read_text())["hashes"][edited]["size"] == (out / edited).stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "runs"]


def test_overwrite_of_an_unedited_export_still_works(run, tmp_path):
    out = tmp_path / "out"
    assert export_cli(run, out) == 0
    (out / "README.md").unlink()  # removing a file export wrote loses nothing of the user's
    assert export_cli(run, out, "--overwrite") == 0
    assert (out / "README.md").is_file()
