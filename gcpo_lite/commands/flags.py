"""Command-line flags that stand for config keys: one table, shared by `train` and `plan`."""

from __future__ import annotations

import argparse
import json

FLAG_KEYS = {  # argparse dest -> the config key it sets
    "model": "model.name",
    "dataset": "data.dataset",
    "prompt_field": "data.prompt_field",
    "answer_field": "data.answer_field",
    "solution_field": "data.solution_field",
    "output_dir": "train.output_dir",
    "max_steps": "train.max_steps",
    "seed": "train.seed",
    "save_steps": "train.save_steps",
    "report_to": "train.report_to",
    "batch_size": "train.batch_size",
    "max_completion_length": "gcpo.max_completion_length",
    "max_prompt_length": "data.max_prompt_length",
    "lora_r": "lora.r",
    "compute_dtype": "model.compute_dtype",
}
SWITCH_KEYS = {  # store_true dest -> the override it adds
    "no_quantize": "model.quantize=false",
    "no_gradient_checkpointing": "model.gradient_checkpointing=false",
}


LIST_KEYS = {  # repeatable flag dest -> the list key its values make
    "reward_fn": "reward.functions",
}


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """`section.key=value` strings for the flags this command has and the user gave."""
    out = [
        f"{key}={getattr(args, dest)}"
        for dest, key in FLAG_KEYS.items()
        if getattr(args, dest, None) is not None
    ]
    out += [
        f"{key}={json.dumps(getattr(args, dest))}"
        for dest, key in LIST_KEYS.items()
        if getattr(args, dest, None)
    ]
    return out + [o for dest, o in SWITCH_KEYS.items() if getattr(args, dest, False)]
