"""Is a checkpoint intact? Reading trainer_state.pt through the safe loader, and every check a resume makes
before it trusts a checkpoint's files (a damaged one is skipped, an unsafe one refused)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import torch

from gcpo_lite.config import ConfigError

FORMAT = 1

STATE_KEYS = ("step", "optimizer", "lr_schedule", "data", "rng")  # what load_checkpoint reads
REQUIRED_FILES = (
    "trainer_state.pt",
    "adapter/adapter_model.safetensors",
    "adapter/adapter_config.json",
    "plan.json",
    "metrics.jsonl",
)


class UnsafeCheckpointError(ConfigError):
    """torch.load(weights_only=True) refused a pickle in a checkpoint: it could run code when loaded."""


# What the safe loader says when a pickle asks for code it will not run (a global function or class, a
# call, a constructed object); any other UnpicklingError ("Unsupported operand 197") is bytes that are not
# a pickle torch.save wrote: damage, not an attack.
_UNSAFE_PICKLE = re.compile(
    r"GLOBAL|Trying to call reduce|Can only create new object|Can only build|persistent_load", re.I
)


def load_state_file(path: Path) -> dict:
    """trainer_state.pt through the safe loader; an unsafe or unreadable file becomes a ConfigError
    (UnsafeCheckpointError when the loader refused code in it)."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if _UNSAFE_PICKLE.search(str(e)):
            raise UnsafeCheckpointError(
                f"{path} was refused as unsafe: it holds Python objects that could run "
                "code when loaded (not a file gcpo-lite wrote); use another checkpoint"
            ) from None
        detail = next((ln.strip() for ln in str(e).splitlines() if "Unsupported" in ln), str(e)[:120])
        raise ConfigError(f"{path} is damaged: the safe loader cannot read it ({detail})") from None
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing") from None
    except Exception as e:  # truncated zip (RuntimeError), empty (EOFError), garbage (KeyError, struct.error)
        raise ConfigError(f"{path} is damaged or truncated ({describe(e)})") from None


def describe(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def checkpoint_problem(path: Path) -> Optional[str]:
    """Why the checkpoint at path cannot be resumed from (missing or unloadable files), or None if intact."""
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        state = load_state_file(path / "trainer_state.pt")
    except ConfigError as e:
        return str(e)
    problem = state_problem(state)
    if problem:
        return problem
    try:
        from safetensors.torch import load_file

        load_file(str(path / "adapter" / "adapter_model.safetensors"))
    except Exception as e:  # truncated or corrupt safetensors: several exception types across versions
        return f"adapter/adapter_model.safetensors is damaged ({describe(e)})"
    for name in ("adapter/adapter_config.json", "plan.json"):
        problem = _json_object_problem(path / name, name)
        if problem:
            return problem
    return _metrics_problem(path)


def _json_object_problem(file: Path, name: str) -> Optional[str]:
    try:
        value = json.loads(file.read_text())
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        return f"{name} is damaged ({describe(e)})"
    if not isinstance(value, dict):
        return f"{name} is damaged (a JSON {type(value).__name__}, not an object)"
    return None


def _metrics_problem(path: Path) -> Optional[str]:
    """It replaces the run's metrics.jsonl on resume: every row must parse."""
    try:
        lines = (path / "metrics.jsonl").read_text().splitlines()
    except (OSError, ValueError) as e:
        return f"metrics.jsonl is damaged ({describe(e)})"
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            return f"metrics.jsonl is damaged (line {n}: {str(e)[:80]})"
        if not isinstance(row, dict):
            return f"metrics.jsonl is damaged (line {n} is not a JSON object)"
    return None


def state_problem(state) -> Optional[str]:
    """What is wrong with a loaded trainer_state.pt (a file that unpickles but is not one this program
    wrote, or was altered), or None."""
    if not isinstance(state, dict):
        return f"trainer_state.pt holds a {type(state).__name__}, not a gcpo-lite trainer state"
    if state.get("format") != FORMAT:
        return f"trainer_state.pt has format {state.get('format')}, this gcpo-lite reads {FORMAT}"
    lacking = [k for k in STATE_KEYS if k not in state]
    if lacking:
        return f"trainer_state.pt lacks {', '.join(lacking)} (not a complete gcpo-lite checkpoint)"
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"trainer_state.pt is damaged (step is {step!r})"
    for key in ("optimizer", "lr_schedule", "data", "rng"):
        if not isinstance(state[key], dict):
            return f"trainer_state.pt is damaged ({key} is a {type(state[key]).__name__}, not a dict)"
    lacking = [f"data.{k}" for k in ("cursor", "epoch", "order", "fingerprint") if k not in state["data"]]
    lacking += [f"optimizer.{k}" for k in ("state", "param_groups") if k not in state["optimizer"]]
    lacking += [f"rng.{k}" for k in ("python", "torch") if k not in state["rng"]]
    if lacking:
        return f"trainer_state.pt is damaged (no {', '.join(lacking)})"
    return None
