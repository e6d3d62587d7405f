"""Is an adapter folder fit to ship? Export checks the adapter it is about to copy, merge or push.

An adapter passes when adapter_config.json is a LoRA config, adapter_model.safetensors loads (header and every
tensor), and its tensors are exactly the ones peft creates for the run's base with that config: same names,
same shapes (lora_A is (r, in), lora_B is (out, r), in and out those of the base's module). The expected
tensors come from building the base on the meta device from its config.json (no weights are read) and wrapping
it with peft. When the base's config cannot be read, the check falls back to the adapter's own consistency:
every tensor a lora_A / lora_B weight of a module named in target_modules, of rank r.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    from gcpo_lite.config import Config
    from gcpo_lite.models.loading import ResolvedModel

log = logging.getLogger(__name__)

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
_LORA_WEIGHT = re.compile(r"^(.+)\.lora_([AB])\.weight$")

Shapes = dict[str, tuple[int, ...]]


class AdapterCheck:
    """problem(folder): None when the adapter in folder fits the run's base, else one line saying why not."""

    def __init__(self, cfg: Config, resolved: ResolvedModel):
        self.cfg, self.resolved = cfg, resolved
        self._expected: dict[str, Union[Shapes, str, None]] = {}  # per adapter config: what peft makes

    def problem(self, folder: Path) -> Optional[str]:
        missing = [name for name in (WEIGHTS, CONFIG) if not (folder / name).is_file()]
        if missing:
            return f"{folder / missing[0]} is missing"
        acfg, problem = _read_config(folder / CONFIG)
        if problem:
            return problem
        try:
            shapes = _shapes(folder / WEIGHTS)
        except Exception as e:  # truncated or corrupt: the exception type varies across safetensors versions
            return f"{folder / WEIGHTS} is damaged or truncated ({describe(e)})"
        key = json.dumps(acfg, sort_keys=True)
        if key not in self._expected:
            self._expected[key] = self._peft_shapes(folder)
        expected = self._expected[key]
        if isinstance(expected, str):
            return f"{folder / CONFIG} does not fit the base {self.resolved.display} ({expected})"
        if expected is None:
            return _inconsistency(folder / WEIGHTS, shapes, acfg)
        base = f"{self.resolved.display} with {CONFIG} (r={acfg['r']})"
        return _mismatch(folder / WEIGHTS, shapes, expected, base)

    def _meta_base(self):
        """The base model on the meta device (shapes only), or None when its config cannot be read."""
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        m = self.cfg.model
        try:
            config = AutoConfig.from_pretrained(
                self.resolved.source, revision=m.revision, trust_remote_code=m.trust_remote_code
            )
            with torch.device("meta"):
                return AutoModelForCausalLM.from_config(config, trust_remote_code=m.trust_remote_code)
        except Exception as e:  # offline and not cached, an architecture this transformers lacks, ...
            log.debug("export: cannot build %s on the meta device (%s)", self.resolved.source, describe(e))
            return None

    def _peft_shapes(self, folder: Path) -> Union[Shapes, str, None]:
        """{name: shape} peft saves for the base with folder's config; a str when the config does not fit."""
        import torch
        from peft import PeftConfig, get_peft_model, get_peft_model_state_dict

        base = self._meta_base()
        if base is None:
            return None
        try:
            with warnings.catch_warnings(), torch.device("meta"):
                warnings.simplefilter("ignore")
                pcfg = PeftConfig.from_pretrained(str(folder))
                pcfg.init_lora_weights = False  # shapes only: no PiSSA/LoftQ/EVA initialisation to run
                model = get_peft_model(base, pcfg)
            return {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model).items()}
        except Exception as e:  # target modules the base lacks, values peft refuses
            return describe(e)


def _read_config(path: Path) -> tuple[dict, Optional[str]]:
    try:
        acfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        return {}, f"{path} is damaged ({describe(e)})"
    if not isinstance(acfg, dict):
        return {}, f"{path} is damaged (a JSON {type(acfg).__name__}, not an object)"
    if acfg.get("peft_type") != "LORA":
        return acfg, f"{path} is not a LoRA adapter config (peft_type {acfg.get('peft_type')!r})"
    r = acfg.get("r")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        return acfg, f"{path} is damaged (r is {r!r}, not a positive integer)"
    return acfg, None


def _shapes(path: Path) -> Shapes:
    from safetensors.torch import load_file

    return {name: tuple(t.shape) for name, t in load_file(str(path)).items()}  # reads every tensor


def _mismatch(path: Path, shapes: Shapes, expected: Shapes, base: str) -> Optional[str]:
    extra = sorted(set(shapes) - set(expected))
    if extra:
        return f"{path} holds {extra[0]}{_more(extra)}, which {base} has no place for"
    missing = sorted(set(expected) - set(shapes))
    if missing:
        return f"{path} lacks {len(missing)} of the {len(expected)} tensors {base} needs (e.g. {missing[0]})"
    wrong = [name for name in sorted(shapes) if shapes[name] != expected[name]]
    if wrong:
        name = wrong[0]
        return (
            f"{path}: {name} has shape {list(shapes[name])}, {base} needs {list(expected[name])}"
            f"{_more(wrong)}"
        )
    return None


def _inconsistency(path: Path, shapes: Shapes, acfg: dict) -> Optional[str]:
    """The checks that need no base: LoRA weights of the config's target modules, of rank r."""
    if not shapes:
        return f"{path} holds no tensors"
    targets, r = acfg.get("target_modules"), acfg["r"]
    for name, shape in sorted(shapes.items()):
        m = _LORA_WEIGHT.match(name)
        module = m.group(1).rsplit(".", 1)[-1] if m else None
        if m is None or len(shape) != 2 or (isinstance(targets, list) and module not in targets):
            return f"{path} holds {name}, not a LoRA weight of a target module in {CONFIG}"
        rank = shape[0] if m.group(2) == "A" else shape[1]
        if rank != r and not acfg.get("rank_pattern"):
            return f"{path}: {name} has shape {list(shape)}, not of rank r={r} as {CONFIG} says"
    return None


def describe(e: BaseException) -> str:
    """An exception as `Type: first line` (run/checkpoint_checks.describe, without importing torch)."""
    first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _more(names: list) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""
