"""Export a run's adapter (PEFT format + tokenizer + model card), optionally merged, optionally pushed.

    gcpo-lite export RUN_DIR --output-dir OUT [--checkpoint N|latest] [--merge [--dtype bfloat16]]
                     [--overwrite [--discard-edits]] [--push-to-hub user/name [--private]]

Without --merge, OUT is a PEFT adapter: `PeftModel.from_pretrained(base, OUT)` with plain transformers
and peft. With --merge, OUT is a full model (safetensors, bf16 by default) that loads with
`AutoModelForCausalLM.from_pretrained(OUT)` alone, and the adapter sits in OUT/adapter.

The push uses huggingface_hub with the token from HF_TOKEN or `hf auth login`; the token is never
printed or logged. A failed push (no token, no network, a name you cannot use) says why and leaves
the local export as it is.

Export never deletes or overwrites anything it did not create: OUT must be new or empty; with
--overwrite it may also be a previous export (recognised by its `.gcpo-lite-export` marker, which lists
the files that export wrote with their sizes and hashes), which is replaced only after the new export is
complete, and not when a file in it was edited since (unless --discard-edits). OUT inside the run
directory, or containing it (symlinks resolved), is refused, as is a file or a symlink in the way.

Export ships only an adapter that loads and fits the base (gcpo_lite/export/adapter_check.py); a damaged
RUN_DIR/adapter is refused, naming the newest intact checkpoint (`--checkpoint latest` exports it).
"""

from __future__ import annotations

import argparse

from gcpo_lite.export.hub_push import push_to_hub
from gcpo_lite.export.source import LATEST
from gcpo_lite.export.write import export

SAFETY = """\
OUT and your files: export never deletes or overwrites anything it did not create.
  - OUT must be a new path or an empty directory; a non-empty directory is refused.
  - OUT inside RUN_DIR, or containing it, is refused (symbolic links are resolved first),
    as are a file or a symbolic link at OUT.
  - --overwrite replaces OUT only when it holds a previous export (its .gcpo-lite-export
    marker lists the files that export wrote; a folder with other files is still refused, and
    so is one whose files were edited since, unless --discard-edits).
    The new export is written to a hidden folder next to OUT (.OUT.gcpo-export-PID-XXXXXXXX)
    and swapped in only once it is complete, so a failed export leaves the previous one as it
    was; such a folder left by a killed export is removed by the next export to OUT.
  - The adapter is checked before anything is written: it must load and fit the base. A
    damaged RUN_DIR/adapter is refused, naming the newest intact checkpoint (--checkpoint latest).
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
    p.add_argument(
        "--discard-edits",
        action="store_true",
        help="with --overwrite: replace the previous export even when files in it were edited since "
        "export wrote them (the edits are lost)",
    )


def _checkpoint(text: str) -> int | str:
    if text == LATEST:
        return LATEST
    try:
        step = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a step number nor {LATEST!r}") from None
    if step < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a step is 0 or more")
    return step


def _add_content_arguments(p: argparse.ArgumentParser) -> None:
    """Which adapter to export, and whether to merge it into a full model."""
    p.add_argument(
        "--checkpoint",
        type=_checkpoint,
        metavar="N|latest",
        help="export checkpoints/step-N, or with `latest` the newest checkpoint whose adapter is intact, "
        "instead of the final adapter (default: RUN_DIR/adapter; for a run stopped before its end, "
        "which has none, the newest intact checkpoint)",
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
        discard_edits=args.discard_edits,
    )
    kind = "merged model" if args.merge else "adapter"
    print(f"exported the {kind} to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    if args.push_to_hub:
        url = push_to_hub(out, args.push_to_hub, private=args.private)
        print(f"pushed to {url}")
    return 0
