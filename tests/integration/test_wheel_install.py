"""A wheel of the repository carries the kernels' C++ sources: installed without the checkout (not editable), the
native kernels JIT-compile from the installed package, pass their self-check, and `gcpo-lite doctor` says where
the sources came from.

The wheel is built as a build-isolated `pip install .` builds it: GCPO_LITE_SKIP_EXT=1 stands in for the torch
such a build has not, so no prebuilt gcpo_lite._C goes in and the kernels can only come from the sources the wheel
carries. It is built from a copy of the repository, so the checkout gets no build/ directory and concurrent edits
cannot land half-way in it. The venv takes torch & co. from the system (--system-site-packages), where the editable
gcpo-lite lives too: its own install must shadow that one (checked). The JIT cache is a fresh directory, so a build
the editable install cached cannot stand in for compiling. About 2 minutes on 2 cores, mostly the compile.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "runs",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".benchmarks",
    ".venv",
    "*.so",
    "*.o",
)
SETUP_TIMEOUT_S = 600
COMPILE_TIMEOUT_S = 1200  # a cold C++/OpenMP build: ~1-2 min on 2 cores, far more on a loaded CI runner
CHECK = """
import torch
from gcpo_lite import kernels
from gcpo_lite.kernels import _ext
assert kernels.set_backend("native") == "native"
print("self-check:", kernels.self_check("cpu") or "passed")
print("loaded from:", _ext._state["source"])
logits, ids = torch.randn(3, 11), torch.tensor([1, 2, 3])
torch.testing.assert_close(kernels.token_logprobs(logits, ids), kernels.reference.token_logprobs(logits, ids))
"""


def _run(cmd, cwd, env, timeout=SETUP_TIMEOUT_S) -> tuple[str, str]:
    """(stdout, a log of the whole call for assertion messages); fails the test on a non-zero exit."""
    r = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    log = (
        f"$ {' '.join(map(str, cmd))}\n(exit {r.returncode})\n"
        f"--- stdout:\n{r.stdout[-8000:]}\n--- stderr:\n{r.stderr[-8000:]}"
    )
    assert r.returncode == 0, log
    return r.stdout, log


def _clean_env(venv: Path, ext_dir: Path) -> dict:
    drop = ("PYTHONPATH", "PYTHONHOME", "TORCH_EXTENSIONS_DIR", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("GCPO_LITE_")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        GCPO_LITE_EXT_DIR=str(ext_dir),
        GCPO_LITE_CACHE=os.environ.get("GCPO_LITE_CACHE", str(ext_dir.parent / "cache")),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
    )
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, wheel, env, cwd): the repository's wheel installed alone into a fresh venv."""
    tmp = tmp_path_factory.mktemp("wheel_install")
    venv, ext_dir, cwd = tmp / "venv", tmp / "ext", tmp / "cwd"
    cwd.mkdir()
    env = _clean_env(venv, ext_dir)
    shutil.copytree(ROOT, tmp / "src", ignore=COPY_IGNORE)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist"]
    _run([*build, tmp / "src"], cwd, {**env, "GCPO_LITE_SKIP_EXT": "1"})
    (wheel,) = (tmp / "dist").glob("gcpo_lite-*.whl")
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd, env)
    # --ignore-installed: install beside the system's editable gcpo-lite, never uninstall it
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed"]
    _run([*pip, wheel], cwd, env)
    return venv, wheel, env, cwd


def test_the_wheel_carries_no_prebuilt_extension(installed):
    _, wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("gcpo_lite/_C")], (
        f"prebuilt gcpo_lite._C in {wheel.name}: {names}"
    )


def test_installed_wheel_compiles_and_self_checks_its_kernels(installed):
    venv, _, env, cwd = installed
    py, cli = venv / "bin" / "python", venv / "bin" / "gcpo-lite"
    where, log = _run([py, "-c", "import gcpo_lite; print(gcpo_lite.__file__)"], cwd, env)
    assert Path(where.strip()).resolve().is_relative_to(venv.resolve()), f"not the wheel's gcpo_lite:\n{log}"
    out, log = _run([cli, "build-ext", "--quiet"], cwd, env, timeout=COMPILE_TIMEOUT_S)
    assert "native kernels: OK" in out and "compiling native kernels" in log, log
    assert (Path(env["GCPO_LITE_EXT_DIR"]) / "gcpo_lite_ops.so").is_file(), log
    out, log = _run([py, "-c", CHECK], cwd, env)
    assert "self-check: passed" in out and env["GCPO_LITE_EXT_DIR"] in out, log
    out, log = _run([cli, "doctor", "--run-dir", cwd / "runs"], cwd, env)
    assert "kernels: native" in out, log
    assert "native cpu kernels vs the PyTorch reference (fwd + bwd, fp32 + bf16): passed" in out, log
    site = Path(where.strip()).resolve().parent
    assert f"kernel sources: installed package ({site / 'csrc'})" in out, log
