"""PNG curves of a run from its metrics.jsonl: reward, accuracy (+ held-out), gold rate, loss, lengths.

    gcpo-lite plot RUN_DIR [--output FILE] [--smooth N]

Writes RUN_DIR/curves.png (one figure, a panel per quantity; the drawing is gcpo_lite/run/curves.py), or
--output FILE (its extension picks the format: .png, .svg, .pdf, ...; none: FILE.png) or DIR/curves.png for an
existing directory. Needs matplotlib, an optional extra: pip install matplotlib.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a gcpo-lite train output directory")
    p.add_argument(
        "--output",
        metavar="FILE",
        help="image path, its extension picks the format (.png, .svg, .pdf, ...); a directory: "
        "DIR/curves.png (default RUN_DIR/curves.png)",
    )
    p.add_argument(
        "--smooth",
        type=int,
        default=1,
        metavar="N",
        help="also draw an N-step moving average of the training curves (default 1: off)",
    )


def run(args: argparse.Namespace) -> int:
    from gcpo_lite.run.curves import plot

    out = plot(args.run_dir, args.output, args.smooth)
    print(f"wrote {out}")
    return 0
