"""What a step reports: the rollout's figures from its record, and the one writer of metrics.jsonl and
completions.jsonl."""

from __future__ import annotations

import json
import math
from typing import Optional

import torch

from gcpo_lite.algorithm.advantages import group_stats
from gcpo_lite.algorithm.batches import StepBatch
from gcpo_lite.train.truncation_warning import TruncationWarning

FUNCTION_KEY = "reward/"  # a record's per-function scores: "reward/<name>" -> (B,) scores, NaN where None


def function_scores(per_row: list) -> dict:
    """The record's per-function keys from Sampled.per_function (one {name: score} per row)."""
    names = list(dict.fromkeys(k for row in per_row for k in row))
    return {f"{FUNCTION_KEY}{k}": [row.get(k, math.nan) for row in per_row] for k in names}


def _function_metrics(rec: dict) -> dict:
    """reward/<name>/mean and /std over the samples each function scored (TRL's names); absent on a step where
    it scored none."""
    out = {}
    for key in (k for k in rec if k.startswith(FUNCTION_KEY)):
        values = [v for v in rec[key] if not math.isnan(v)]
        if not values:  # the function declined every sample of the step: no figure (not a NaN in the log)
            continue
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        out[f"{key}/mean"], out[f"{key}/std"] = mean, math.sqrt(var)
    return out


def sample_record(s) -> dict:
    """The per-row lists sample_metrics reads, from a Sampled (the policy's own samples, before gold)."""
    return {
        "sampled_rewards": list(s.rewards),
        "correct": list(s.correct),
        "lengths": [len(c) for c in s.completions],
        "truncated": list(s.truncated),
        "entropy": list(s.entropy),
        **function_scores(s.per_function),
    }


def sample_metrics(rec: dict, G: int) -> dict:
    """Figures of the policy's own samples (G a group, contiguous) from a record's per-row lists: sampled_rewards,
    correct, lengths, truncated, entropy (each sequence's summed entropy) and reward/<name> scores."""
    rewards, correct = torch.tensor(rec["sampled_rewards"], dtype=torch.float32), torch.tensor(rec["correct"])
    groups = correct.view(-1, G) if len(correct) else correct.view(0, G)
    lengths, entropy = rec["lengths"], sum(rec["entropy"])  # NaN: the rollout backend gives no entropy
    out = {
        "reward_mean": rewards.mean().item() if len(rewards) else 0.0,
        "reward_std": rewards.std().item() if len(rewards) > 1 else 0.0,
        "accuracy": correct.float().mean().item() if len(correct) else 0.0,
        "all_correct_frac": groups.all(dim=1).float().mean().item() if len(groups) else 0.0,
        "all_wrong_frac": (~groups).all(dim=1).float().mean().item() if len(groups) else 0.0,
        "completion_length_mean": sum(lengths) / max(1, len(lengths)),
        "completion_length_max": max(lengths, default=0),
        "sampled_tokens": sum(lengths),
        "entropy": entropy / max(1, sum(lengths)),  # per sampled token (nats), at the sampling temperature
        "truncated_frac": sum(rec["truncated"]) / max(1, len(lengths)),
        **_function_metrics(rec),
    }
    if math.isnan(entropy):  # unavailable, not 0
        del out["entropy"]
    return out


def rollout_metrics(rec: dict, G: int, generated: Optional[dict] = None) -> dict:
    """The step's rollout figures from its record (the whole job's under torchrun). Unsuffixed keys
    describe the policy's own samples (gold rows excluded): with dynamic sampling every sample it generated
    (`generated`, dropped groups included), the kept groups' own under kept_*; `*_with_gold` keys describe the
    batch the update trains on."""
    reward_t = torch.tensor(rec["rewards"], dtype=torch.float32)
    stats = group_stats(torch.tensor(rec["correct"]), torch.tensor(rec["advantages"]), G)
    is_gold, gold_status = rec["is_gold"], rec["gold_status"]
    metrics = {
        **sample_metrics(rec, G),
        "reward_mean_with_gold": reward_t.mean().item(),
        "reward_std_with_gold": reward_t.std().item() if len(reward_t) > 1 else 0.0,
        "gold_injected_frac": sum(is_gold) / max(1, len(is_gold) // G),  # of the groups that train
        "zero_advantage_groups": stats.zero_advantage_groups,
        "reward_errors": rec["reward_errors"],
    }
    if generated is not None:
        every = sample_metrics(generated, G)
        metrics.update({f"kept_{k}": metrics[k] for k in every}, **every)
    for status in ("truncated", "skipped_overflow", "failed_verification", "suppressed_token", "missing"):
        metrics[f"gold_{status}"] = gold_status.get(status, 0)
    other = ("truncated_zeroed", "truncated_masked", "rollouts", "generated_tokens", "dynamic_rounds")
    metrics.update({k: rec[k] for k in (*other, "dynamic_dropped_groups") if k in rec})
    return metrics


class MetricsLog:
    """Rows to metrics.jsonl, a few sampled completions to completions.jsonl, the row to sinks and the bar."""

    def __init__(self, trainer, metrics_file, completions_file):
        self.trainer, self.mf, self.cf = trainer, metrics_file, completions_file

    def write(self, row: dict, *, batch: Optional[StepBatch] = None, sinks=None, bar=None) -> dict:
        self.mf.write(json.dumps(row) + "\n")
        self.mf.flush()
        if batch is not None:
            self.write_samples(batch)
        if sinks is not None:
            sinks.log(row)
        if bar is not None:
            bar.update(row)
        self.truncation = getattr(self, "truncation", None) or TruncationWarning(self.trainer)
        self.truncation.feed(row)  # one line when most samples keep hitting the length limit
        return row

    def write_samples(self, batch: StepBatch) -> None:
        n = self.trainer.cfg.train.log_completions
        if n <= 0:
            return
        G = self.trainer.cfg.gcpo.num_generations
        for i in range(0, min(len(batch.completions), n * G), G):  # first sample of the first n groups
            ex = batch.examples[i // G]
            text = self.trainer.tokenizer.decode(batch.completions[i], skip_special_tokens=True)
            self.cf.write(
                json.dumps(
                    {
                        "step": self.trainer.step,
                        "prompt": ex.prompt,
                        "answer": ex.answer,
                        "completion": text,
                        "reward": float(batch.rewards[i]),
                        "gold": bool(batch.is_gold[i]),
                    }
                )
                + "\n"
            )
        self.cf.flush()
