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
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import yaml

from gcpo_lite.config import ConfigError, from_dict

if TYPE_CHECKING:  # torch is imported when an export runs, not when the CLI starts
    import torch

log = logging.getLogger(__name__)

PAPER = "GCPO: When Contrast Fails, Go Gold"
ARXIV = "2510.07790"
BIBTEX = """@misc{wu2025gcpo,
  title         = {GCPO: When Contrast Fails, Go Gold},
  author        = {Hao Wu and Wei Liu},
  year          = {2025},
  eprint        = {2510.07790},
  archivePrefix = {arXiv},
  primaryClass  = {cs.AI},
  url           = {https://arxiv.org/abs/2510.07790}
}"""


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
    p.add_argument("--push-to-hub", metavar="USER/NAME", help="upload the export to this Hub repo")
    p.add_argument("--private", action="store_true", help="create the Hub repo private")


# ---------------------------------------------------------------- locating the run's pieces


def run_config(run_dir: Path):
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no config.yaml; pass the directory `gcpo-lite train` wrote")
    return from_dict(yaml.safe_load(path.read_text()) or {})


def adapter_source(run_dir: Path, checkpoint: Optional[int] = None) -> Path:
    from gcpo_lite.run.checkpoints import find_checkpoint, list_checkpoints

    if checkpoint is not None:
        return find_checkpoint(run_dir, checkpoint) / "adapter"
    if (run_dir / "adapter" / "adapter_config.json").is_file():
        return run_dir / "adapter"
    if list_checkpoints(run_dir):
        return find_checkpoint(run_dir) / "adapter"
    raise ConfigError(f"{run_dir} has neither adapter/ nor checkpoints/; the run saved no weights yet")


def final_metrics(run_dir: Path, step: Optional[int] = None) -> dict:
    """The last training row (up to `step`) plus the latest eval_accuracy, from metrics.jsonl."""
    out: dict = {}
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if step is not None and row.get("step", 0) > step:
            break
        if "loss" in row:
            out.update({k: v for k, v in row.items() if k != "eval_accuracy"})
        if "eval_accuracy" in row:
            out["eval_accuracy"], out["eval_step"] = row["eval_accuracy"], row.get("step")
    return out


# ---------------------------------------------------------------- model card

CARD_METRICS = (
    "step",
    "reward_mean",
    "accuracy",
    "eval_accuracy",
    "eval_step",
    "gold_injected_frac",
    "all_wrong_frac",
    "all_correct_frac",
    "completion_length_mean",
    "entropy",
    "loss",
)


def model_card(cfg, resolved, metrics: dict, *, merged: bool, dtype: str, merge_base: str) -> str:
    base = resolved.source if not resolved.embedded else resolved.display
    tags = [
        "gcpo",
        "grpo",
        "reinforcement-learning",
        "lora",
        "qlora" if cfg.model.quantize else "peft",
        "gcpo-lite",
    ]
    front = {"base_model": base, "library_name": "transformers" if merged else "peft", "tags": tags}
    kind = (
        f"a full model: the LoRA adapter merged into the base ({merge_base} weights), saved in {dtype}"
        if merged
        else "a LoRA adapter in PEFT format"
    )
    load = (
        """```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("REPO_OR_DIR")
tokenizer = AutoTokenizer.from_pretrained("REPO_OR_DIR")
```"""
        if merged
        else f"""```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
base = AutoModelForCausalLM.from_pretrained("{base}")
model = PeftModel.from_pretrained(base, "REPO_OR_DIR")
tokenizer = AutoTokenizer.from_pretrained("REPO_OR_DIR")
```"""
    )
    g = cfg.gcpo
    rows = "\n".join(
        f"| {k} | {metrics[k]:.4g} |" if isinstance(metrics[k], float) else f"| {k} | {metrics[k]} |"
        for k in CARD_METRICS
        if k in metrics
    )
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# {Path(str(cfg.train.output_dir)).name}: GCPO fine-tune of {base}

This is {kind}, trained with gcpo-lite using **GCPO** (Group Contrastive
Policy Optimization, [arXiv:{ARXIV}](https://arxiv.org/abs/{ARXIV})): GRPO-style group-relative
advantages over {g.num_generations} sampled completions per prompt, where a group whose samples are all
wrong gets the reference ("gold") solution in place of its worst sample (gold_injection={g.gold_injection}),
with {g.importance_sampling_level}-level importance ratios and KL weight beta={g.beta}.
The base model was {"loaded in 4-bit NF4 (bitsandbytes)" if cfg.model.quantize else "kept in full precision"}
during training; LoRA rank {cfg.lora.r}, alpha {cfg.lora.alpha} on {", ".join(cfg.lora.target_modules)}.

## Use

{load}

## Final metrics

| metric | value |
|---|---|
{rows or "| (none logged) | |"}

Training data: `{cfg.data.dataset or "addition (built-in)"}`; {metrics.get("step", "?")} of {cfg.train.max_steps}
planned steps, {cfg.train.batch_size} completions each. `accuracy` is over the sampled completions of the last step,
`eval_accuracy` over held-out prompts at temperature {cfg.train.eval_temperature}.

## Training config

```yaml
{yaml.safe_dump(cfg.to_dict(), sort_keys=False).strip()}
```

## Citation

```bibtex
{BIBTEX}
```
"""


# ---------------------------------------------------------------- writing


def _load_base(resolved, cfg, *, quantized: bool, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = dict(revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code, dtype=dtype)
    if quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=cfg.model.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=cfg.model.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": "cpu"}
    return AutoModelForCausalLM.from_pretrained(resolved.source, **kwargs)


def merge(
    adapter_dir: Path,
    cfg,
    resolved,
    out_dir: Path,
    *,
    dtype: str = "bfloat16",
    merge_base: str = "dequantized",
) -> None:
    """Write base + adapter as one full model in `dtype` (safetensors).

    The adapter was trained against dequant(NF4(W)), not W: the trained policy is
    dequant(NF4(W)) + (alpha/r) B A. "dequantized" rebuilds exactly that: it loads the base in 4-bit with
    the run's quantization settings, dequantizes every 4-bit layer to float32 (model.dequantize()), adds the
    LoRA delta in float32 and only then rounds to `dtype`, so the merged model computes what training
    evaluated. peft's merge on a live 4-bit model would instead re-quantize W + delta and lose most of
    the delta. "original" adds the delta to the full-precision W: the usual choice for a base trained
    unquantized, and for a quantized one the merged model then differs from the trained policy by the
    quantization error (which the adapter may partly have learned to offset). Runs without
    quantization merge into W either way. Everything runs on the CPU, in float32 until the final cast.
    """
    import torch
    from peft import PeftModel

    quantized = cfg.model.quantize and merge_base == "dequantized"
    base = _load_base(resolved, cfg, quantized=quantized, dtype=torch.float32)
    if quantized:
        base = base.dequantize()
        base = base.to(torch.float32)
        if hasattr(base.config, "quantization_config"):
            del base.config.quantization_config
        base.is_quantized = False
    model = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    model.save_pretrained(str(out_dir), safe_serialization=True)


MARKER = ".gcpo-lite-export"  # written into every export; only a folder holding it may be replaced
MARKER_TOOL = "gcpo-lite export"


class ExportTargetError(ConfigError):
    """--output-dir would overwrite or delete something export did not create."""


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def read_marker(folder: Path) -> Optional[dict]:
    """The marker of a previous export in folder, or None when folder holds no (valid) marker."""
    path = folder / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == MARKER_TOOL else None


def _entries(folder: Path) -> set[str]:
    """Every file, link and folder under folder, as relative POSIX paths (links are not followed)."""
    out: set[str] = set()
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out.update((rel / name).as_posix() for name in (*dirs, *files))
    return out


def _not_written_by_export(folder: Path, marker: dict) -> list[str]:
    """What lies in a previous export that the export did not write (files the user added)."""
    listed = marker.get("files")
    if not isinstance(listed, list):  # a marker without its file list: the whole folder is the export
        return []
    ours = {MARKER}
    for name in listed:
        ours.add(str(name))
        ours.update(p.as_posix() for p in Path(str(name)).parents if p != Path("."))
    return sorted(_entries(folder) - ours)


def _check_replaceable(out_dir: Path, *, overwrite: bool) -> None:
    """out_dir is an existing non-empty directory: it may be replaced only if it is a previous export."""
    marker = read_marker(out_dir)
    if marker is None:
        raise ExportTargetError(
            f"--output-dir {out_dir} is a non-empty directory that is not a gcpo-lite export (it has no "
            f"{MARKER} marker); choose a new or empty directory: export never deletes files it did not write"
        )
    if not overwrite:
        raise ExportTargetError(
            f"--output-dir {out_dir} holds a previous export; pass --overwrite to replace it, or choose "
            "a new directory"
        )
    extra = _not_written_by_export(out_dir, marker)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise ExportTargetError(
            f"--output-dir {out_dir} holds a previous export plus files it did not write ({shown}); "
            "--overwrite would delete them: move them out first, or choose a new directory"
        )


def check_output_dir(run_dir: Path, out_dir: Path, *, overwrite: bool = False) -> None:
    """Refuse an OUT that would overwrite or delete anything export did not create (before any work)."""
    run_real, out_real = run_dir.resolve(), out_dir.resolve()  # symlinks resolved, on both sides
    if _is_within(out_real, run_real):
        raise ExportTargetError(
            f"--output-dir {out_dir} is inside the run directory {run_dir}; export never writes into a "
            "run: choose a new or empty directory outside it (e.g. out/adapter)"
        )
    if _is_within(run_real, out_real):
        raise ExportTargetError(
            f"--output-dir {out_dir} contains the run directory {run_dir}; choose a new or empty "
            "directory outside it (e.g. out/adapter)"
        )
    if out_dir.is_symlink():
        raise ExportTargetError(
            f"--output-dir {out_dir} is a symbolic link (to {os.readlink(out_dir)}); export replaces OUT "
            "itself, not what a link points to: pass the real directory, or another path"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportTargetError(
            f"--output-dir {out_dir} exists and is not a directory; remove or rename it yourself, or "
            "choose another path"
        )
    absolute = Path(os.path.abspath(out_dir))
    for parent in absolute.parents:  # the nearest existing folder above OUT is where the export is made
        if parent.exists():
            if not parent.is_dir():
                raise ExportTargetError(
                    f"--output-dir {out_dir}: {parent} is a file, not a directory; choose another path"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ExportTargetError(
                    f"--output-dir {out_dir}: cannot write in {parent} (permission denied); choose a "
                    "directory you can write to"
                )
            break
    if out_dir.is_dir() and any(out_dir.iterdir()):
        _check_replaceable(out_dir, overwrite=overwrite)


def _write_marker(folder: Path, run_dir: Path, step: Optional[int], merged: bool) -> None:
    """Written last: lists every file of the export, so --overwrite can tell them from files added later."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        tool_version = version("gcpo-lite")
    except PackageNotFoundError:
        tool_version = "unknown"
    (folder / MARKER).write_text(
        json.dumps(
            {
                "tool": MARKER_TOOL,
                "version": 1,
                "gcpo_lite_version": tool_version,
                "run_dir": str(run_dir.resolve()),
                "checkpoint": step,
                "merged": merged,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": sorted(
                    p.relative_to(folder).as_posix()
                    for p in folder.rglob("*")
                    if not p.is_dir() and p.name != MARKER
                ),
            },
            indent=1,
        )
        + "\n"
    )


def _put_in_place(new: Path, out_dir: Path, stage: Path) -> None:
    """Move the finished export `new` to out_dir. A previous export there is first moved into stage (our
    own folder, removed afterwards by the caller) and put back if the new one cannot be moved in."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        _check_replaceable(out_dir, overwrite=True)  # checked before the work; again now, just before moving
        old = stage / "old"
        out_dir.rename(old)
        try:
            new.rename(out_dir)
        except BaseException:
            old.rename(out_dir)
            raise
    else:
        if out_dir.is_dir():
            out_dir.rmdir()  # empty: nothing to lose (rmdir refuses if something appeared meanwhile)
        new.rename(out_dir)


def export(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: Optional[int] = None,
    merged: bool = False,
    dtype: str = "bfloat16",
    merge_base: str = "dequantized",
    overwrite: bool = False,
    echo=print,
) -> Path:
    """Write the export into out_dir and return it. out_dir must be new, empty, or (with overwrite) a
    previous export; the new export is complete before anything at out_dir is touched.

    Raises ExportTargetError (a ConfigError) before any model is loaded when out_dir is refused."""
    from gcpo_lite.demo.embedded_model import prepare_model

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    check_output_dir(run_dir, out_dir, overwrite=overwrite)
    cfg = run_config(run_dir)
    resolved = prepare_model(cfg.model.name)
    src = adapter_source(run_dir, checkpoint)
    step = checkpoint if checkpoint is not None else None
    if step is None and src.parent.parent.name == "checkpoints":
        step = int(src.parent.name.split("-")[1])
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # a fresh hidden sibling (same filesystem, so the final moves are renames); nothing else is touched
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.gcpo-export-", dir=out_dir.parent))
    try:
        new = stage / "new"
        _write_export(
            new,
            src,
            run_dir,
            cfg,
            resolved,
            step,
            merged=merged,
            dtype=dtype,
            merge_base=merge_base,
            echo=echo,
        )
        _put_in_place(new, out_dir, stage)
    except BaseException:
        if (stage / "old").exists():  # the previous export could not be put back: keep it, say where
            shutil.rmtree(stage / "new", ignore_errors=True)
            log.error(
                "export failed while replacing %s; the previous export is in %s", out_dir, stage / "old"
            )
        else:
            shutil.rmtree(stage, ignore_errors=True)  # only our own folder
        raise
    shutil.rmtree(stage)  # empty, or the previous export (checked for its marker) moved aside
    return out_dir


def _write_export(
    tmp: Path,
    src: Path,
    run_dir: Path,
    cfg,
    resolved,
    step: Optional[int],
    *,
    merged: bool,
    dtype: str,
    merge_base: str,
    echo,
) -> None:
    """Everything an export holds, written into the fresh folder tmp."""
    from gcpo_lite.models.loading import load_tokenizer

    adapter_out = tmp / "adapter" if merged else tmp
    adapter_out.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy2(src / name, adapter_out / name)
    acfg_path = adapter_out / "adapter_config.json"
    acfg = json.loads(acfg_path.read_text())
    acfg["base_model_name_or_path"] = resolved.source  # hub id (or local path) the adapter goes on
    acfg["revision"] = cfg.model.revision
    acfg_path.write_text(json.dumps(acfg, indent=2))
    tokenizer = load_tokenizer(resolved.source, cfg.model)
    tokenizer.save_pretrained(str(tmp))
    if merged:
        echo(f"merging {src} into {resolved.display} ({merge_base} base, {dtype})")
        merge(src, cfg, resolved, tmp, dtype=dtype, merge_base=merge_base)
    card = model_card(
        cfg, resolved, final_metrics(run_dir, step), merged=merged, dtype=dtype, merge_base=merge_base
    )
    (tmp / "README.md").write_text(card)
    if merged:
        (tmp / "adapter" / "README.md").write_text(
            model_card(
                cfg, resolved, final_metrics(run_dir, step), merged=False, dtype=dtype, merge_base=merge_base
            )
        )
    _write_marker(tmp, run_dir, step, merged)


# ---------------------------------------------------------------- the Hub


class PushError(ConfigError):
    """A push that failed for a reason the user can fix; the message never contains the token."""


def _scrub(text: str, token: Optional[str]) -> str:
    return text.replace(token, "***") if token else text


def push_to_hub(
    folder: str | Path, repo_id: str, *, private: bool = False, token: Optional[str] = None
) -> str:
    """Create (or reuse) the model repo and upload the folder; returns the repo URL."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    token = token or get_token()  # HF_TOKEN, else the `hf auth login` cache
    if not token:
        raise PushError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login`; the export in "
            f"{folder} is complete, push it later with --push-to-hub or `hf upload`"
        )
    if repo_id.count("/") != 1:
        raise PushError(f"--push-to-hub {repo_id!r}: use USER/NAME (or ORG/NAME)")
    api = HfApi(token=token)
    where = f"the export in {folder} is complete; fix this and push again"
    try:
        url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message="gcpo-lite export"
        )
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        why = {
            401: "the token was rejected (expired or mistyped); set a valid HF_TOKEN or `hf auth login`",
            403: f"this token may not write to {repo_id} (the name belongs to another user or org, or the "
            "token is read-only)",
            409: f"{repo_id} exists and cannot be used (taken); choose another name",
        }.get(status, f"the Hub answered {status}: {_scrub(str(e).splitlines()[0], token)}")
        raise PushError(f"push to {repo_id} failed: {why}; {where}") from None
    except OfflineModeIsEnabled:
        raise PushError(f"push to {repo_id} failed: HF_HUB_OFFLINE is set; {where}") from None
    except Exception as e:  # no network, DNS, TLS, timeouts
        if isinstance(e, _network_errors()):
            raise PushError(
                f"push to {repo_id} failed: could not reach the Hub ({type(e).__name__}: "
                f"{_scrub(str(e), token)}); {where}"
            ) from None
        raise
    return str(url)


def _network_errors() -> tuple:
    """Connection-level exception classes of whichever HTTP client this huggingface_hub uses."""
    import importlib

    errors: list = [OSError]
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


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
