"""Reward functions in TRL's calling convention, the built-in ones looked up by name, the rest loaded by spec.

A reward function is called once per batch with keyword arguments, exactly as TRL's GRPOTrainer calls it:

    fn(prompts=..., completions=..., completion_ids=..., **columns, final_answer=..., trainer_state=...)
        -> list[float | None]   # one value per completion; None: "does not apply to this sample"

`prompts` / `completions` are strings, or for chat-form datasets lists of {role, content} messages (a
completion is [{"role": "assistant", "content": text}]); `columns` are the dataset's other columns, one list
each. gcpo-lite adds `final_answer` (the answer it read for each row: the answer column, the solution's last
\\boxed{}, GSM8K's `#### x`; None when there is none), which the built-in verifiers compare against.

Built-ins (BUILTIN): `math`, `math_verify`, `last_integer` (verifiers: 1.0 / 0.0), `auto` (the built-in task's
own verifier, else math) and `format` (the answer stated in a recognised form). Anything else is a spec:
`path/to/file.py:NAME` or `package.module:NAME`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from gcpo_lite.config import ConfigError
from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.verifiers import Verifier, format_reward, resolve_verifier

VERIFIER_NAMES = ("auto", "math", "math_verify", "last_integer")
BUILTIN = (*VERIFIER_NAMES, "format")


@dataclass
class RewardFunction:
    """One reward function of a run: its name in metrics (reward/<name>/mean), the callable, its weight."""

    name: str
    fn: Callable
    weight: float = 1.0
    builtin: bool = False  # a built-in verifier or `format`: reads final_answer, never raises by design
    verifier: bool = False  # a built-in verifier: what reward.correct_fn=auto picks
    spec: Optional[str] = None  # how it was named (FILE.py:NAME, module:NAME), when it was


def completion_text(completion) -> str:
    """A completion as text: itself, or the content of its (last) message in chat form."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def _builtin(score: Verifier, needs_answer: bool = True) -> Callable:
    """A (text, Example) scorer as a reward function reading final_answer; where a row has no answer, None
    (a verifier has nothing to compare against) or, when the scorer needs none (`format`), its score."""

    def reward(prompts=None, completions=(), completion_ids=None, final_answer=None, **kwargs) -> list:
        answers = final_answer if final_answer is not None else [None] * len(completions)
        out = []
        for c, answer in zip(completions, answers):
            skip = answer is None and needs_answer
            example = Example(prompt="", answer=None if answer is None else str(answer))
            out.append(None if skip else float(score(completion_text(c), example)))
        return out

    return reward


def verifier_function(verify: Verifier, name: Optional[str] = None) -> RewardFunction:
    """A (text, Example) verifier as a reward function, named `name` or after it (verify_math -> math)."""
    shown = name or function_name(verify).replace("verify_", "")
    return RewardFunction(shown, _builtin(verify), builtin=True, verifier=True)


def format_function(weight: float = 1.0) -> RewardFunction:
    """The built-in `format` reward (it needs no answer)."""
    return RewardFunction("format", _builtin(format_reward, needs_answer=False), weight, builtin=True)


def builtin_function(name: str, dataset: str, last_number_fallback: bool = True) -> RewardFunction:
    """The built-in reward function `name` (BUILTIN) for `dataset`."""
    if name == "format":
        return format_function()
    verify = resolve_verifier(name, dataset, last_number_fallback)
    return verifier_function(verify, None if name == "auto" else name)


def load_spec(spec: str) -> Callable:
    """The callable a spec names: `file.py:NAME` (a Python file, by path) or `package.module:NAME`."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise ConfigError(
            f"reward function {spec!r} is not a built-in ({', '.join(BUILTIN)}) nor FILE.py:NAME or "
            "package.module:NAME; e.g. --reward-fn my_rewards.py:format_reward"
        )
    module = _load_file(where, spec) if where.endswith(".py") or "/" in where else _import(where, spec)
    fn = getattr(module, attr, None)
    if fn is None:
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ConfigError(
            f"reward function {spec!r}: {where} has no {attr!r}; it defines: {', '.join(public)}"
        )
    if not callable(fn):
        raise ConfigError(f"reward function {spec!r}: {attr} is a {type(fn).__name__}, not a function")
    return fn


def _load_file(path: str, spec: str):
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"reward function {spec!r}: no file {str(file)!r} (a path from {Path.cwd()})")
    name = f"gcpo_lite_rewards_{abs(hash(str(file.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, file)
    if module_spec is None:
        raise ConfigError(
            f"reward function {spec!r}: {file} is not a Python file; name a .py file: FILE.py:NAME"
        )
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(file.resolve().parent))  # its own helper modules next to it import too
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        raise ConfigError(
            f"reward function {spec!r}: importing {file} raised {type(e).__name__}: {e}"
        ) from None
    finally:
        sys.path.remove(str(file.resolve().parent))
    sys.modules[name] = module
    return module


def _import(module: str, spec: str):
    try:
        return importlib.import_module(module)
    except Exception as e:
        raise ConfigError(
            f"reward function {spec!r}: cannot import {module!r} ({type(e).__name__}: {e}); install it, or "
            "name a file: path/to/file.py:NAME"
        ) from None


def function_name(fn: Callable) -> str:
    """A callable's name in metrics: its __name__ (a partial's function's, an object's class name)."""
    inner = fn.func if isinstance(fn, functools.partial) else fn
    return getattr(inner, "__name__", None) or type(inner).__name__


def make_function(entry, dataset: str, last_number_fallback: bool = True) -> RewardFunction:
    """A RewardFunction from a built-in name, a spec or a callable."""
    if callable(entry):
        return RewardFunction(function_name(entry), entry)
    if not isinstance(entry, str):
        raise ConfigError(f"reward function {entry!r} is a {type(entry).__name__}; pass a callable or a name")
    entry = entry.strip()
    if entry.startswith("python:"):
        raise ConfigError(
            f"reward function {entry[7:]!r} was passed from Python (defined in a script or notebook), so it cannot "
            "be found again from here; resume this run from Python with the same reward_funcs "
            "(GCPOTrainer(..., reward_funcs=[...]).train(resume_from_checkpoint=True)), or move it to a file "
            "and name it FILE.py:NAME"
        )
    if entry in BUILTIN:
        return builtin_function(entry, dataset, last_number_fallback)
    return RewardFunction(entry.rpartition(":")[2], load_spec(entry), spec=entry)


def spec_of(entry) -> Optional[str]:
    """How a reward function entry is written in config.yaml: the name or spec itself, an importable callable
    as module:NAME, and None for a callable defined in a script or notebook (it cannot be found again)."""
    if isinstance(entry, str):
        return entry
    module, name = getattr(entry, "__module__", None), getattr(entry, "__qualname__", "")
    if (
        module
        and module != "__main__"
        and name.isidentifier()
        and not module.startswith("gcpo_lite_rewards_")
    ):
        return f"{module}:{name}"
    return None
