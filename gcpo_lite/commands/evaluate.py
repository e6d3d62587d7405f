"""Evaluate a model (optionally with a LoRA adapter) on a dataset: accuracy (mean@k) and pass@k.

    gcpo-lite eval --model qwen2.5-1.5b --adapter runs/gcpo/adapter --dataset math500 \\
        --num-samples 4 --temperature 0.6 --output-dir runs/eval-math500

With no --model / --dataset it evaluates the embedded tiny model on the built-in `addition`
held-out split, offline. Writes DIR/summary.json and DIR/samples.jsonl (one line per sample:
prompt, completion, extracted answer, verdict). The work is gcpo_lite/train/evaluation.py: generation goes
through the trainer's rollout backend, in batches, and scoring through its RewardModel.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gcpo_lite.train.evaluation import (
    DEFAULT_BUILTIN_TOKENS,
    DEFAULT_MATH_TOKENS,
    EvalSettings,
    prepare_evaluation,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    _add_what_to_score(p)
    _add_sampling(p)
    _add_scoring_and_runtime(p)


def _add_what_to_score(p: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "--split",
        default="test",
        help="split to score (default: test; a built-in task has train and test; presets map it to theirs)",
    )
    p.add_argument("--prompt-field", help="dataset column with the question")
    p.add_argument("--answer-field", help="dataset column with the final answer")
    p.add_argument("--system-prompt", help="system message before every question")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N prompts (N >= 1)")


def _add_sampling(p: argparse.ArgumentParser) -> None:
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


def _add_scoring_and_runtime(p: argparse.ArgumentParser) -> None:
    _add_rewards(p)
    _add_runtime(p)


def _add_rewards(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--verifier",
        default="auto",
        choices=["auto", "math", "math_verify", "last_integer"],
        help="auto: the task's own verifier for built-in tasks, else math",
    )
    p.add_argument(
        "--reward-fn",
        action="append",
        metavar="FN",
        help="score with these reward functions, repeatable, as the run trained with (its reward.functions): "
        "built-in names or FILE.py:NAME / package.module:NAME; accuracy then follows --correct-fn",
    )
    p.add_argument(
        "--reward-weight",
        action="append",
        type=float,
        metavar="W",
        help="one per --reward-fn, in order (default 1.0 each): the reported reward_mean's weights",
    )
    p.add_argument(
        "--correct-fn",
        default="auto",
        help="the function whose score makes a sample correct (reward.correct_fn; auto: the first built-in "
        "verifier, else the first function)",
    )
    p.add_argument(
        "--correct-threshold", type=float, default=1.0, help="correct when its score is >= this (default 1.0)"
    )
    p.add_argument(
        "--no-last-number-fallback",
        action="store_true",
        help="math verifier: an answer must be boxed / after #### / 'the answer is'",
    )


def _add_runtime(p: argparse.ArgumentParser) -> None:
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


def settings_from_args(args: argparse.Namespace) -> EvalSettings:
    return EvalSettings(
        model=args.model,
        adapter=args.adapter,
        dataset=args.dataset,
        split=args.split,
        prompt_field=args.prompt_field,
        answer_field=args.answer_field,
        system_prompt=args.system_prompt,
        limit=args.limit,
        num_samples=args.num_samples,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        verifier=args.verifier,
        reward_functions=args.reward_fn,
        reward_weights=args.reward_weight,
        correct_fn=args.correct_fn,
        correct_threshold=args.correct_threshold,
        last_number_fallback=not args.no_last_number_fallback,
        quantize=not args.no_quantize,
        device=args.device,
        cpu_allocator=args.cpu_allocator,
        seed=args.seed,
        output_dir=args.output_dir,
    )


def _progress_bar(total: int):
    """(on_batch callback for Evaluation.run, close)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="eval", unit="seq", dynamic_ncols=True)

    def on_batch(done: int, accuracy: float) -> None:
        bar.update(done)
        bar.set_postfix({"acc": f"{accuracy:.3f}"}, refresh=False)

    return on_batch, bar.close


def _headline(ev) -> str:
    s = ev.settings
    return (
        f"gcpo-lite eval: {ev.resolved.display}{' + ' + s.adapter if s.adapter else ''} on {ev.dataset} "
        f"[{s.split}] | {len(ev.examples)} prompts x {s.num_samples} samples | temperature {ev.temperature} | "
        f"max {ev.max_new_tokens} new tokens | device {ev.device}\nrewards: {ev.rewards.describe()}"
    )


def _result_line(summary: dict, output_dir: str) -> str:
    k = summary["num_samples"]
    errors = summary["reward_errors"]
    return (
        f"accuracy (mean@{k}) {summary['accuracy']:.1%} | pass@{k} {summary['pass_at_k']:.1%} | "
        f"answers extracted {summary['answer_extracted']:.0%} | reward {summary['reward_mean']:.3g} | "
        + (f"{errors} reward error{'s' if errors != 1 else ''} (scored wrong) | " if errors else "")
        + f"{summary['seconds']:.1f}s -> {Path(output_dir) / 'summary.json'}"
    )


def run(args: argparse.Namespace) -> int:
    ev = prepare_evaluation(settings_from_args(args))
    if ev.allocator_note:
        print(
            f"gcpo-lite eval: the caching CPU allocator is unavailable ({ev.allocator_note}); using the system one",
            flush=True,
        )
    print(_headline(ev), flush=True)
    on_batch, close = _progress_bar(ev.num_sequences) if not args.no_progress else (None, None)
    try:
        summary = ev.run(on_batch)
    finally:
        if close is not None:
            close()
    print(_result_line(summary, args.output_dir), flush=True)
    return 0
