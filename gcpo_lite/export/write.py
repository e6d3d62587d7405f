"""The files of one export, and export(), which checks OUT and the adapter, writes the files into a staging
folder and swaps it in.

Without merging, OUT is a PEFT adapter (+ tokenizer, model card, marker); merged, OUT is a full model in
safetensors with the adapter in OUT/adapter, each folder with its own model card.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from gcpo_lite.export.adapter_check import AdapterCheck
from gcpo_lite.export.card import model_card
from gcpo_lite.export.leftovers import sweep_stale
from gcpo_lite.export.marker import write_marker
from gcpo_lite.export.source import choose_adapter, final_metrics, run_config
from gcpo_lite.export.staging import staged
from gcpo_lite.export.target import check_output_dir

if TYPE_CHECKING:
    from gcpo_lite.config import Config
    from gcpo_lite.models.loading import ResolvedModel


@dataclass(frozen=True)
class ExportJob:
    """What one export writes: the run, the adapter folder it exports (and its step), and how."""

    run_dir: Path
    src: Path
    step: Optional[int]
    cfg: Config
    resolved: ResolvedModel
    merged: bool = False
    dtype: str = "bfloat16"
    merge_base: str = "dequantized"


def _copy_adapter(job: ExportJob, adapter_out: Path) -> None:
    adapter_out.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy2(job.src / name, adapter_out / name)
    acfg_path = adapter_out / "adapter_config.json"
    acfg = json.loads(acfg_path.read_text())
    acfg["base_model_name_or_path"] = job.resolved.source  # hub id (or local path) the adapter goes on
    acfg["revision"] = job.cfg.model.revision
    acfg_path.write_text(json.dumps(acfg, indent=2))


def _write_cards(folder: Path, job: ExportJob) -> None:
    """README.md; a merged export's adapter/ gets the adapter's own card."""
    metrics = final_metrics(job.run_dir, job.step)
    card = dict(dtype=job.dtype, merge_base=job.merge_base)
    (folder / "README.md").write_text(model_card(job.cfg, job.resolved, metrics, merged=job.merged, **card))
    if job.merged:
        adapter_card = model_card(job.cfg, job.resolved, metrics, merged=False, **card)
        (folder / "adapter" / "README.md").write_text(adapter_card)


def write_export(folder: Path, job: ExportJob, echo=print) -> None:
    """Everything an export holds, written into the fresh folder `folder` (created here)."""
    from gcpo_lite.models.loading import load_tokenizer
    from gcpo_lite.models.merge import merge

    _copy_adapter(job, folder / "adapter" if job.merged else folder)
    load_tokenizer(job.resolved.source, job.cfg.model).save_pretrained(str(folder))
    if job.merged:
        echo(f"merging {job.src} into {job.resolved.display} ({job.merge_base} base, {job.dtype})")
        merge(job.src, job.cfg, job.resolved, folder, dtype=job.dtype, merge_base=job.merge_base)
    _write_cards(folder, job)
    write_marker(folder, job.run_dir, job.step, job.merged)


def _is_cwd(path: Path) -> bool:
    try:
        return os.path.samefile(path, os.getcwd())
    except OSError:
        return False


def export(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: int | str | None = None,
    merged: bool = False,
    dtype: str = "bfloat16",
    merge_base: str = "dequantized",
    overwrite: bool = False,
    discard_edits: bool = False,
    echo=print,
) -> Path:
    """Write the export into out_dir and return its real path. out_dir must be new, empty, or (with
    overwrite) a previous export; the new export is complete before anything at out_dir is touched.
    checkpoint: a step, "latest" (the newest intact checkpoint) or None (the final adapter).

    Raises ExportTargetError (a ConfigError) before any model is loaded when out_dir is refused, and a
    ConfigError before anything is written when the adapter is damaged or does not fit the base."""
    from gcpo_lite.demo.embedded_model import prepare_model

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    check_output_dir(run_dir, out_dir, overwrite=overwrite, discard_edits=discard_edits)
    out_real = out_dir.resolve()  # "." or ".." has no name to stage beside; a linked parent is followed
    sweep_stale(out_real, echo)
    cfg = run_config(run_dir)
    resolved = prepare_model(cfg.model.name)
    src, step = choose_adapter(run_dir, checkpoint, AdapterCheck(cfg, resolved), echo)
    job = ExportJob(run_dir, src, step, cfg, resolved, merged, dtype, merge_base)
    replacing = out_real.is_dir() and any(out_real.iterdir()) and _is_cwd(out_real)
    with staged(out_real, discard_edits) as folder:
        write_export(folder, job, echo)
    if replacing:
        echo(f"{out_real} was replaced, and your shell is still in the old folder: `cd {out_real}` to see it")
    return out_real
