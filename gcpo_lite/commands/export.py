"""Export a run's adapter (PEFT format + tokenizer + model card), optionally merged, optionally pushed.

    gcpo-lite export RUN_DIR --output-dir OUT [--checkpoint N] [--merge [--dtype bfloat16]]
                     [--push-to-hub user/name [--private]]

Without --merge, OUT is a PEFT adapter: `PeftModel.from_pretrained(base, OUT)` with plain transformers
and peft. With --merge, OUT is a full model (safetensors, bf16 by default) that loads with
`AutoModelForCausalLM.from_pretrained(OUT)` alone, and the adapter sits in OUT/adapter.

The push uses huggingface_hub with the token from HF_TOKEN or `hf auth login`; the token is never
printed or logged. A failed push (no token, no network, a name you cannot use) says why and leaves
the local export as it is.

Export never deletes or overwrites anything it did not create: OUT must be new or empty; with
--overwrite it may also be a previous export (recognised by its `.gcpo-lite-export` marker, which lists
the files that export wrote), which is replaced only after the new export is complete. OUT inside the run
directory, or containing it (symlinks resolved), is refused, as is a file or a symlink in the way.
"""

from __future__ import annotations

import argparse

from gcpo_lite.export.hub_push import push_to_hub
from gcpo_lite.export.write import export

SAFETY = """\
OUT and your files: export never deletes or overwrites anything it did not create.
  - OUT must be a new path or an empty directory; a non-empty directory is refused.
  - OUT inside RUN_DIR, or containing it, is refused (symbolic links are resolved first),
    as are a file or a symbolic link at OUT.
  - --overwrite replaces OUT only when it holds a previous export (its .gcpo-lite-export
    marker lists the files that export wrote; a folder with other files is still refused).
    The new export is written to a hidden folder next to OUT and swapped in only once it is
    complete, so a failed export leaves the previous one as it was.
Refusals happen before any model is loaded and exit with status 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = SAFETY
    p.add_argument("run_dir", metavar="RUN_DIR", help="a gcpo-lite train output directory")
    _add_output_arguments(p)
    _add_content_arguments(p)
    p.add_argument("--push-to-hub", metavar="USER/NAME", help="upload the export to this Hub repo")
    p.add_argument("--private", action="store_true", help="create the Hub repo private")


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    """Where the export goes, and when an existing OUT may be replaced."""
    p.add_argument(
        "--output-dir",
        required=True,
        metavar="OUT",
        help="where to write the export: a new or empty directory outside RUN_DIR (a non-empty one "
        "is refused, nothing is ever deleted; see below)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT when it holds a previous gcpo-lite export (its .gcpo-lite-export marker), "
        "once the new export is complete; any other non-empty directory is still refused",
    )


def _add_content_arguments(p: argparse.ArgumentParser) -> None:
    """Which adapter to export, and whether to merge it into a full model."""
    p.add_argument(
        "--checkpoint",
        type=int,
        metavar="N",
        help="export checkpoints/step-N instead of the final "
        "adapter (default: RUN_DIR/adapter, else the latest checkpoint)",
    )
    p.add_argument(
        "--merge", action="store_true", help="merge the adapter into a full model (base dequantized)"
    )
    p.add_argument(
        "--dtype",
        default="bfloat16",
        choices=("bfloat16", "float16", "float32"),
        help="dtype of the merged model (default bfloat16)",
    )
    p.add_argument(
        "--merge-base",
        default="dequantized",
        choices=("dequantized", "original"),
        help="merge into the dequantized 4-bit weights the adapter was trained with (default, "
        "reproduces the trained policy) or into the original full-precision weights",
    )


def run(args: argparse.Namespace) -> int:
    out = export(
        args.run_dir,
        args.output_dir,
        checkpoint=args.checkpoint,
        merged=args.merge,
        dtype=args.dtype,
        merge_base=args.merge_base,
        overwrite=args.overwrite,
    )
    kind = "merged model" if args.merge else "adapter"
    print(f"exported the {kind} to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    if args.push_to_hub:
        url = push_to_hub(out, args.push_to_hub, private=args.private)
        print(f"pushed to {url}")
    return 0
