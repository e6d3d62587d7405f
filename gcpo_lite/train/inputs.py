"""What a run can be given as Python objects rather than names in its config (the Python API's way in)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class RunInputs:
    """Objects that replace a config's names; None: the config's own (reward.functions, data.dataset)."""

    reward_funcs: Optional[list] = None  # callables in TRL's convention, or names / specs
    train_dataset: Any = None  # a datasets.Dataset or a list of dicts: replaces data.dataset
    eval_dataset: Any = None  # the held-out rows: replaces data.eval_split (None: carved off train)
    model: Any = None  # a loaded transformers model (None: model.name is loaded)
    tokenizer: Any = None  # its tokenizer (processing_class); None: the model's own
