"""The model card (README.md) of an export: front matter for the Hub, how to load it, what GCPO did, the
final metrics, the training config and the citation. CARD is filled from card_fields()."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from gcpo_lite.config import Config
    from gcpo_lite.models.loading import ResolvedModel

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

QUANTIZED = "loaded in 4-bit NF4 (bitsandbytes)"

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

LOAD_MERGED = """```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("REPO_OR_DIR")
tokenizer = AutoTokenizer.from_pretrained("REPO_OR_DIR")
```"""

LOAD_ADAPTER = """```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
base = AutoModelForCausalLM.from_pretrained("{base}")
model = PeftModel.from_pretrained(base, "REPO_OR_DIR")
tokenizer = AutoTokenizer.from_pretrained("REPO_OR_DIR")
```"""

CARD = """---
{front_matter}
---

# {run_name}: GCPO fine-tune of {base}

This is {kind}, trained with gcpo-lite using **GCPO** (Group Contrastive
Policy Optimization, [arXiv:{arxiv}](https://arxiv.org/abs/{arxiv})): GRPO-style group-relative
advantages over {num_generations} sampled completions per prompt, where a group whose samples are all
wrong gets the reference ("gold") solution in place of its worst sample (gold_injection={gold_injection}),
with {importance_sampling_level}-level importance ratios and KL weight beta={beta}.
The base model was {base_precision}
during training; LoRA rank {lora_r}, alpha {lora_alpha} on {lora_targets}.

## Use

{load}

## Final metrics

| metric | value |
|---|---|
{rows}

Training data: `{dataset}`; {step} of {max_steps}
planned steps, {batch_size} completions each. `accuracy` is over the sampled completions of the last step,
`eval_accuracy` over held-out prompts at temperature {eval_temperature}.

## Training config

```yaml
{config_yaml}
```

## Citation

```bibtex
{bibtex}
```
"""


def _front_matter(cfg: Config, base: str, merged: bool) -> str:
    tags = ["gcpo", "grpo", "reinforcement-learning", "lora", "qlora" if cfg.model.quantize else "peft"]
    front = {
        "base_model": base,
        "library_name": "transformers" if merged else "peft",
        "tags": [*tags, "gcpo-lite"],
    }
    return yaml.safe_dump(front, sort_keys=False).strip()


def _metric_rows(metrics: dict) -> str:
    rows = "\n".join(
        f"| {k} | {metrics[k]:.4g} |" if isinstance(metrics[k], float) else f"| {k} | {metrics[k]} |"
        for k in CARD_METRICS
        if k in metrics
    )
    return rows or "| (none logged) | |"


def _kind(merged: bool, dtype: str, merge_base: str) -> str:
    if merged:
        return f"a full model: the LoRA adapter merged into the base ({merge_base} weights), saved in {dtype}"
    return "a LoRA adapter in PEFT format"


def card_fields(
    cfg: Config, resolved: ResolvedModel, metrics: dict, *, merged: bool, dtype: str, merge_base: str
) -> dict:
    """The values CARD is filled with."""
    base = resolved.source if not resolved.embedded else resolved.display
    g = cfg.gcpo
    return {
        "front_matter": _front_matter(cfg, base, merged),
        "run_name": Path(str(cfg.train.output_dir)).name,
        "base": base,
        "kind": _kind(merged, dtype, merge_base),
        "arxiv": ARXIV,
        "num_generations": g.num_generations,
        "gold_injection": g.gold_injection,
        "importance_sampling_level": g.importance_sampling_level,
        "beta": g.beta,
        "base_precision": QUANTIZED if cfg.model.quantize else "kept in full precision",
        "lora_r": cfg.lora.r,
        "lora_alpha": cfg.lora.alpha,
        "lora_targets": ", ".join(cfg.lora.target_modules),
        "load": LOAD_MERGED if merged else LOAD_ADAPTER.format(base=base),
        "rows": _metric_rows(metrics),
        "dataset": cfg.data.dataset or "addition (built-in)",
        "step": metrics.get("step", "?"),
        "max_steps": cfg.train.max_steps,
        "batch_size": cfg.train.batch_size,
        "eval_temperature": cfg.train.eval_temperature,
        "config_yaml": yaml.safe_dump(cfg.to_dict(), sort_keys=False).strip(),
        "bibtex": BIBTEX,
    }


def model_card(
    cfg: Config, resolved: ResolvedModel, metrics: dict, *, merged: bool, dtype: str, merge_base: str
) -> str:
    return CARD.format(
        **card_fields(cfg, resolved, metrics, merged=merged, dtype=dtype, merge_base=merge_base)
    )
