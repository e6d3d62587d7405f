"""The JIT build's lock (kernels/_ext.build_lock): a torch lock file left by a build that was killed is removed
instead of hanging every later build; a build another process is running is waited for."""

import subprocess
import sys
import textwrap
import time

from gcpo_lite.kernels._ext import build_lock


def test_a_killed_builds_lock_file_is_removed(tmp_path, capsys):
    (tmp_path / "lock").write_text("")  # what torch's FileBaton leaves when its process dies mid-build
    with build_lock(tmp_path):
        assert not (tmp_path / "lock").exists()
    assert "left by a build that was killed" in capsys.readouterr().err


def test_a_live_build_is_waited_for(tmp_path):
    (tmp_path / "lock").write_text("")
    holder = textwrap.dedent(f"""
        import fcntl, sys, time
        fh = open({str(tmp_path / "gcpo-lite-build.lock")!r}, "a")
        fcntl.flock(fh, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(1.5)
    """)
    child = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    with build_lock(tmp_path):
        waited = time.monotonic() - t0  # entered only once the other build let go (it holds the lock 1.5 s)
    child.wait()
    assert waited > 1.0
