"""Evaluate a model (optionally with a LoRA adapter) on a dataset: accuracy (mean@k) and pass@k.

    gcpo-lite eval --model qwen2.5-1.5b --adapter runs/gcpo/adapter --dataset math500 \\
        --num-samples 4 --temperature 0.6 --output-dir runs/eval-math500

With no --model / --dataset it evaluates the embedded tiny model on the built-in `addition`
held-out split, offline. Writes DIR/summary.json and DIR/samples.jsonl (one line per sample:
prompt, completion, extracted answer, verdict). Generation is batched through the trainer's
sampler (rollout.sample_completions); scoring uses the same verifiers as training.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Optional

from gcpo_lite.config import ConfigError, DataConfig, ModelConfig

DEFAULT_BUILTIN_TOKENS = (
    5  # the embedded addition task answers in <= 4 tokens + EOS (presets.EMBEDDED_DEFAULT)
)
DEFAULT_MATH_TOKENS = (
    1024  # enough for a worked MATH solution; R1-distill models want more (--max-new-tokens)
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        help="registry short name, hub id or local path (omitted: the --adapter's own base, else the embedded model)",
    )
    p.add_argument(
        "--adapter", metavar="DIR", help="LoRA adapter directory saved by `gcpo-lite train` (DIR/adapter)"
    )
    p.add_argument(
        "--dataset",
        help="built-in task (addition), preset (gsm8k, math, math500, aime24, aime25, "
        "openr1), hub id or local .jsonl/.json/.csv/.parquet (omitted: addition)",
    )
    p.add_argument("--split", default="test", help="split to score (default: test; presets map it to theirs)")
    p.add_argument("--prompt-field", help="dataset column with the question")
    p.add_argument("--answer-field", help="dataset column with the final answer")
    p.add_argument("--system-prompt", help="system message before every question")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N prompts")
    p.add_argument(
        "--num-samples", "-k", type=int, default=1, metavar="K", help="completions per prompt (default 1)"
    )
    p.add_argument(
        "--temperature",
        type=float,
        metavar="T",
        help="sampling temperature (default: 0 = greedy for k=1, 1.0 for k>1)",
    )
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        metavar="N",
        help=f"tokens per completion (default: {DEFAULT_BUILTIN_TOKENS} for built-in tasks, "
        f"{DEFAULT_MATH_TOKENS} otherwise)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="sequences per generate call (default 64)")
    p.add_argument(
        "--verifier",
        default="auto",
        choices=["auto", "math", "math_verify"],
        help="auto: the task's own verifier for built-in tasks, else math",
    )
    p.add_argument(
        "--no-last-number-fallback",
        action="store_true",
        help="math verifier: an answer must be boxed / after #### / 'the answer is'",
    )
    p.add_argument(
        "--no-quantize", action="store_true", help="load the base in bf16/fp32 instead of 4-bit NF4"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--cpu-allocator",
        choices=("caching", "system"),
        default="caching",
        help="on CPU: gcpo-lite's caching allocator for tensors of 1 MiB or more, as `train` runs (a smaller "
        "resident set than glibc's heap), or the system one",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="sampling seed; also the built-in task's split seed (use the run's train.seed)",
    )
    p.add_argument(
        "--output-dir", metavar="DIR", default="runs/eval", help="where summary.json and samples.jsonl go"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _check(args) -> float:
    if args.num_samples < 1:
        raise ConfigError(f"--num-samples={args.num_samples} must be >= 1")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size={args.batch_size} must be >= 1")
    temperature = (
        args.temperature if args.temperature is not None else (0.0 if args.num_samples == 1 else 1.0)
    )
    if temperature < 0:
        raise ConfigError(f"--temperature={temperature} must be >= 0 (0 = greedy)")
    if temperature == 0 and args.num_samples > 1:
        raise ConfigError(
            f"--num-samples={args.num_samples} with --temperature 0 gives {args.num_samples} identical "
            "greedy completions; pass a sampling temperature, e.g. --temperature 0.6"
        )
    if args.adapter and not (Path(args.adapter) / "adapter_config.json").is_file():
        raise ConfigError(
            f"--adapter {args.adapter!r} has no adapter_config.json; pass the adapter directory a "
            "training run wrote (RUN_DIR/adapter)"
        )
    return temperature


def _adapter_base(adapter: Optional[str]) -> Optional[str]:
    """The base an adapter was trained on (its adapter_config.json), when that is still on this machine or a
    hub id; None without an adapter. Lets `eval --adapter RUN/adapter` score the adapter on its own base."""
    if not adapter:
        return None
    try:
        base = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None
    if (
        not isinstance(base, str)
        or not base
        or (base.startswith(("/", ".", "~")) and not Path(base).exists())
    ):
        return None  # a path from another machine: the default model, as before
    return base


def _load_model(args, device):
    from gcpo_lite.demo.embedded_model import prepare_model
    from gcpo_lite.models.loading import load_base_model, load_tokenizer

    name = args.model or _adapter_base(args.adapter)  # no --model: the adapter's own base
    model_cfg = ModelConfig(name=name, quantize=not args.no_quantize, gradient_checkpointing=False)
    resolved = prepare_model(model_cfg.name)
    tokenizer = load_tokenizer(resolved.source, model_cfg)
    model = load_base_model(resolved.source, model_cfg, device)
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter)
    model.eval()
    return model, tokenizer, resolved


def _install_cpu_allocator() -> None:
    """The trainer's caching CPU allocator (memory/cpu_allocator.py) with its smallest cap: eval has no memory
    plan, and its generation batches repeat the same sizes, which is what the cache reuses."""
    from gcpo_lite.memory import cpu_allocator

    ok, why = cpu_allocator.install(cpu_allocator.MIN_CAP_BYTES)
    if not ok:
        print(
            f"gcpo-lite eval: the caching CPU allocator is unavailable ({why}); using the system one",
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    import torch

    from gcpo_lite.data.datasets import dataset_name, is_builtin, load_split
    from gcpo_lite.data.prompts import eos_token_ids, prompt_ids, suppressed_ids
    from gcpo_lite.models.loading import pick_device
    from gcpo_lite.rewards.reward_model import resolve_verifier
    from gcpo_lite.rollout.sampler import sample_completions
    from gcpo_lite.verify.answer import extract_answer

    temperature = _check(args)
    k = args.num_samples
    data_cfg = DataConfig(
        dataset=args.dataset,
        prompt_field=args.prompt_field,
        answer_field=args.answer_field,
        system_prompt=args.system_prompt,
    )
    name = dataset_name(data_cfg)
    examples = load_split(data_cfg, args.split, seed=args.seed)
    if args.limit is not None:
        examples = examples[: args.limit]
    if not examples:
        raise ConfigError(f"dataset {name!r} split {args.split!r} has no examples to score")
    verifier = resolve_verifier(args.verifier, name, last_number_fallback=not args.no_last_number_fallback)
    fallback = not args.no_last_number_fallback

    device = pick_device(args.device)
    if device.type == "cpu" and args.cpu_allocator == "caching":
        _install_cpu_allocator()
    torch.manual_seed(args.seed)
    model, tokenizer, resolved = _load_model(args, device)
    eos_ids = eos_token_ids(tokenizer, model)
    suppress = suppressed_ids(tokenizer, eos_ids, None)
    pad_id = int(tokenizer.pad_token_id)
    max_new = args.max_new_tokens or (DEFAULT_BUILTIN_TOKENS if is_builtin(data_cfg) else DEFAULT_MATH_TOKENS)
    prompts = [prompt_ids(tokenizer, ex) for ex in examples]
    limit_positions = getattr(model.config, "max_position_embeddings", None)
    if limit_positions and max(map(len, prompts)) + max_new > limit_positions:
        max_new = max(1, limit_positions - max(map(len, prompts)))  # the tiny model has 128 positions

    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"gcpo-lite eval: {resolved.display}{' + ' + args.adapter if args.adapter else ''} on {name} "
        f"[{args.split}] | {len(examples)} prompts x {k} samples | temperature {temperature} | "
        f"max {max_new} new tokens | device {device}",
        flush=True,
    )

    jobs = [(i, j) for i in range(len(examples)) for j in range(k)]  # sequences: prompt i, sample j
    correct = [[False] * k for _ in examples]
    extracted_any = 0
    generator = torch.Generator(device=device).manual_seed(args.seed)
    bar = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="eval", unit="seq", dynamic_ncols=True)
    start = time.time()
    with open(out_dir / "samples.jsonl", "w") as fh:
        for b in range(0, len(jobs), args.batch_size):
            chunk = jobs[b : b + args.batch_size]
            out = sample_completions(
                model,
                [prompts[i] for i, _ in chunk],
                max_new_tokens=max_new,
                temperature=temperature,
                top_p=args.top_p,
                eos_ids=eos_ids,
                pad_id=pad_id,
                suppress_ids=suppress,
                generator=generator,
            )
            texts = tokenizer.batch_decode(out.completions, skip_special_tokens=True)
            for (i, j), text in zip(chunk, texts):
                ex = examples[i]
                ok = verifier(text, ex) >= 1.0
                answer = extract_answer(text, last_number_fallback=fallback)
                extracted_any += answer is not None
                correct[i][j] = ok
                fh.write(
                    json.dumps(
                        {
                            "index": i,
                            "sample": j,
                            "prompt": ex.prompt,
                            "gold": ex.answer,
                            "completion": text,
                            "extracted": answer,
                            "correct": ok,
                        }
                    )
                    + "\n"
                )
            if bar is not None:
                bar.update(len(chunk))
                bar.set_postfix({"acc": f"{sum(map(sum, correct)) / (b + len(chunk)):.3f}"}, refresh=False)
    if bar is not None:
        bar.close()
    seconds = time.time() - start

    n_correct = [sum(row) for row in correct]
    summary = {
        "model": resolved.display,
        "adapter": args.adapter,
        "dataset": name,
        "split": args.split,
        "num_prompts": len(examples),
        "num_samples": k,
        "temperature": temperature,
        "top_p": args.top_p,
        "max_new_tokens": max_new,
        "verifier": args.verifier,
        "last_number_fallback": fallback,
        "accuracy": sum(n_correct) / (len(examples) * k),  # mean@k: the mean over all samples
        "pass_at_k": sum(c > 0 for c in n_correct) / len(examples),  # some sample of the k is correct
        "pass_at": {
            str(j): sum(pass_at_k(k, c, j) for c in n_correct) / len(examples)
            for j in sorted({1, 2, 4, 8, 16, 32, 64, k})
            if j <= k
        },
        "answer_extracted": extracted_any / len(jobs),  # completions with a recognisable final answer
        "seconds": round(seconds, 2),
        "samples_file": "samples.jsonl",
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"accuracy (mean@{k}) {summary['accuracy']:.1%} | pass@{k} {summary['pass_at_k']:.1%} | "
        f"answers extracted {summary['answer_extracted']:.0%} | {seconds:.1f}s -> {out_dir / 'summary.json'}",
        flush=True,
    )
    return 0
