"""Capture and restore the random streams, so a checkpoint resumes and an OOM retry redoes work exactly."""

from __future__ import annotations

import random
import sys

import torch


def rng_state() -> dict:
    """Every random stream the loop draws from: python's, torch's CPU and CUDA generators (numpy's when loaded)."""
    state = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else [],
    }
    np = sys.modules.get("numpy")
    if np is not None:  # not used by the loop, but cheap; stored as plain tensors (weights_only-safe)
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = [
            name,
            torch.from_numpy(keys.astype("int64")),
            int(pos),
            int(has_gauss),
            float(gauss),
        ]
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np = sys.modules.get("numpy")
    if np is not None and state.get("numpy"):
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, gauss))
