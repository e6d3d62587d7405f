"""Check this machine for gcpo-lite: versions, CUDA and GPUs, bitsandbytes, kernels, disk.

    gcpo-lite doctor [--run-dir DIR] [--json]

Never compiles anything and never contacts the network. Whether a Hugging Face token is available
is reported as yes/no; the token itself is never shown.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
from pathlib import Path

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "safetensors",
    "huggingface_hub",
    "datasets",
    "sympy",
    "tokenizers",
    "pyyaml",
    "tqdm",
)
OPTIONAL = {
    "ninja": "JIT build of the native kernels",
    "math-verify": "reward.verifier=math_verify",
    "matplotlib": "gcpo-lite plot",
    "rich": "rich progress bar",
    "tensorboard": "--report-to tensorboard",
    "wandb": "--report-to wandb",
}
MIN_FREE_DISK_BYTES = 2 * 2**30  # warn below this much free space for checkpoints and exports


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run-dir",
        default="runs",
        metavar="DIR",
        help="where runs will be written (free disk space is checked there; default runs/)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gcpo-lite": _version("gcpo-lite") or "source checkout (not pip-installed)",
    }
    out.update({name: _version(name) for name in PACKAGES})
    return out


def cuda_report() -> dict:
    import torch

    out = {"torch_cuda": torch.version.cuda, "available": torch.cuda.is_available(), "gpus": []}
    if not out["available"]:
        out["why"] = (
            "this torch is a CPU build"
            if torch.version.cuda is None
            else "torch has CUDA but sees no GPU (driver? CUDA_VISIBLE_DEVICES?)"
        )
        return out
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        out["gpus"].append(
            {
                "index": i,
                "name": props.name,
                "capability": f"{props.major}.{props.minor}",
                "free_bytes": int(free),
                "total_bytes": int(total),
                "bf16": bool(torch.cuda.is_bf16_supported()) if i == torch.cuda.current_device() else None,
            }
        )
    return out


def bitsandbytes_report() -> dict:
    try:
        import bitsandbytes as bnb
        from bitsandbytes import cextension
    except Exception as e:  # import errors of every kind: a broken install must not break doctor
        return {"ok": False, "why": f"{type(e).__name__}: {e}", "fix": "pip install -U bitsandbytes"}
    lib = getattr(getattr(cextension, "lib", None), "_lib", None)
    out = {
        "ok": True,
        "version": bnb.__version__,
        "backend": getattr(cextension, "BNB_BACKEND", "unknown"),
        "native_library": Path(getattr(lib, "_name", "")).name or None,
    }
    if out["backend"] == "CPU":
        out["note"] = (
            "CPU backend: 4-bit training works, slowly; a GPU needs a CUDA build of torch and bitsandbytes"
        )
    return out


def kernels_report() -> dict:
    try:
        from gcpo_lite import kernels
        from gcpo_lite.kernels import _ext

        # where a JIT build compiles from: a non-editable install without them can only fall back
        return {**kernels.status(), "sources": _ext.sources_found()}
    except Exception as e:
        return {"live": "reference", "why_not_native": f"status failed: {type(e).__name__}: {e}"}


def disk_report(run_dir: str | Path) -> dict:
    path = Path(run_dir).resolve()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    out = {
        "run_dir": str(path),
        "checked_at": str(probe),
        "free_bytes": usage.free,
        "total_bytes": usage.total,
    }
    if usage.free < MIN_FREE_DISK_BYTES:
        out["warning"] = "under 2 GiB free: checkpoints, exports and merged models may not fit"
    return out


def machine_report() -> dict:
    import torch

    out = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    try:
        out["ram_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    return out


def hub_report() -> dict:
    try:
        from huggingface_hub import get_token

        token = get_token()
    except Exception:
        token = None
    return {"token_available": bool(token), "offline": os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")}


def collect(run_dir: str | Path = "runs") -> dict:
    return {
        "versions": versions(),
        "optional": {name: _version(name) for name in OPTIONAL},
        "machine": machine_report(),
        "cuda": cuda_report(),
        "bitsandbytes": bitsandbytes_report(),
        "kernels": kernels_report(),
        "disk": disk_report(run_dir),
        "hub": hub_report(),
    }


def _gib(n) -> str:
    return f"{n / 2**30:.1f} GiB"


def _cuda_lines(c: dict) -> list[str]:
    if not c["available"]:
        return [f"CUDA: not available: {c['why']}; training runs on the CPU"]
    lines = [f"CUDA: torch built for CUDA {c['torch_cuda']}, {len(c['gpus'])} GPU(s)"]
    for g in c["gpus"]:
        lines.append(
            f"  GPU {g['index']}: {g['name']} (sm {g['capability']}), {_gib(g['free_bytes'])} free of "
            f"{_gib(g['total_bytes'])}"
            + ("" if g["bf16"] is None else f", bf16 {'yes' if g['bf16'] else 'no'}")
        )
    return lines


def _kernel_lines(k: dict) -> list[str]:
    line = f"kernels: {k.get('live')} (requested {k.get('requested', '?')})"
    if k.get("native_loaded"):
        line += f"; native from {k.get('source')}, CUDA kernels {'yes' if k.get('cuda_kernels') else 'no'}"
    elif k.get("why_not_native"):
        line += f"; not native because: {k['why_not_native']}"
    lines = [line]
    if k.get("sources"):
        lines.append(f"  kernel sources: {k['sources']}")
    for device, verdict in (k.get("self_check") or {}).items():
        lines.append(
            f"  native {device} kernels vs the PyTorch reference (fwd + bwd, fp32 + bf16): {verdict}"
        )
    return lines


def format_report(r: dict) -> str:
    v = r["versions"]
    lines = ["versions: " + ", ".join(f"{k} {v[k] or 'MISSING'}" for k in ("python", "gcpo-lite", *PACKAGES))]
    missing = [k for k in PACKAGES if not v[k]]
    if missing:
        lines.append(f"  MISSING required packages: {', '.join(missing)} (pip install -e .)")
    lines.append(
        "optional: " + ", ".join(f"{k} {ver or 'no'} ({OPTIONAL[k]})" for k, ver in r["optional"].items())
    )
    m = r["machine"]
    lines.append(
        f"machine: {m['cpu_count']} CPUs, torch uses {m['torch_threads']} threads"
        + (f", {_gib(m['ram_bytes'])} RAM" if "ram_bytes" in m else "")
    )
    lines += _cuda_lines(r["cuda"])
    b = r["bitsandbytes"]
    lines.append(
        f"bitsandbytes: {b['version']}, backend {b['backend']} ({b['native_library']})"
        if b["ok"]
        else f"bitsandbytes: NOT usable: {b['why']}; {b['fix']} (or train with --no-quantize)"
    )
    if b.get("note"):
        lines.append(f"  {b['note']}")
    lines += _kernel_lines(r["kernels"])
    d = r["disk"]
    lines.append(
        f"disk: {_gib(d['free_bytes'])} free of {_gib(d['total_bytes'])} at {d['checked_at']}"
        + (f"  WARNING: {d['warning']}" if "warning" in d else "")
    )
    h = r["hub"]
    lines.append(
        "hub: token "
        + (
            "available (not shown)"
            if h["token_available"]
            else "none (HF_TOKEN or `hf auth login`; only needed for --push-to-hub and gated models)"
        )
        + (", HF_HUB_OFFLINE set" if h["offline"] else "")
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = collect(args.run_dir)
    print(json.dumps(report, indent=1, default=str) if args.json else format_report(report))
    return 0 if all(report["versions"][k] for k in PACKAGES) and report["bitsandbytes"]["ok"] else 1
