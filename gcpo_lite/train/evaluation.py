"""Scoring a model (optionally with a LoRA adapter) on a dataset split: accuracy (mean@k) and pass@k.

Generation goes through the rollout backend (rollout/backends.py), the seam the trainer samples through, so
every backend reaches eval too. Correctness is RewardModel.correct, as in training: a verifier that raises
scores that sample wrong and is counted (summary["reward_errors"]) instead of ending the evaluation.

`prepare_evaluation(settings)` loads the data, the verifier and the model; `Evaluation.run()` generates,
scores, writes OUTPUT_DIR/samples.jsonl (one line per sample) and OUTPUT_DIR/summary.json, and returns the
summary. torch, transformers and the model code are imported inside the functions that need them: the eval
command's --help reads this module's defaults and must not pay for them.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from gcpo_lite.config import ConfigError, DataConfig, RewardConfig, RolloutConfig
from gcpo_lite.data.datasets import dataset_name, is_builtin, load_split
from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.reward_model import RewardModel, build_reward_model
from gcpo_lite.train.eval_model import (  # noqa: F401 (re-exported: the eval command's names)
    adapter_base,
    check_adapter,
    eval_device,
    load_eval_model,
)
from gcpo_lite.verify.answer import extract_answer

DEFAULT_BUILTIN_TOKENS = 5  # the embedded addition task answers in <= 4 tokens + EOS (EMBEDDED_DEFAULT)
DEFAULT_MATH_TOKENS = 1024  # enough for a worked MATH solution; R1-distill models want more
PASS_AT = (1, 2, 4, 8, 16, 32, 64)  # the pass@j reported besides pass@k, for every j <= k


@dataclass
class EvalSettings:
    """What to score and how; the eval command's flags, one field each (None: the default it documents)."""

    model: Optional[str] = None  # None: the adapter's own base, else the embedded model
    adapter: Optional[str] = None
    dataset: Optional[str] = None  # None: the built-in addition task
    split: str = "test"
    prompt_field: Optional[str] = None
    answer_field: Optional[str] = None
    system_prompt: Optional[str] = None
    limit: Optional[int] = None
    num_samples: int = 1
    temperature: Optional[float] = None  # None: 0 (greedy) for one sample, 1.0 for several
    top_p: float = 1.0
    max_new_tokens: Optional[int] = None  # None: DEFAULT_BUILTIN_TOKENS or DEFAULT_MATH_TOKENS
    batch_size: int = 64
    verifier: str = "auto"
    last_number_fallback: bool = True
    reward_functions: Optional[list] = None  # names / specs as reward.functions (None: the verifier alone)
    reward_weights: Optional[list] = None
    correct_fn: str = "auto"  # as reward.correct_fn: what accuracy counts
    correct_threshold: float = 1.0
    quantize: bool = True
    device: str = "auto"
    cpu_allocator: str = "caching"
    seed: int = 0
    output_dir: str = "runs/eval"
    rollout: RolloutConfig = field(default_factory=RolloutConfig)  # the backend that generates

    def reward_config(self) -> RewardConfig:
        """The reward section these settings stand for; a function that raises scores 0 and is counted."""
        custom = self.reward_functions is not None
        return RewardConfig(
            functions=self.reward_functions,
            weights=self.reward_weights,
            correct_fn=self.correct_fn,
            correct_threshold=self.correct_threshold,
            on_error="zero",
            verifier="auto" if custom else self.verifier,
            last_number_fallback=self.last_number_fallback,
        )

    def data_config(self) -> DataConfig:
        return DataConfig(
            dataset=self.dataset,
            prompt_field=self.prompt_field,
            answer_field=self.answer_field,
            system_prompt=self.system_prompt,
        )


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def check_settings(s: EvalSettings) -> float:
    """The sampling temperature; ConfigError for settings that cannot give a meaningful score."""
    for flag, n, hint in (
        ("--num-samples", s.num_samples, ""),
        ("--batch-size", s.batch_size, ""),
        ("--limit", s.limit, "; omit it to score the whole split"),
        ("--max-new-tokens", s.max_new_tokens, "; omit it for the dataset kind's default"),
    ):
        if n is not None and n < 1:
            raise ConfigError(f"{flag}={n} must be >= 1{hint}")
    if not 0 < s.top_p <= 1:
        raise ConfigError(f"--top-p={s.top_p} must be > 0 and <= 1 (1: sample from the whole distribution)")
    temperature = s.temperature if s.temperature is not None else (0.0 if s.num_samples == 1 else 1.0)
    if not 0 <= temperature < math.inf:  # nan too
        raise ConfigError(f"--temperature={temperature} must be a number >= 0 (0 = greedy)")
    if temperature == 0 and s.num_samples > 1:
        raise ConfigError(
            f"--num-samples={s.num_samples} with --temperature 0 gives {s.num_samples} identical "
            "greedy completions; pass a sampling temperature, e.g. --temperature 0.6"
        )
    check_adapter(s.adapter)
    return temperature


@contextmanager
def writing(path: Path):
    """An OSError writing `path` (a read-only filesystem, no permission, a full disk) as one ConfigError."""
    try:
        yield
    except OSError as e:
        why, fix = e.strerror or e, "pass --output-dir with a writable directory"
        raise ConfigError(f"cannot write {path} ({why}); {fix}") from None


def install_cpu_allocator() -> Optional[str]:
    """The trainer's caching CPU allocator (memory/cpu_allocator.py) with its smallest cap: eval has no memory
    plan, and its generation batches repeat the same sizes, which is what the cache reuses. Returns why it is
    unavailable (the system allocator stays), or None once installed."""
    from gcpo_lite.memory import cpu_allocator

    ok, why = cpu_allocator.install(cpu_allocator.MIN_CAP_BYTES)
    return None if ok else why


class RewardTotals:
    """The mean reward and each function's mean over the samples it scored, for summary.json."""

    def __init__(self):
        self.rewards: list = []
        self.per_function: dict = {}

    def add(self, reward: float, per_function: dict) -> None:
        self.rewards.append(reward)
        for k, v in per_function.items():
            self.per_function.setdefault(k, [])
            if v is not None:
                self.per_function[k].append(v)

    def summary(self) -> dict:
        out = {"reward_mean": sum(self.rewards) / max(1, len(self.rewards))}
        for k, values in self.per_function.items():
            out[f"reward/{k}/mean"] = sum(values) / len(values) if values else None
        return out


@dataclass
class Evaluation:
    """A loaded model, the prompts to score and how to sample them; run() does the scoring."""

    settings: EvalSettings
    temperature: float
    dataset: str  # its name, as summary.json records it
    examples: list[Example]
    rewards: RewardModel
    device: Any  # torch.device
    model: Any
    tokenizer: Any
    resolved: Any  # models.loading.ResolvedModel: what the model name resolved to
    prompts: list[list[int]]  # token ids, one per example
    max_new_tokens: int
    allocator_note: Optional[str] = None  # why the caching CPU allocator is unavailable, when it was wanted
    backend: Any = None  # rollout.backends.RolloutBackend

    def __post_init__(self):
        from gcpo_lite.data.prompts import eos_token_ids, suppressed_ids
        from gcpo_lite.rollout.backends import make_backend

        self.eos_ids = eos_token_ids(self.tokenizer, self.model)
        self.suppress_ids = suppressed_ids(self.tokenizer, self.eos_ids, None)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.backend = self.backend or make_backend(self.settings.rollout)

    @property
    def num_sequences(self) -> int:
        return len(self.examples) * self.settings.num_samples

    def generate(self, prompts: list[list[int]]) -> tuple[list[str], list[list[int]]]:
        """(decoded completion, its token ids) per prompt, from the rollout backend."""
        out = self.backend.generate(
            self.model,
            prompts,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.settings.top_p,
            eos_ids=self.eos_ids,
            pad_id=self.pad_id,
            suppress_ids=self.suppress_ids,
        )
        return self.tokenizer.batch_decode(out.completions, skip_special_tokens=True), out.completions

    def score(self, chunk: list, texts: list, ids: list) -> list[tuple]:
        """(text, reward, correct, {function: score or None}) per sample of the batch."""
        s = self.rewards.score_batch(texts, ids, [self.examples[i] for i, _ in chunk])
        per = [
            {k: (None if math.isnan(v[n]) else v[n]) for k, v in s.per_function.items()}
            for n in range(len(texts))
        ]
        return list(zip(texts, s.rewards, s.correct, per))

    def record(self, i: int, j: int, text: str, reward: float, correct: bool, per_function: dict) -> dict:
        """samples.jsonl's line for sample j of prompt i."""
        ex = self.examples[i]
        return {
            "index": i,
            "sample": j,
            "prompt": ex.prompt,
            "gold": ex.answer,
            "completion": text,
            "extracted": extract_answer(text, last_number_fallback=self.settings.last_number_fallback),
            "correct": correct,  # as training decides it (reward.correct_fn)
            "reward": reward,
            "rewards": per_function,
        }

    def run(self, on_batch: Optional[Callable[[int, float], None]] = None) -> dict:
        """Generate and score every sample, in batches of settings.batch_size; writes samples.jsonl and
        summary.json and returns the summary. on_batch(sequences done in the batch, accuracy so far)."""
        import torch

        s, out_dir = self.settings, Path(self.settings.output_dir)
        jobs = [(i, j) for i in range(len(self.examples)) for j in range(s.num_samples)]  # prompt i, sample j
        correct = [[False] * s.num_samples for _ in self.examples]
        extracted, totals = 0, RewardTotals()
        # backends sample from torch's global stream (no generator in their contract): seeded here, the
        # samples depend on the seed alone, not on what loading the model drew
        torch.manual_seed(s.seed)
        start, samples = time.time(), out_dir / "samples.jsonl"
        with writing(samples):
            fh = open(samples, "w")
        with fh:
            for b in range(0, len(jobs), s.batch_size):
                chunk = jobs[b : b + s.batch_size]
                scored = self.score(chunk, *self.generate([self.prompts[i] for i, _ in chunk]))
                rows = [self.record(i, j, *sc) for (i, j), sc in zip(chunk, scored)]
                lines = [json.dumps(row) + "\n" for row in rows]
                for row in rows:
                    correct[row["index"]][row["sample"]] = row["correct"]
                    extracted += row["extracted"] is not None
                    totals.add(row["reward"], row["rewards"])
                with writing(samples):  # flushed: closing the file has nothing left to fail on
                    fh.write("".join(lines))
                    fh.flush()
                if on_batch is not None:
                    on_batch(len(chunk), sum(map(sum, correct)) / (b + len(chunk)))
        summary = {**self.summary(correct, extracted, time.time() - start), **totals.summary()}
        with writing(out_dir / "summary.json"):
            (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def summary(self, correct: list[list[bool]], extracted: int, seconds: float) -> dict:
        """summary.json: the run's settings and metrics from the per-sample verdicts correct[prompt][sample]."""
        s, k, n = self.settings, self.settings.num_samples, len(self.examples)
        n_correct = [sum(row) for row in correct]
        return {
            "model": self.resolved.display,
            "adapter": s.adapter,
            "dataset": self.dataset,
            "split": s.split,
            "num_prompts": n,
            "num_samples": k,
            "temperature": self.temperature,
            "top_p": s.top_p,
            "max_new_tokens": self.max_new_tokens,
            "verifier": s.verifier,
            "rewards": self.rewards.describe(),
            "last_number_fallback": s.last_number_fallback,
            "accuracy": sum(n_correct) / (n * k),  # mean@k: the mean over all samples
            "pass_at_k": sum(c > 0 for c in n_correct) / n,  # some sample of the k is correct
            "pass_at": {
                str(j): sum(pass_at_k(k, c, j) for c in n_correct) / n
                for j in sorted({*PASS_AT, k})
                if j <= k
            },
            "answer_extracted": extracted / (n * k),  # completions with a recognisable final answer
            "reward_errors": self.rewards.errors,  # verifier exceptions, scored wrong (metrics.jsonl's too)
            "seconds": round(seconds, 2),
            "samples_file": "samples.jsonl",
        }


def load_examples(s: EvalSettings, needs_answer: bool = True) -> tuple[str, list[Example]]:
    """(dataset name, the examples to score: the split, cut to settings.limit)."""
    data_cfg = s.data_config()
    name = dataset_name(data_cfg)
    splits = (data_cfg.train_split, "test")  # what a built-in task's load_split tells apart
    if is_builtin(data_cfg) and s.split not in splits:
        raise ConfigError(f"built-in task {name!r} has no split {s.split!r}; its splits: {', '.join(splits)}")
    examples = load_split(data_cfg, s.split, seed=s.seed, needs_answer=needs_answer)
    if s.limit is not None:
        examples = examples[: s.limit]
    if not examples:
        raise ConfigError(f"dataset {name!r} split {s.split!r} has no examples to score")
    return name, examples


def max_new_tokens(s: EvalSettings, model, prompts: list[list[int]]) -> int:
    """Tokens per completion: the setting or the dataset kind's default, cut to fit the model's positions."""
    default = DEFAULT_BUILTIN_TOKENS if is_builtin(s.data_config()) else DEFAULT_MATH_TOKENS
    wanted = s.max_new_tokens or default
    positions = getattr(model.config, "max_position_embeddings", None)
    longest = max(map(len, prompts))
    if positions and longest + wanted > positions:
        return max(1, positions - longest)  # the tiny model has 128 positions
    return wanted


def prepare_evaluation(s: EvalSettings) -> Evaluation:
    """Check the settings, load the examples, the verifier and the model; creates settings.output_dir."""
    import torch

    from gcpo_lite.data.prompts import prompt_ids

    temperature = check_settings(s)
    device = eval_device(s.device)
    rewards = build_reward_model(s.reward_config(), dataset_name(s.data_config()))
    name, examples = load_examples(s, needs_answer=rewards.needs_answer)
    with writing(Path(s.output_dir)):  # made, and a file can be made in it, before the model loads
        Path(s.output_dir).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=s.output_dir).close()
    note = install_cpu_allocator() if device.type == "cpu" and s.cpu_allocator == "caching" else None
    torch.manual_seed(s.seed)
    model, tokenizer, resolved = load_eval_model(s.model, s.adapter, s.quantize, device)
    prompts = [prompt_ids(tokenizer, ex) for ex in examples]
    return Evaluation(
        settings=s,
        temperature=temperature,
        dataset=name,
        examples=examples,
        rewards=rewards,
        device=device,
        model=model,
        tokenizer=tokenizer,
        resolved=resolved,
        prompts=prompts,
        max_new_tokens=max_new_tokens(s, model, prompts),
        allocator_note=note,
    )
