"""One run per directory: a lock against concurrent runs, and no silent reuse of a finished run."""

import fcntl
import os
import shutil
import subprocess
import sys
import time

import pytest

from gcpo_lite.cli import main
from gcpo_lite.run.directory import LOCK_NAME, RunDirError, lock_run_dir, prepare_new_run, unlock_run_dir

FAST = [
    "--no-progress",
    "--max-steps",
    "1",
    "gcpo.num_generations=4",
    "gcpo.max_completion_length=4",
    "train.batch_size=8",
    "train.eval_steps=0",
    "data.eval_size=4",
    "train.num_threads=1",
    "model.gradient_checkpointing=false",
]


def snapshot(root):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


def test_a_second_process_is_refused_at_once(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time\n"
                f"fd = os.open({str(run_dir / LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
                "print('locked', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.time()
        assert main(["train", "--output-dir", str(run_dir), *FAST]) == 2
        assert time.time() - t0 < 5  # refused before the model loads
        err = capsys.readouterr().err
        assert "in use by another gcpo-lite run" in err and str(holder.pid) in err and "Traceback" not in err
        assert not (run_dir / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died: the OS released its lock, the directory is usable again
    lock_run_dir(run_dir)
    unlock_run_dir(run_dir)


def test_lock_conflicts_with_any_other_holder(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: as another process would hold it
    try:
        with pytest.raises(RunDirError, match="in use"):
            lock_run_dir(run_dir)
    finally:
        os.close(fd)


def test_train_into_a_finished_run_is_refused(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = snapshot(run_dir)
    assert main(["train", "--output-dir", str(run_dir), *FAST]) == 2
    err = capsys.readouterr().err
    assert "holds a gcpo-lite run" in err and "--resume" in err and "--overwrite" in err
    assert snapshot(run_dir) == before  # metrics not appended, latest not moved


def test_overwrite_moves_the_old_run_aside(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = snapshot(run_dir)
    assert main(["train", "--output-dir", str(run_dir), "--overwrite", *FAST]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and snapshot(aside[0]) == before
    assert str(aside[0]) in capsys.readouterr().out
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [r for r in rows if '"reward_mean"' in r].__len__() == 1  # a fresh run, not appended


def test_unrelated_files_are_not_trained_into(tmp_path):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "thesis.tex").write_text("years of work")
    with pytest.raises(RunDirError, match="not empty"):
        prepare_new_run(run_dir)
    assert (run_dir / "thesis.tex").read_text() == "years of work"


def test_help_describes_lock_and_overwrite(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--overwrite" in text and "exclusive lock" in text and "fails at once" in text


def test_overwrite_of_the_current_directory_is_refused(finished_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = snapshot(run_dir)
    monkeypatch.chdir(run_dir / "checkpoints")  # inside the run: moving it would move the cwd too
    with pytest.raises(RunDirError, match="current directory"):
        prepare_new_run(run_dir, overwrite=True)
    monkeypatch.chdir(run_dir)
    with pytest.raises(RunDirError, match="current directory"):
        prepare_new_run(".", overwrite=True)
    assert snapshot(run_dir) == before and not list(tmp_path.glob("run.old-*"))
    lock_run_dir(run_dir)  # refused cleanly: the lock was released
    unlock_run_dir(run_dir)


def test_a_replaced_directory_is_locked_afresh(tmp_path):
    run_dir = tmp_path / "run"
    lock_run_dir(run_dir)
    os.rename(run_dir, tmp_path / "moved")  # someone moved it away while this process held its lock
    run_dir.mkdir()
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # and another run locked the new directory at that path
    try:
        with pytest.raises(RunDirError, match="in use"):
            lock_run_dir(run_dir)
    finally:
        os.close(fd)
    lock_run_dir(run_dir)
    unlock_run_dir(run_dir)


def test_resume_and_overwrite_together_are_refused(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = snapshot(run_dir)
    assert main(["train", "--resume", str(run_dir), "--overwrite", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pass one" in err and "Traceback" not in err
    assert snapshot(run_dir) == before and not list(tmp_path.glob("run.old-*"))


def test_a_refused_directory_is_left_as_found(tmp_path, capsys):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "thesis.tex").write_text("years of work")
    assert main(["train", "--output-dir", str(run_dir), *FAST]) == 2
    err = capsys.readouterr().err
    assert "is not empty (thesis.tex)" in err and "--overwrite" in err
    assert sorted(p.name for p in run_dir.iterdir()) == ["thesis.tex"]  # no lock file left behind


def test_resume_of_a_locked_run_is_refused_and_touches_nothing(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "checkpoints" / ".tmp-step-000003-abc").mkdir()  # the holder's save in progress
    before = snapshot(run_dir)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, b"4242\n")
    try:
        t0 = time.time()
        assert main(["train", "--resume", str(run_dir), "--no-progress", "train.max_steps=3"]) == 2
        assert time.time() - t0 < 5
    finally:
        os.close(fd)
    err = capsys.readouterr().err
    assert "in use by another gcpo-lite run (pid 4242)" in err and str(run_dir) in err
    assert snapshot(run_dir) == before and (run_dir / "checkpoints" / ".tmp-step-000003-abc").is_dir()


def test_overwrite_through_a_symlinked_output_dir(finished_run, tmp_path, capsys):
    real = tmp_path / "real"
    shutil.copytree(finished_run, real)
    before = snapshot(real)
    (tmp_path / "link").symlink_to(real)
    prepare_new_run(tmp_path / "link", overwrite=True)
    try:
        aside = [p for p in tmp_path.iterdir() if p.name.startswith("real.old-")]
        assert len(aside) == 1 and snapshot(aside[0]) == before
        assert str(aside[0]) in capsys.readouterr().out
        assert (tmp_path / "link").resolve() == real and run_contents_of(real) == []
    finally:
        unlock_run_dir(tmp_path / "link")


def run_contents_of(path):
    return [p.name for p in path.iterdir() if p.name != LOCK_NAME]


def test_a_lock_file_removed_while_locking_is_not_trusted(tmp_path, monkeypatch):
    from gcpo_lite.run import directory as rundir

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    real_lock_file, calls = rundir._lock_file, []

    def racing(run, path):
        fd = real_lock_file(run, path)
        if not calls:  # a refused run unlinked the file between our open and our flock
            os.unlink(path)
        calls.append(fd)
        return fd

    monkeypatch.setattr(rundir, "_lock_file", racing)
    lock_run_dir(run_dir)
    try:
        assert len(calls) == 2  # it locked again, the file now at the path
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # a newcomer opening the path conflicts with us
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        unlock_run_dir(run_dir)
