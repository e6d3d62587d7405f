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
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from gcpo_lite.config import ConfigError, DataConfig, ModelConfig, RolloutConfig
from gcpo_lite.data.datasets import dataset_name, is_builtin, load_split
from gcpo_lite.data.tasks import Example
from gcpo_lite.rewards.reward_model import RewardModel, resolve_verifier
from gcpo_lite.verify.answer import extract_answer

DEFAULT_BUILTIN_TOKENS = 5  # the embedded addition task answers in <= 4 tokens + EOS (EMBEDDED_DEFAULT)
DEFAULT_MATH_TOKENS = 1024  # enough for a worked MATH solution; R1-distill models want more
PASS_AT = (1, 2, 4, 8, 16, 32, 64)  # the pass@j reported besides pass@k, for every j <= k
PEFT_LOAD_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RuntimeError)


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
    quantize: bool = True
    device: str = "auto"
    cpu_allocator: str = "caching"
    seed: int = 0
    output_dir: str = "runs/eval"
    rollout: RolloutConfig = field(default_factory=RolloutConfig)  # the backend that generates

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


def _bad_adapter(adapter: str, problem: str, fix: str = "pass") -> ConfigError:
    where = "the adapter directory training wrote (RUN_DIR/adapter, RUN_DIR/checkpoints/step-N/adapter)"
    return ConfigError(f"--adapter {adapter!r}{problem}; {fix} {where}")


def check_adapter(adapter: Optional[str]) -> None:
    """Before any model loads: a ConfigError naming the file when `adapter` has no adapter_config.json or one
    that is not a JSON object, or no weights, or weights that are truncated or damaged."""
    if not adapter:
        return
    from safetensors import SafetensorError, safe_open

    from gcpo_lite.run.checkpoint_checks import describe

    config, weights = Path(adapter) / "adapter_config.json", Path(adapter) / "adapter_model.safetensors"
    if not config.is_file():
        raise _bad_adapter(adapter, " has no adapter_config.json")
    try:
        value = json.loads(config.read_text())
    except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise _bad_adapter(adapter, f": adapter_config.json is not readable JSON ({describe(e)})") from None
    if not isinstance(value, dict):
        raise _bad_adapter(adapter, f": adapter_config.json is a JSON {type(value).__name__}, not an object")
    if not weights.is_file():
        if (Path(adapter) / "adapter_model.bin").is_file():
            return  # the older format: peft reads it
        raise _bad_adapter(adapter, " has no adapter_model.safetensors")
    try:
        with safe_open(str(weights), "pt"):  # reads the header; checks that it covers the whole file
            pass
    except (SafetensorError, OSError) as e:
        why = describe(e)
        raise _bad_adapter(adapter, f": adapter_model.safetensors is damaged or truncated ({why})") from None


def eval_device(name: str):
    """--device as a torch.device; a ConfigError unless auto, cpu, cuda or a cuda:N this machine has."""
    import torch

    from gcpo_lite.models.loading import pick_device

    if not re.fullmatch(r"auto|cpu|cuda(?::\d+)?", name):
        raise ConfigError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if name.startswith("cuda") and torch.cuda.is_available() else 0
    if name.startswith("cuda") and int(name.partition(":")[2] or 0) >= count:
        raise ConfigError(
            f"--device {name} but this torch sees {count or 'no'} CUDA device{'s' if count != 1 else ''}; "
            + (f"use cuda:0 to cuda:{count - 1}" if count else "use --device cpu (or auto)")
        )
    return pick_device(name)


@contextmanager
def writing(path: Path):
    """An OSError writing `path` (a read-only filesystem, no permission, a full disk) as one ConfigError."""
    try:
        yield
    except OSError as e:
        why, fix = e.strerror or e, "pass --output-dir with a writable directory"
        raise ConfigError(f"cannot write {path} ({why}); {fix}") from None


def adapter_base(adapter: Optional[str]) -> Optional[str]:
    """The base an adapter was trained on (its adapter_config.json), when that is still on this machine or a
    hub id; None without an adapter. Lets `eval --adapter RUN/adapter` score the adapter on its own base."""
    if not adapter:
        return None
    try:
        base = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None
    if not base or not isinstance(base, str) or base.startswith(("/", ".", "~")) and not Path(base).exists():
        return None  # a path from another machine: the default model, as before
    return base


def load_eval_model(name: Optional[str], adapter: Optional[str], quantize: bool, device):
    """(model in eval mode, tokenizer, ResolvedModel): the base `name` (None: the adapter's own base, else the
    embedded model), with the LoRA adapter directory on top when given."""
    from gcpo_lite.demo.embedded_model import prepare_model
    from gcpo_lite.models.loading import load_base_model, load_tokenizer
    from gcpo_lite.run.checkpoint_checks import describe

    model_cfg = ModelConfig(
        name=name or adapter_base(adapter), quantize=quantize, gradient_checkpointing=False
    )
    resolved = prepare_model(model_cfg.name)
    tokenizer = load_tokenizer(resolved.source, model_cfg)
    model = load_base_model(resolved.source, model_cfg, device)
    try:
        model = _with_adapter(model, adapter) if adapter else model
    except (
        PEFT_LOAD_ERRORS
    ) as e:  # check_adapter read the files: a config peft rejects, another base's shapes
        if isinstance(e, RuntimeError) and "size mismatch" not in str(e):
            raise  # not the adapter's files (out of memory, a CUDA error)
        why = "its tensor shapes are another base's" if isinstance(e, RuntimeError) else describe(e)
        fix = "pass --model with the base it was trained on, or"
        raise _bad_adapter(adapter, f": peft cannot load it onto {resolved.display} ({why})", fix) from None
    model.eval()
    return model, tokenizer, resolved


def _with_adapter(model, adapter: str):
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter)


def install_cpu_allocator() -> Optional[str]:
    """The trainer's caching CPU allocator (memory/cpu_allocator.py) with its smallest cap: eval has no memory
    plan, and its generation batches repeat the same sizes, which is what the cache reuses. Returns why it is
    unavailable (the system allocator stays), or None once installed."""
    from gcpo_lite.memory import cpu_allocator

    ok, why = cpu_allocator.install(cpu_allocator.MIN_CAP_BYTES)
    return None if ok else why


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

    def generate(self, prompts: list[list[int]]) -> list[str]:
        """One decoded completion per prompt, from the rollout backend."""
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
        return self.tokenizer.batch_decode(out.completions, skip_special_tokens=True)

    def record(self, i: int, j: int, text: str) -> dict:
        """samples.jsonl's line for sample j of prompt i."""
        ex = self.examples[i]
        return {
            "index": i,
            "sample": j,
            "prompt": ex.prompt,
            "gold": ex.answer,
            "completion": text,
            "extracted": extract_answer(text, last_number_fallback=self.settings.last_number_fallback),
            "correct": self.rewards.correct(text, ex),  # as training decides it
        }

    def run(self, on_batch: Optional[Callable[[int, float], None]] = None) -> dict:
        """Generate and score every sample, in batches of settings.batch_size; writes samples.jsonl and
        summary.json and returns the summary. on_batch(sequences done in the batch, accuracy so far)."""
        import torch

        s, out_dir = self.settings, Path(self.settings.output_dir)
        jobs = [(i, j) for i in range(len(self.examples)) for j in range(s.num_samples)]  # prompt i, sample j
        correct = [[False] * s.num_samples for _ in self.examples]
        extracted = 0
        # backends sample from torch's global stream (no generator in their contract): seeded here, the
        # samples depend on the seed alone, not on what loading the model drew
        torch.manual_seed(s.seed)
        start, samples = time.time(), out_dir / "samples.jsonl"
        with writing(samples):
            fh = open(samples, "w")
        with fh:
            for b in range(0, len(jobs), s.batch_size):
                chunk, lines = jobs[b : b + s.batch_size], []
                for (i, j), text in zip(chunk, self.generate([self.prompts[i] for i, _ in chunk])):
                    row = self.record(i, j, text)
                    correct[i][j] = row["correct"]
                    extracted += row["extracted"] is not None
                    lines.append(json.dumps(row) + "\n")
                with writing(samples):  # flushed: closing the file has nothing left to fail on
                    fh.write("".join(lines))
                    fh.flush()
                if on_batch is not None:
                    on_batch(len(chunk), sum(map(sum, correct)) / (b + len(chunk)))
        summary = self.summary(correct, extracted, time.time() - start)
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


def load_examples(s: EvalSettings) -> tuple[str, list[Example]]:
    """(dataset name, the examples to score: the split, cut to settings.limit)."""
    data_cfg = s.data_config()
    name = dataset_name(data_cfg)
    splits = (data_cfg.train_split, "test")  # what a built-in task's load_split tells apart
    if is_builtin(data_cfg) and s.split not in splits:
        raise ConfigError(f"built-in task {name!r} has no split {s.split!r}; its splits: {', '.join(splits)}")
    examples = load_split(data_cfg, s.split, seed=s.seed)
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
    name, examples = load_examples(s)
    with writing(Path(s.output_dir)):  # made, and a file can be made in it, before the model loads
        Path(s.output_dir).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=s.output_dir).close()
    rewards = RewardModel(resolve_verifier(s.verifier, name, last_number_fallback=s.last_number_fallback))
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
