"""Log-prob and loss kernels behind one API; the backend is chosen once per process.

Backends: `reference` (plain PyTorch: kernels/reference.py is the specification; kernels/chunked.py
is its chunked training path) and `native` (the compiled ops in csrc/, see kernels/_ext.py and
docs/KERNELS.md). `auto` uses native when it loads and otherwise falls back to the reference with
one log line saying why. Select with `set_backend()` (the trainer passes train.kernels) or the
environment variable GCPO_LITE_KERNELS, which wins when set.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from torch import Tensor

from gcpo_lite.kernels import _ext, chunked, reference

BACKENDS = ("auto", "native", "reference")
log = logging.getLogger("gcpo_lite.kernels")


def _validated(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"kernel backend must be one of {BACKENDS}, got {name!r} (from {source})")
    return name


_requested = _validated(os.environ.get("GCPO_LITE_KERNELS", "auto"), "GCPO_LITE_KERNELS")
_fallbacks_logged: set[str] = set()


def set_backend(name: str) -> str:
    """Select the backend (`auto|native|reference`); GCPO_LITE_KERNELS, when set, wins. Returns the live one."""
    global _requested
    _validated(name, "set_backend")
    env = os.environ.get("GCPO_LITE_KERNELS")
    _requested = _validated(env, "GCPO_LITE_KERNELS") if env else name
    return active_backend()


def requested_backend() -> str:
    return _requested


def active_backend(compile_if_needed: bool = True) -> str:
    """The backend calls go to now (for CPU tensors). May JIT-compile the extension on first call,
    unless compile_if_needed=False, in which case an untried build reports as `reference`."""
    if _requested == "reference":
        return "reference"
    if not compile_if_needed and not _ext._state["tried"]:
        return "reference"
    if _requested == "native":
        _ext.require()
        return "native"
    return "native" if _ext.available() and not self_check("cpu") else "reference"


def _fallback(reason: str) -> bool:
    if reason not in _fallbacks_logged:
        _fallbacks_logged.add(reason)
        log.warning(
            "gcpo-lite kernels: using the PyTorch reference: %s "
            "(set GCPO_LITE_KERNELS=reference to silence, `gcpo-lite doctor` for details)",
            reason,
        )
    return False


_selfchecks: dict[str, str] = {}  # device type -> '' (native matches the reference) or what failed


def self_check(device) -> str:
    """Run (once per device type per process) the native-vs-reference check of kernels/selfcheck.py on
    `device`; '' when it passed, else why not. Needs the extension loaded."""
    import torch

    device = torch.device(device)
    if device.type not in _selfchecks:
        from gcpo_lite.kernels import selfcheck

        _selfchecks[device.type] = "checking"  # the check calls the ops directly, never through here
        # the first native call may come from a no-grad pass (old or reference log-probs): the check's backward
        # cases need autograd whatever the caller's mode
        with torch.inference_mode(False), torch.enable_grad():
            _selfchecks[device.type] = selfcheck.check(_native(), device)
        if _selfchecks[device.type]:
            log.warning(
                "gcpo-lite kernels: the native %s kernels FAILED their self-check against the PyTorch reference "
                "(%s); %s",
                device.type,
                _selfchecks[device.type],
                "GCPO_LITE_KERNELS=native keeps them anyway"
                if _requested == "native"
                else "using the reference instead. Please report this with `gcpo-lite doctor` output",
            )
    return _selfchecks[device.type]


def _use_native(t: Tensor) -> bool:
    """Route one call: native when requested/available for t's device and self-checked, else reference."""
    if _requested == "reference":
        return False
    if _requested == "native":
        _ext.require(t.device)
        self_check(t.device)  # forced: a failed check is reported, native stays
        return True
    if not _ext.available():
        return _fallback(_ext.why_unavailable())
    if t.device.type == "cuda" and not _ext.has_cuda():
        why = _ext.cuda_build_possible()[1] or "a prebuilt CPU-only gcpo_lite._C"
        return _fallback(f"the native extension has no CUDA kernels ({why})")
    if t.device.type not in ("cpu", "cuda"):
        return _fallback(f"no native kernels for device {t.device.type}")
    return not self_check(t.device)


def _native():
    from gcpo_lite.kernels import (
        ops,
    )  # registers autograd and fake kernels; import only once the ops are loaded

    return ops


def token_logprobs(
    logits: Tensor,
    ids: Tensor,
    temperature: float = 1.0,
    suppress_ids: Optional[Tensor] = None,
    inplace_backward: bool = False,
) -> Tensor:
    """logits (N, V), ids (N,) -> float32 (N,) log-probs at temperature; differentiable in logits.

    inplace_backward (native only): the backward writes the gradient into `logits`' own buffer, so no
    (N, V) tensor is allocated; only for logits nobody else reads after the forward."""
    if _use_native(logits):
        return _native().token_logprobs(logits, ids, temperature, suppress_ids, inplace_backward)
    return reference.token_logprobs(logits, ids, temperature, suppress_ids)


def token_logprobs_from_hidden(
    hidden: Tensor,
    weight: Tensor,
    ids: Tensor,
    temperature: float = 1.0,
    chunk_size: Optional[int] = None,
    suppress_ids: Optional[Tensor] = None,
) -> Tensor:
    """hidden (N, H), lm_head weight (V, H), ids (N,) -> float32 (N,); differentiable in hidden.

    Chunked in both backends: at most chunk_size x V logits exist at any time (default from
    chunked.default_chunk_size, ~256 MiB of logits)."""
    if _use_native(hidden):
        return _native().token_logprobs_from_hidden(
            hidden, weight, ids, temperature, chunk_size, suppress_ids
        )
    return chunked.token_logprobs_from_hidden(hidden, weight, ids, temperature, chunk_size, suppress_ids)


def gcpo_loss(
    per_token_logps: Tensor,
    old_per_token_logps: Tensor,
    advantages: Tensor,
    completion_mask: Tensor,
    **kwargs,
) -> tuple[Tensor, dict[str, Tensor]]:
    """See reference.gcpo_loss. The native loss differentiates per_token_logps only; when another
    input requires grad the reference runs instead, so gradients are never silently dropped."""
    others = (old_per_token_logps, advantages, kwargs.get("ref_per_token_logps"))
    if any(t is not None and t.requires_grad for t in others) or not _use_native(per_token_logps):
        return reference.gcpo_loss(
            per_token_logps, old_per_token_logps, advantages, completion_mask, **kwargs
        )
    return _native().gcpo_loss(per_token_logps, old_per_token_logps, advantages, completion_mask, **kwargs)


def gcpo_loss_from_hidden(
    hidden: Tensor,
    weight: Tensor,
    ids: Tensor,
    old_per_token_logps: Optional[Tensor],
    advantages: Tensor,
    completion_mask: Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: Optional[int] = None,
    suppress_ids: Optional[Tensor] = None,
    **loss_kwargs,
) -> tuple[Tensor, dict[str, Tensor]]:
    """hidden (B, T, H), weight (V, H), ids (B, T) -> gcpo_loss of their log-probs: the trainer's path.

    Only the N masked-in positions go through the lm_head, at most chunk_size x V logits at a time, and no
    log-softmax of vocab size is ever stored. Backward: the loss kernel's d loss / d logps (B, T) feeds one
    chunked pass that rebuilds each chunk's logits, turns them into their gradient in place and multiplies by
    the weight. old_per_token_logps=None means on-policy (num_iterations=1): old = the log-probs, detached."""
    sel = completion_mask.bool()  # (B, T)
    lp = token_logprobs_from_hidden(
        hidden[sel], weight, ids[sel], temperature, chunk_size, suppress_ids
    )  # (N,)
    logps = lp.new_zeros(ids.shape).masked_scatter(sel, lp)  # (B, T), 0 past each row's end
    old = logps.detach() if old_per_token_logps is None else old_per_token_logps
    loss, metrics = gcpo_loss(logps, old, advantages, completion_mask, **loss_kwargs)
    return loss, {**metrics, "per_token_logps": logps.detach()}  # (B, T): what a later iteration calls old


def status() -> dict:
    """What `gcpo-lite doctor` prints: the live backend and why; never compiles."""
    if not _ext._state["tried"] and (_ext._try_prebuilt() is None or _ext.cached_build_is_current()):
        _ext.load()  # doctor must stay fast: load a prebuilt or current cached build, never compile
    live = active_backend(compile_if_needed=False)
    why = _ext._state["why"] if not _ext._state["ok"] else ""
    if not _ext._state["tried"]:
        why = "not built yet for this torch; `gcpo-lite build-ext` compiles it (else the first kernel call does)"
        if requested_backend() != "reference":
            live = "native after the first-use build (reference if it fails)"
    checks = {}  # device type -> 'passed' or 'FAILED: why' (the same check training runs on first use)
    if _ext._state["ok"]:
        import torch

        devices = ["cpu"] + (["cuda"] if _ext._state["cuda"] and torch.cuda.is_available() else [])
        for d in devices:
            failed = self_check(d)
            checks[d] = f"FAILED: {failed}" if failed else "passed"
        if checks["cpu"] != "passed" and not why:
            why = f"the native CPU kernels failed their self-check ({checks['cpu'][8:]})"
    return {
        "requested": requested_backend(),
        "live": live,
        "self_check": checks,
        "native_loaded": bool(_ext._state["ok"]),
        "why_not_native": why,
        "source": _ext._state["source"],
        "cuda_kernels": bool(_ext._state["cuda"]),
        "cuda_build_possible": _ext.cuda_build_possible()[0],
        "build_dir": _ext._state["build_dir"] or str(_ext.default_build_dir(_ext.cuda_build_possible()[0])),
    }


__all__ = [
    "BACKENDS",
    "set_backend",
    "requested_backend",
    "active_backend",
    "token_logprobs",
    "token_logprobs_from_hidden",
    "gcpo_loss",
    "gcpo_loss_from_hidden",
    "status",
    "self_check",
    "reference",
    "chunked",
]
