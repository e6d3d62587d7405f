"""Loads the compiled ops (`torch.ops.gcpo_lite.*`) once per process and records why when it can't.

Order: a prebuilt `gcpo_lite._C` (setup.py with `--no-build-isolation`), else a ninja JIT build of
the C++/CUDA sources into a cache dir (first use only: a visible message, then cached; ~1 min on 2
cores). An extension must be compiled against the torch it runs with, which is why a build-isolated
`pip install -e .` compiles nothing.

The sources: the installed package's gcpo_lite/csrc/ (a wheel or `pip install .`: setup.py's build_py
copies the repository's csrc/ there), else the checkout's csrc/ (an editable install or a source tree).
`sources_found()` says which, or where it looked; `gcpo-lite doctor` prints it.

Environment:
  GCPO_LITE_NO_JIT=1      never compile at runtime (use only a prebuilt extension)
  GCPO_LITE_DEBUG=1       compile with -O0 -g
  GCPO_LITE_PORTABLE=1    no -march=native (for a build dir shared between different CPUs)
  GCPO_LITE_EXT_DIR=path  JIT build/cache dir (default ~/.cache/gcpo-lite/ext/<torch>-<device>-<py>-isa<hash>)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

log = logging.getLogger("gcpo_lite.kernels")

REBUILD_HINT = (
    "rebuild with `gcpo-lite build-ext` (JIT, cached) or "
    "`pip install -e . --no-build-isolation` (ahead of time), then check `gcpo-lite doctor`"
)
PACKAGE_CSRC = Path(__file__).resolve().parents[1] / "csrc"
CHECKOUT_CSRC = Path(__file__).resolve().parents[2] / "csrc"


def _find_csrc() -> tuple[Optional[Path], str]:
    """(the sources' directory or None, where they were found or where they were looked for)."""
    for where, path in (("installed package", PACKAGE_CSRC), ("source checkout", CHECKOUT_CSRC)):
        if (path / "gcpo_ops.cpp").is_file():
            return path, f"{where} ({path})"
    return None, (
        f"none found (looked in the installed package, {PACKAGE_CSRC}, and a source checkout, {CHECKOUT_CSRC}); "
        "reinstall gcpo-lite from a wheel or source tree that includes them"
    )


CSRC, CSRC_WHERE = _find_csrc()

_state: dict = {
    "tried": False,
    "ok": False,
    "why": "not loaded yet",
    "source": None,
    "cuda": False,
    "build_dir": None,
}


def sources_found() -> str:
    """Where the C++/CUDA sources the JIT build compiles were found, or that none were (for doctor)."""
    return CSRC_WHERE


def _sources(with_cuda: bool, csrc: Optional[Path] = None) -> list[str]:
    csrc = csrc or CSRC
    srcs = [csrc / "gcpo_ops.cpp", *sorted((csrc / "cpu").glob("*.cpp"))]
    if with_cuda:
        srcs += sorted((csrc / "cuda").glob("*.cu"))
    return [str(s) for s in srcs]


@functools.lru_cache(maxsize=None)
def cuda_build_possible() -> tuple[bool, str]:
    """True when torch has CUDA and an nvcc of the same major version is installed."""
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU build"
    from torch.utils.cpp_extension import CUDA_HOME

    nvcc = Path(CUDA_HOME or "", "bin", "nvcc")
    if not CUDA_HOME or not nvcc.exists():
        return False, "no nvcc found (set CUDA_HOME)"
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    major = torch.version.cuda.split(".")[0]
    if f"release {major}." not in out:
        return False, f"nvcc at {nvcc} does not match torch's CUDA {torch.version.cuda}"
    return True, ""


def compile_flags(debug: bool) -> tuple[list[str], list[str], list[str]]:
    """(cxx flags, nvcc flags, link flags); shared with setup.py."""
    opt = ["-O0", "-g"] if debug else ["-O3"]
    march = [] if os.environ.get("GCPO_LITE_PORTABLE") else ["-march=native"]
    cxx = [*opt, *march, "-fopenmp"]  # torch adds -std=c++20
    nvcc = ["-O0", "-g", "-G"] if debug else ["-O3", "-lineinfo"]
    nvcc += ["--expt-relaxed-constexpr"]
    return cxx, nvcc, ["-fopenmp"]


def default_build_dir(with_cuda: bool) -> Path:
    env = os.environ.get("GCPO_LITE_EXT_DIR")
    if env:
        return Path(env)
    dev = f"cu{torch.version.cuda.replace('.', '')}" if with_cuda else "cpu"
    tag = f"torch{torch.__version__.split('+')[0]}-{dev}-py{sys.version_info.major}{sys.version_info.minor}"
    if not os.environ.get("GCPO_LITE_PORTABLE"):
        tag += f"-isa{_cpu_fingerprint()}"  # -march=native code must not be reused on another CPU (SIGILL)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "gcpo-lite", "ext", tag)


def _cpu_fingerprint() -> str:
    """Short hash of the CPU's feature flags (Linux), so -march=native builds are cached per ISA."""
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.machine()
    return hashlib.sha1(flags.encode()).hexdigest()[:8]


def _try_prebuilt() -> Optional[str]:
    """Import gcpo_lite._C; returns None on success, else the reason."""
    try:
        import gcpo_lite._C  # noqa: F401  (registers torch.ops.gcpo_lite.*)

        return None
    except ImportError as e:  # absent, or built against another torch (undefined symbol)
        return f"no prebuilt gcpo_lite._C ({str(e).splitlines()[0][:160]})"


def _digest(srcs: list[str], flags: list[str]) -> str:
    """Identifies a build: every source and header under csrc/, and the flags."""
    files = sorted({*srcs, *map(str, CSRC.rglob("*.h")), *map(str, CSRC.rglob("*.cuh"))})
    return hashlib.sha1(b"".join(Path(f).read_bytes() for f in files) + " ".join(flags).encode()).hexdigest()


def _jit_plan() -> tuple[bool, str, list[str], tuple, Path, str]:
    with_cuda, why_not_cuda = cuda_build_possible()
    flags = compile_flags(bool(os.environ.get("GCPO_LITE_DEBUG")))
    srcs = _sources(with_cuda)
    return (
        with_cuda,
        why_not_cuda,
        srcs,
        flags,
        default_build_dir(with_cuda),
        _digest(srcs, flags[0] + flags[1]),
    )


def cached_build_is_current() -> bool:
    """Whether a JIT build of the current sources exists (loading it then compiles nothing)."""
    if CSRC is None:
        return False
    *_, build_dir, digest = _jit_plan()
    stamp = build_dir / "sources.sha1"
    return stamp.exists() and stamp.read_text() == digest and (build_dir / "gcpo_lite_ops.so").exists()


def _jit_build(verbose: bool) -> None:
    from torch.utils.cpp_extension import load

    with_cuda, why_not_cuda, srcs, (cxx, nvcc, ld), build_dir, digest = _jit_plan()
    build_dir.mkdir(parents=True, exist_ok=True)
    _state["build_dir"] = str(build_dir)
    stamp = build_dir / "sources.sha1"
    cached = stamp.exists() and stamp.read_text() == digest
    if not cached:
        what = "C++/OpenMP" + (" + CUDA" if with_cuda else f" only ({why_not_cuda})")
        took = "a few minutes" if with_cuda else "about a minute on 2 cores"
        print(
            f"gcpo-lite: compiling native kernels ({what}) from the {CSRC_WHERE} into {build_dir}; "
            f"first use only, {took} ...",
            file=sys.stderr,
            flush=True,
        )
    t0 = time.time()
    with build_lock(build_dir):
        _load_ops(load, srcs, cxx, nvcc, ld, build_dir, verbose)
    stamp.write_text(digest)
    if not cached:
        print(f"gcpo-lite: native kernels ready ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    _state["cuda"] = with_cuda


def _load_ops(load, srcs, cxx, nvcc, ld, build_dir: Path, verbose: bool) -> None:
    load(
        name="gcpo_lite_ops",
        sources=srcs,
        extra_cflags=cxx,
        extra_cuda_cflags=nvcc,
        extra_ldflags=ld,
        extra_include_paths=[str(CSRC)],
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=verbose,
    )


@contextlib.contextmanager
def build_lock(build_dir: Path):
    """Hold gcpo-lite's own lock on build_dir while torch builds there. torch's build lock is a plain file
    (build_dir/lock) that a process killed mid-build leaves behind, and every later build then waits on it
    forever. Ours is an flock, released by the OS however the holder ends: while we hold it no other gcpo-lite
    process is building here, so a torch lock file present is stale and is removed."""
    try:
        import fcntl
    except ImportError:  # not POSIX: torch's own lock only
        yield
        return
    with open(build_dir / "gcpo-lite-build.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print(
                "gcpo-lite: another process is building the native kernels; waiting for it", file=sys.stderr
            )
            fcntl.flock(fh, fcntl.LOCK_EX)
        stale = build_dir / "lock"
        if stale.exists():
            stale.unlink(missing_ok=True)
            print(f"gcpo-lite: removed {stale}, left by a build that was killed", file=sys.stderr, flush=True)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load(verbose: bool = False) -> bool:
    """Make torch.ops.gcpo_lite.* available; True on success. Tries once per process."""
    if _state["tried"]:
        return _state["ok"]
    _state["tried"] = True
    why_prebuilt = _try_prebuilt()
    if why_prebuilt is None:
        _state.update(
            ok=True,
            why="",
            source="prebuilt gcpo_lite._C",
            cuda=torch._C._dispatch_has_kernel_for_dispatch_key("gcpo_lite::token_logprobs_fwd", "CUDA"),
        )
        return True
    if os.environ.get("GCPO_LITE_NO_JIT"):
        _state["why"] = f"{why_prebuilt}; JIT disabled by GCPO_LITE_NO_JIT"
        return False
    if CSRC is None:
        _state["why"] = f"{why_prebuilt}; C++ sources to JIT-compile: {CSRC_WHERE}"
        return False
    if shutil.which("ninja") is None and not _ninja_module():
        _state["why"] = f"{why_prebuilt}; ninja is not installed (pip install ninja)"
        return False
    try:
        _jit_build(verbose)
    except Exception as e:  # compiler missing, compile error, ...: keep the tail, which names the cause
        lines = str(e).splitlines()
        first_error = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else repr(e))
        _state["why"] = (
            f"JIT build failed: {first_error.strip()[:400]} (run `gcpo-lite build-ext` for the full log)"
        )
        return False
    _state.update(ok=True, why="", source=f"JIT build in {_state['build_dir']}")
    return True


def _ninja_module() -> bool:
    try:
        import ninja  # noqa: F401

        return True
    except ImportError:
        return False


def available() -> bool:
    return load()


def why_unavailable() -> str:
    load()
    return _state["why"]


def has_cuda() -> bool:
    """Whether the loaded extension has CUDA kernels."""
    return load() and bool(_state["cuda"])


def require(device: Optional[torch.device] = None) -> None:
    """Raise with the rebuild command unless the native ops can run on `device`."""
    if not load():
        raise RuntimeError(f"gcpo-lite native kernels are unavailable: {_state['why']}; {REBUILD_HINT}")
    if device is not None and device.type == "cuda" and not _state["cuda"]:
        raise RuntimeError(
            "gcpo-lite native kernels were built without CUDA "
            f"({cuda_build_possible()[1] or 'CPU-only build'}); {REBUILD_HINT}"
        )


def build(verbose: bool = True) -> str:
    """Build (or load the cached build of) the extension; returns one status line. For `gcpo-lite build-ext`."""
    ok = load(verbose=verbose)
    if not ok:
        return f"native kernels: NOT available: {_state['why']}"
    return f"native kernels: OK ({_state['source']}; CUDA kernels: {'yes' if _state['cuda'] else 'no'})"
