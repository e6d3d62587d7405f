"""Build script. Metadata lives in pyproject.toml; this file only decides about the native extension.

The extension must be compiled against the torch it runs with. Under pip's default build
isolation there is no torch in the build environment, so nothing is compiled here and the
ops JIT-compile on first use (see gcpo_lite/kernels/_ext.py, or run `gcpo-lite build-ext`).

  pip install -e .                         # no compile; JIT on first use
  pip install -e . --no-build-isolation    # compile gcpo_lite._C now against the installed torch
  GCPO_LITE_DEBUG=1 pip install -e . --no-build-isolation   # -O0 -g (and -G for CUDA)
  GCPO_LITE_SKIP_EXT=1 ...                 # never compile here
  GCPO_LITE_PORTABLE=1 ...                 # no -march=native: for a wheel meant for other machines

CUDA sources are compiled only when the installed torch has CUDA and an nvcc of the same major
version is found (CUDA_HOME); otherwise the C++/OpenMP CPU kernels alone.

Whatever is compiled here, build_py copies csrc/ (which stays at the repository root) into the built package
as gcpo_lite/csrc/, so a wheel, `pip install .` or `pip install git+...` can still JIT-compile the kernels.
Nothing here imports torch unless it is already installed: a build-isolated build must not pull one in.
"""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
SOURCE_SUFFIXES = (".cpp", ".cu", ".h", ".cuh")  # not the .o/.so a local build may leave beside them


def _say(msg: str) -> None:
    print(f"gcpo-lite setup: {msg}", file=sys.stderr)


def _ext_helpers():
    """gcpo_lite/kernels/_ext.py, loaded by path so the package (and its dependencies) is not imported."""
    spec = importlib.util.spec_from_file_location(
        "_gcpo_lite_ext", ROOT / "gcpo_lite" / "kernels" / "_ext.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def native_extension() -> dict:
    if os.environ.get("GCPO_LITE_SKIP_EXT"):
        _say("GCPO_LITE_SKIP_EXT set: not compiling the native kernels")
        return {}
    try:
        import torch  # noqa: F401
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        _say(
            "torch is not importable in this build environment (pip build isolation): not compiling; "
            "the native kernels JIT-compile on first use, or run `gcpo-lite build-ext`"
        )
        return {}
    ext = _ext_helpers()
    with_cuda, why_not = ext.cuda_build_possible()
    cxx, nvcc, ld = ext.compile_flags(bool(os.environ.get("GCPO_LITE_DEBUG")))
    sources = [os.path.relpath(s, ROOT) for s in ext._sources(with_cuda, CSRC)]
    kwargs = dict(name="gcpo_lite._C", sources=sources, include_dirs=[str(CSRC)], extra_link_args=ld)
    if with_cuda:
        _say("compiling gcpo_lite._C with C++/OpenMP and CUDA kernels")
        module = CUDAExtension(**kwargs, extra_compile_args={"cxx": cxx, "nvcc": nvcc})
    else:
        _say(f"compiling gcpo_lite._C with C++/OpenMP kernels only ({why_not})")
        module = CppExtension(**kwargs, extra_compile_args={"cxx": cxx})
    return {"ext_modules": [module], "cmdclass": {"build_ext": BuildExtension.with_options(use_ninja=True)}}


class BuildPyWithKernelSources(build_py):
    """build_py that also copies csrc/ into the built package as gcpo_lite/csrc/, where
    gcpo_lite/kernels/_ext.py looks first. An editable install reads the checkout's csrc/ instead."""

    def _csrc_files(self) -> list[tuple[Path, Path]]:
        """(destination in build_lib, source) for every kernel source under csrc/."""
        files = sorted(p for p in CSRC.rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES)
        return [(Path(self.build_lib, "gcpo_lite", "csrc", p.relative_to(CSRC)), p) for p in files]

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        # a source deleted from csrc/ must not survive in a reused build/ (the JIT build globs cpu/*.cpp)
        shutil.rmtree(Path(self.build_lib, "gcpo_lite", "csrc"), ignore_errors=True)
        files = self._csrc_files()
        if not files:
            _say(
                f"no kernel sources under {CSRC}: this build carries none, its native kernels cannot compile"
            )
        for dest, src in files:
            self.mkpath(str(dest.parent))
            self.copy_file(str(src), str(dest))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        extra = [] if getattr(self, "editable_mode", False) else [str(d) for d, _ in self._csrc_files()]
        return [*super().get_outputs(include_bytecode), *extra]


def setup_arguments() -> dict:
    kwargs = native_extension()
    kwargs.setdefault("cmdclass", {})["build_py"] = BuildPyWithKernelSources
    return kwargs


setup(**setup_arguments())
