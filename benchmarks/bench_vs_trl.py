"""gcpo-lite vs TRL's GRPOTrainer: wall time of one training step on the same model and settings (issue 12).

    pip install trl   # an optional benchmark dependency; nothing else in the repo imports it
    python benchmarks/bench_vs_trl.py [--sizes h256,h512,h1024] [--steps 4] [--warmup-steps 1] [--repeats 1]
        [--completions 64] [--max-completion-length 48] [--threads 2] [--learning-rate 1e-5]
        [--work-dir DIR] [--write-md docs/BENCHMARKS.md]

For each size a random Qwen2 (h256: 4 layers, hidden 256; h512: 6 x 512; h1024: 8 x 1024; MLP 2.75 x hidden,
heads of 64, 2 KV heads) is written once with the embedded model's tokenizer (a 48-token BPE of the addition
task), then both trainers train it, each in its own subprocess, alternating (gcpo-lite first on even repeats,
TRL first on odd ones) so both see the same machine state:

  - 4-bit NF4 base (double quant, fp32 compute), LoRA r=16 alpha=32 on q,k,v,o,gate,up,down, fp32 adapters;
  - the built-in addition task (same prompts through the same chat template, the same verifier as reward);
  - G=4, --completions per step (16 prompts x 4), sampling at temperature 1 up to --max-completion-length
    tokens, beta=0, sequence-level importance sampling (GSPO ratio) with gcpo-lite's clip range, one update per
    rollout (num_iterations=1) over the whole batch in one forward/backward, no gradient checkpointing, AdamW
    (0.9, 0.99) at a constant learning rate, --threads torch threads.

Each run does --warmup-steps (default 1) + --steps steps; the warm-up steps, which pay a process's one-time costs
(lazy initialisation, first-call kernel setup), are discarded. Per step: wall time, completion tokens sampled (EOS
included) and the process's peak resident set during the step (VmHWM, reset at each step's start). gcpo-lite's
figures come from RUN/metrics.jsonl (rollout_s + update_s, generated/sampled_tokens, peak_memory_bytes); TRL's
from a TrainerCallback (on_step_begin .. on_step_end, its logged completions/mean_length, VmHWM). The table gives
the median step time, the median of step time / completion tokens, the largest step peak, the mean completion
length, and gcpo-lite / TRL ratios per size.

Run it on an otherwise idle machine: with 2 threads on 2 cores, anything else running (a test suite) slows the
trainers very unevenly (once here, with pytest on one core: TRL's step 17x slower, gcpo-lite's 1.5x). Each
run's share of the machine taken by other processes is measured (/proc/stat) and a run with more than
BUSY_LIMIT cores of other work is flagged in the output.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from bench_md import write_section  # noqa: E402  (this folder)

SECTION = "## gcpo-lite vs TRL GRPOTrainer: step time (issue 12)"
GiB = 2**30
SIZES = {"h256": (4, 256), "h512": (6, 512), "h1024": (8, 1024)}  # name -> (layers, hidden)
TASK = "addition"
SEED = 0
BUSY_LIMIT = 0.15  # cores of other work during a run above which its times are flagged


# ---------------------------------------------------------------- the shared random model


def architecture(size: str) -> dict:
    """Qwen2Config fields of one --sizes entry: MLP 2.75 x hidden, 64-wide heads, 2 KV heads."""
    layers, hidden = SIZES[size]
    return dict(
        hidden_size=hidden,
        intermediate_size=hidden * 11 // 4,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=2,
        max_position_embeddings=1024,  # prompts are ~10 tokens; room for any --max-completion-length used here
        tie_word_embeddings=False,  # like the embedded model: the lm_head is its own matrix
    )


def make_model(directory: Path, size: str) -> None:
    """Write a random Qwen2 of `size` with the embedded model's tokenizer (gcpo_lite.models.loading), in fp32.

    The tokenizer is the 48-token BPE the embedded model uses, trained on the addition task's text: a small
    vocabulary keeps the lm_head and sampling cheap on 2 cores, so the step time is the transformer's. Weights
    keep transformers' default init (std 0.02): logits stay near 0, so sampling is close to uniform over the
    vocabulary and a completion ends on <|im_end|> with probability ~1/48 per token on both sides."""
    import torch
    from transformers import Qwen2ForCausalLM

    from gcpo_lite.data.tasks import TASKS
    from gcpo_lite.demo.embedded_model import build_tiny_tokenizer, chatml_qwen2_config, save_chatml_tokenizer

    raw = build_tiny_tokenizer(TASKS[TASK].corpus())
    save_chatml_tokenizer(raw, directory)
    config = chatml_qwen2_config(raw, architecture(size))
    torch.manual_seed(SEED)
    Qwen2ForCausalLM(config).save_pretrained(directory, safe_serialization=True)


# ---------------------------------------------------------------- measurement helpers (both workers)


def vm_hwm() -> int:
    """This process's peak resident set (VmHWM, bytes) since it started or since reset_vm_hwm()."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_vm_hwm() -> None:
    """Restart VmHWM at the current resident set: how gcpo-lite's runlog measures each step's own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def worker_env(threads: int) -> dict:
    """The environment of both trainers' processes: the same thread count, no network, no telemetry."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",  # the same single-threaded tokenization on both sides
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def cpu_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat), 0 where unreadable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user .. steal; guest is inside user


def run_logged(cmd: list[str], log: Path, threads: int) -> tuple[float, float]:
    """Run `cmd` with its output in `log`: (wall seconds, cores other processes kept busy meanwhile). The
    second is the machine's busy CPU time less the command's own, per wall second: on 2 cores anything else
    running (a test suite, a build) slows one trainer and not the other, and this says when it did. A failure
    ends the benchmark with the log's tail."""
    t0, busy0 = time.time(), cpu_busy_s()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=worker_env(threads), cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    wall, busy = time.time() - t0, cpu_busy_s() - busy0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text()[-4000:]
        raise SystemExit(f"failed ({code}): {shlex.join(cmd)}\n--- {log} (tail) ---\n{tail}")
    own = usage.ru_utime + usage.ru_stime
    return wall, max(0.0, busy - own) / max(wall, 1e-9)


# ---------------------------------------------------------------- gcpo-lite side


def gcpo_command(model: Path, run: Path, a: argparse.Namespace) -> list[str]:
    """`gcpo-lite train` with the shared settings spelled out (defaults included, so a default change in
    config.py cannot silently make the two sides differ)."""
    return [
        sys.executable, "-m", "gcpo_lite.cli", "train", "--model", str(model), "--dataset", TASK,
        "--output-dir", str(run), "--no-progress", "--seed", str(SEED),
        f"train.max_steps={a.warmup_steps + a.steps}", f"train.batch_size={a.completions}",
        f"gcpo.num_generations={a.num_generations}", f"gcpo.max_completion_length={a.max_completion_length}",
        "gcpo.temperature=1.0", "gcpo.top_p=1.0", "gcpo.beta=0.0", "gcpo.num_iterations=1",
        "gcpo.importance_sampling_level=sequence", "gcpo.loss_type=seq_mean_token_mean",
        "gcpo.scale_rewards=group",
        "model.quantize=true", "model.bnb_4bit_quant_type=nf4", "model.bnb_4bit_use_double_quant=true",
        "model.compute_dtype=float32", "model.gradient_checkpointing=false", "model.attn_implementation=sdpa",
        "lora.r=16", "lora.alpha=32", "lora.dropout=0.0",
        f"train.learning_rate={a.learning_rate}", "train.lr_scheduler=constant", "train.warmup_steps=0",
        "train.optimizer=adamw", "train.adam_beta1=0.9", "train.adam_beta2=0.99", "train.max_grad_norm=1.0",
        f"train.num_threads={a.threads}", "train.device=cpu", "train.eval_steps=0", "data.eval_size=4",
    ]  # fmt: skip


def run_gcpo(model: Path, work: Path, a: argparse.Namespace) -> tuple[list[dict], float]:
    """(per measured step: time_s, rollout_s, tokens, mean_length, peak_bytes and gcpo-lite's trained rows;
    the other load during the run, in cores)."""
    run = work / "gcpo-run"
    _, other = run_logged(gcpo_command(model, run, a), work / "gcpo.log", a.threads)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "rollout_s" in r][a.warmup_steps :]
    return [
        {
            "time_s": r["rollout_s"] + r["update_s"],
            "rollout_s": r["rollout_s"],
            # the policy's own samples (gold rows are not generated); generated_tokens when dynamic sampling
            "tokens": r.get("generated_tokens", r["sampled_tokens"]),
            "mean_length": r["completion_length_mean"],
            "peak_bytes": r.get("peak_memory_bytes"),
            "trained_rows": r.get("trained_rows"),
        }
        for r in steps
    ], other


# ---------------------------------------------------------------- TRL side


def run_trl(model: Path, work: Path, a: argparse.Namespace) -> tuple[list[dict], float]:
    """This script again, as `--trl-worker`, in its own process; the same per-step fields as run_gcpo."""
    spec = {
        "model": str(model),
        "out": str(work / "trl-steps.json"),
        "output_dir": str(work / "trl-run"),
        **{k: getattr(a, k) for k in ("warmup_steps", "steps", "completions", "num_generations")},
        "max_completion_length": a.max_completion_length,
        **{k: getattr(a, k) for k in ("learning_rate", "threads")},
    }
    cmd = [sys.executable, __file__, "--trl-worker", json.dumps(spec)]
    _, other = run_logged(cmd, work / "trl.log", a.threads)
    return json.loads(Path(spec["out"]).read_text())[a.warmup_steps :], other


def trl_dataset(tokenizer):
    """The addition task's training prompts as a conversational `datasets.Dataset` (prompt, question, answer),
    after checking that TRL's tokenization of a prompt is gcpo-lite's (same template, same ids)."""
    from datasets import Dataset

    from gcpo_lite.data.prompts import prompt_ids
    from gcpo_lite.data.tasks import TASKS

    train, _ = TASKS[TASK].make_splits(SEED)
    first = [{"role": "user", "content": train[0].prompt}]
    trl_ids = tokenizer.apply_chat_template(
        first, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    if list(trl_ids["input_ids"]) != prompt_ids(tokenizer, train[0]):
        raise SystemExit(
            "TRL and gcpo-lite tokenize the prompt differently; the comparison would not be fair"
        )
    return Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": ex.prompt}], "question": ex.prompt, "answer": ex.answer}
            for ex in train
        ]
    )


def trl_reward():
    """TRL reward function scoring with gcpo-lite's own verifier (RewardModel + the task's verifier), so the
    reward work per completion is the same on both sides."""
    from gcpo_lite.data.tasks import Example
    from gcpo_lite.rewards.reward_model import RewardModel, resolve_verifier

    scorer = RewardModel.from_verifier(resolve_verifier("auto", TASK))

    def addition_reward(prompts, completions, question, answer, **_):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return [
            scorer.score(t, Example(prompt=q, answer=ans))[0] for t, q, ans in zip(texts, question, answer)
        ]

    return addition_reward


def trl_model(model_dir: str):
    """The same 4-bit base as gcpo_lite.models.loading.load_base_model: NF4, double quant, fp32 compute, sdpa."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        quantization_config=quant,
        dtype=torch.float32,
        device_map={"": "cpu"},
        attn_implementation="sdpa",
    )
    # bitsandbytes 0.50 repacks CPU 4-bit weights for AVX512-BF16 inference on a layer's first eval-mode call, a
    # layout its training path cannot read; gcpo-lite turns that off (models._keep_cpu_4bit_trainable), so TRL's
    # model gets the same kernels.
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


def trl_worker(spec: dict) -> None:
    """Train with TRL's GRPOTrainer for warmup_steps + steps steps and write each step's figures to spec['out']."""
    import ctypes

    import torch

    torch.set_num_threads(spec["threads"])  # what gcpo-lite's train.num_threads does
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from gcpo_lite.config.objective import resolved_epsilons

    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    eps_low, eps_high = resolved_epsilons("sequence", None, None)  # gcpo-lite's clip range for GSPO ratios
    args = GRPOConfig(
        output_dir=spec["output_dir"],
        use_cpu=True,
        bf16=False,  # GRPOConfig defaults to bf16 autocast; gcpo-lite computes in fp32 on CPU
        fp16=False,
        seed=SEED,
        max_steps=spec["warmup_steps"] + spec["steps"],
        # One step = one rollout of `completions` sequences and one optimizer update over all of them in a single
        # forward/backward, as gcpo-lite does with micro_batch_size unset.
        per_device_train_batch_size=spec["completions"],
        gradient_accumulation_steps=1,
        steps_per_generation=1,  # -> generation_batch_size = completions (TRL forbids setting both)
        num_generations=spec["num_generations"],
        num_iterations=1,
        max_completion_length=spec["max_completion_length"],
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        # gcpo-lite never samples the pad token <|endoftext|> (prompts.suppressed_ids): the same ban here keeps
        # the two samplers' distributions, and so the completion lengths, the same.
        generation_kwargs={"suppress_tokens": [tokenizer.pad_token_id]},
        beta=0.0,
        loss_type="grpo",  # per-sequence token mean, then mean over sequences = gcpo-lite's seq_mean_token_mean
        importance_sampling_level="sequence",
        epsilon=eps_low,
        epsilon_high=eps_high,
        scale_rewards="group",
        learning_rate=spec["learning_rate"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim="adamw_torch",  # torch.optim.AdamW, gcpo-lite's train.optimizer=adamw
        adam_beta1=0.9,
        adam_beta2=0.99,  # gcpo-lite's default (TrainingArguments has 0.999)
        weight_decay=0.0,
        max_grad_norm=1.0,
        gradient_checkpointing=False,  # GRPOConfig defaults to True
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_completions=False,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    steps: list[dict] = []

    class StepTimer(TrainerCallback):
        """Wall time and peak RSS of each optimizer step; TRL's logged mean completion length per step."""

        def on_step_begin(self, args, state, control, **kwargs):
            reset_vm_hwm()
            self.t0 = time.perf_counter()
            self.rollout_s = 0.0

        def on_step_end(self, args, state, control, **kwargs):
            elapsed = time.perf_counter() - self.t0
            steps.append({"time_s": elapsed, "rollout_s": self.rollout_s, "peak_bytes": vm_hwm()})

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs and steps:
                steps[-1]["mean_length"] = logs["completions/mean_length"]
                steps[-1]["tokens"] = logs["completions/mean_length"] * spec["completions"]

    timer = StepTimer()
    trainer = GRPOTrainer(
        model=trl_model(spec["model"]),
        reward_funcs=trl_reward(),
        args=args,
        train_dataset=trl_dataset(tokenizer),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[timer],
    )
    # TRL casts a quantized model's LoRA weights to bf16 (QLoRA paper); gcpo-lite trains them in fp32. Cast back
    # before train() builds the optimizer, so both sides run the same fp32 adapter math.
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    for p in trainable:
        p.data = p.data.float()
    if not trainable or any("lora_" not in n for n, p in trainer.model.named_parameters() if p.requires_grad):
        raise SystemExit("TRL's model should train the LoRA weights and nothing else")
    # Rollout time (generate, decode, reward, advantages; no extra log-prob pass at num_iterations=1) for the same
    # rollout/update split gcpo-lite logs: wrap the bound method the trainer calls once per step.
    generate_and_score = trainer._generate_and_score_completions

    def timed_rollout(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return generate_and_score(*args, **kwargs)
        finally:
            timer.rollout_s += time.perf_counter() - t0

    trainer._generate_and_score_completions = timed_rollout
    try:  # gcpo-lite gives the heap that loading freed back to the OS (models.release_freed_heap); so do we
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    trainer.train()
    if len(steps) != args.max_steps or any("tokens" not in s for s in steps):
        raise SystemExit(f"expected {args.max_steps} logged TRL steps, got {steps}")
    Path(spec["out"]).write_text(json.dumps(steps))


# ---------------------------------------------------------------- report


def summarize(steps: list[dict]) -> dict:
    """Medians over measured steps (all repeats): step time, rollout time, time per completion token; the
    largest step peak; the mean completion length and tokens per step."""
    peaks = [s["peak_bytes"] for s in steps if s.get("peak_bytes")]
    return {
        "step_s": statistics.median(s["time_s"] for s in steps),
        "rollout_s": statistics.median(s["rollout_s"] for s in steps),
        "ms_per_token": statistics.median(1000 * s["time_s"] / max(1, s["tokens"]) for s in steps),
        "peak_gib": max(peaks) / GiB if peaks else float("nan"),
        "mean_length": statistics.mean(s["mean_length"] for s in steps),
        "tokens": statistics.mean(s["tokens"] for s in steps),
        "n": len(steps),
    }


def table(results: dict[str, dict[str, dict]]) -> str:
    """Markdown: one row per (size, trainer), then gcpo-lite / TRL ratios per size."""
    lines = [
        "| size | trainer | step time (s, median) | rollout / update (s) | ms / completion token | peak RSS (GiB) "
        "| mean completion length | completion tokens / step | steps |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, by in results.items():
        for name, s in by.items():
            lines.append(
                f"| {size} | {name} | {s['step_s']:.2f} | {s['rollout_s']:.2f} / {s['step_s'] - s['rollout_s']:.2f} "
                f"| {s['ms_per_token']:.2f} | {s['peak_gib']:.2f} | {s['mean_length']:.1f} | {s['tokens']:.0f} "
                f"| {s['n']} |"
            )
    lines += [
        "",
        "| size | step time gcpo-lite / TRL | per token gcpo-lite / TRL | peak RSS gcpo-lite / TRL |",
    ]
    lines.append("|---|---:|---:|---:|")
    for size, by in results.items():
        g, t = by["gcpo-lite"], by["TRL"]
        lines.append(
            f"| {size} | {g['step_s'] / t['step_s']:.2f} | {g['ms_per_token'] / t['ms_per_token']:.2f} "
            f"| {g['peak_gib'] / t['peak_gib']:.2f} |"
        )
    return "\n".join(lines)


def version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine(threads: int) -> str:
    """Cores, platform and the versions that decide both trainers' speed."""
    packages = ("trl", "transformers", "torch", "peft", "bitsandbytes", "accelerate")
    versions = ", ".join(f"{pkg} {version(pkg)}" for pkg in packages)
    cpu = platform.processor() or platform.machine()
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.platform()}, python {platform.python_version()}, "
        f"{threads} torch threads per trainer; {versions}"
    )


def markdown(results: dict, a: argparse.Namespace, command: str, notes: list[str]) -> str:
    sizes = ", ".join(
        f"{s} = {SIZES[s][0]} layers x hidden {SIZES[s][1]} (MLP {SIZES[s][1] * 11 // 4})" for s in results
    )
    body = [
        SECTION,
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine(a.threads)}.",
        "",
        f"Setup: random Qwen2 models ({sizes}; 48-token vocabulary, the embedded tokenizer), 4-bit NF4 base with "
        "double quant and fp32 compute, LoRA r=16 alpha=32 on all 7 projections (fp32 adapters on both sides), "
        f"built-in addition task with gcpo-lite's verifier as reward, G={a.num_generations}, {a.completions} "
        f"completions per step, up to {a.max_completion_length} tokens at temperature 1, beta=0, sequence-level "
        "importance sampling, num_iterations=1, one forward/backward per step, no gradient checkpointing, "
        f"lr {a.learning_rate}. Each trainer in its own process, alternating, {a.repeats} repeat(s) of "
        f"{a.warmup_steps} warm-up + {a.steps} measured steps. TRL runs its default generation path (transformers "
        "`generate`, no vLLM). Step time: gcpo-lite's rollout_s + update_s; TRL's on_step_begin .. on_step_end. "
        "Per-token time is the median over steps of step time / completion tokens sampled (EOS included). "
        "Peak RSS: the largest per-step VmHWM.",
        "",
        table(results),
        "",
        *(f"- {n}" for n in notes),
    ]
    return "\n".join(body).rstrip() + "\n"


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="h256,h512,h1024", help=f"comma-separated, of {', '.join(SIZES)}")
    ap.add_argument("--steps", type=int, default=4, help="measured steps per run")
    ap.add_argument("--warmup-steps", type=int, default=1, help="steps run first and discarded")
    ap.add_argument("--repeats", type=int, default=1, help="alternating runs of each trainer per size")
    ap.add_argument("--completions", type=int, default=64, help="completions per step (prompts x G)")
    ap.add_argument("--num-generations", type=int, default=4, help="G")
    ap.add_argument("--max-completion-length", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each trainer")
    ap.add_argument("--learning-rate", type=float, default=1e-5)
    ap.add_argument("--work-dir", type=Path, help="keep models, runs and logs here (default: a temp dir)")
    ap.add_argument("--write-md", type=Path, help="write the table into this file's section for issue 12")
    ap.add_argument("--trl-worker", help=argparse.SUPPRESS)  # internal: one TRL run, JSON spec
    ap.add_argument("--make-model", nargs=2, help=argparse.SUPPRESS)  # internal: DIR SIZE
    a = ap.parse_args()
    if a.trl_worker or a.make_model:
        return a
    a.sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    unknown = [s for s in a.sizes if s not in SIZES]
    if unknown:
        ap.error(f"unknown --sizes {unknown}; choose from {', '.join(SIZES)}")
    if a.completions % a.num_generations:
        ap.error(f"--completions {a.completions} must be a multiple of --num-generations {a.num_generations}")
    if a.steps < 1 or a.repeats < 1 or a.warmup_steps < 0:
        ap.error("--steps and --repeats must be at least 1, --warmup-steps at least 0")
    return a


def bench(a: argparse.Namespace, root: Path) -> tuple[dict, list[str]]:
    """{size: {"gcpo-lite": summary, "TRL": summary}} and notes on what the runs showed."""
    results, notes = {}, []
    for size in a.sizes:
        model = root / size / "model"
        if not (model / "config.json").is_file():
            # Built in a child process: this one stays free of torch, and its memory never counts anywhere.
            model.parent.mkdir(parents=True, exist_ok=True)
            run_logged(
                [sys.executable, __file__, "--make-model", str(model), size],
                root / size / "make.log",
                a.threads,
            )
        per = {"gcpo-lite": [], "TRL": []}
        medians = {"gcpo-lite": [], "TRL": []}  # per repeat: this machine's speed drifts between runs
        runners = {"gcpo-lite": run_gcpo, "TRL": run_trl}
        for r in range(a.repeats):
            order = ["gcpo-lite", "TRL"] if r % 2 == 0 else ["TRL", "gcpo-lite"]  # alternate who goes first
            for name in order:
                work = root / size / f"{name.lower()}-{r}"
                work.mkdir(parents=True, exist_ok=True)
                t0 = time.time()
                steps, other = runners[name](model, work, a)
                per[name] += steps
                med = statistics.median(s["time_s"] for s in steps)
                medians[name].append(med)
                print(
                    f"[{size} repeat {r + 1}] {name}: {med:.2f} s/step median ({time.time() - t0:.0f} s run, "
                    f"other processes busy on {other:.2f} cores)",
                    file=sys.stderr,
                )
                if other > BUSY_LIMIT:
                    notes.append(
                        f"{size} {name} repeat {r + 1}: other processes kept {other:.2f} cores busy during the run "
                        f"(of this machine's {os.cpu_count()}); its times are not reliable, rerun on an idle machine"
                    )
        ratios = " / ".join(f"{g / t:.2f}" for g, t in zip(medians["gcpo-lite"], medians["TRL"]))
        notes.append(
            f"{size}: step time gcpo-lite / TRL per repeat (medians of {a.steps} steps each): {ratios}"
        )
        trained = {s.get("trained_rows") for s in per["gcpo-lite"]}
        if trained != {a.completions}:
            notes.append(
                f"{size}: gcpo-lite trained {sorted(trained, key=str)} rows per step of {a.completions} (groups with "
                "all-equal rewards and no gold are skipped; TRL always trains every row)"
            )
        results[size] = {name: summarize(steps) for name, steps in per.items()}
    return results, notes


NOTES = [
    "gcpo-lite injects the reference answer into all-wrong groups (gcpo.gold_injection=all_wrong, its default): "
    "one sampled row of such a group is replaced by a 3-4 token gold row (the sum, <|im_end|>) before the update. "
    "The update still runs on the same number of rows padded to the same width, so its cost hardly changes; "
    "without gold, a random model's groups are all wrong, their advantages 0, and gcpo-lite would skip their "
    "update entirely.",
    "TRL casts a 4-bit model's LoRA weights to bf16; here they are cast back to fp32 (gcpo-lite's dtype) before "
    "training, and TRL bans the pad token while sampling (generation_kwargs suppress_tokens), as gcpo-lite does.",
    "gcpo-lite runs its own CPU caching allocator (memory.cpu_allocator=caching) and its own KV-cached sampler "
    "and fused loss; TRL runs transformers `generate` and its fused lm_head log-probs (entropies included).",
    "The two draw prompts in different orders and sample with different random streams, so completions (and "
    "their lengths) differ step by step; the per-token column normalises for that.",
]


def main() -> int:
    a = parse_args()
    if a.make_model:
        make_model(Path(a.make_model[0]), a.make_model[1])
        return 0
    if a.trl_worker:
        trl_worker(json.loads(a.trl_worker))
        return 0
    if importlib.util.find_spec("trl") is None:
        raise SystemExit("bench_vs_trl.py needs TRL, an optional benchmark dependency: pip install trl")
    command = shlex.join(["python", os.path.relpath(__file__, REPO), *sys.argv[1:]])
    if a.work_dir:
        a.work_dir.mkdir(parents=True, exist_ok=True)
        results, notes = bench(a, a.work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-vs-trl-") as tmp:
            results, notes = bench(a, Path(tmp))
    print(table(results))
    for n in notes:
        print(f"note: {n}")
    if a.write_md:
        write_section(a.write_md, SECTION, markdown(results, a, command, notes + NOTES))
        print(f"wrote the section {SECTION!r} of {a.write_md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
