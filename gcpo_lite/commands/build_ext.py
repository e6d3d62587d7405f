"""Build the native log-prob / loss kernels now (JIT, cached per torch version), instead of at first use.

    gcpo-lite build-ext [--quiet]

Prints one status line; `gcpo-lite doctor` then shows the live backend. Exit code 1 when the build
failed (the reference kernels are then used, and the line says why).
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no compiler output")


def run(args: argparse.Namespace) -> int:
    from gcpo_lite.kernels import _ext

    line = _ext.build(verbose=not args.quiet)
    print(line)
    return 0 if "OK" in line else 1
