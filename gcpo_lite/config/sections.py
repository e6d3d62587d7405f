"""The sections of a run's config, one dataclass each. Field metadata is the documentation: `gcpo-lite train
--help` and the README's option table are generated from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from gcpo_lite.config.objective import IS_LEVELS, LOSS_TYPES  # noqa: F401 (the Literal types name them)
from gcpo_lite.config.reward_section import RewardConfig


@dataclass
class ModelConfig:
    name: Optional[str] = field(
        default=None,
        metadata={"help": "registry short name, hub id or local path; None = the embedded tiny model"},
    )
    revision: Optional[str] = field(default=None, metadata={"help": "hub revision (branch, tag or commit)"})
    quantize: bool = field(
        default=True,
        metadata={"help": "load the base in 4-bit NF4 via bitsandbytes (--no-quantize loads bf16/fp32)"},
    )
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = field(default="nf4", metadata={"help": "nf4 or fp4"})
    bnb_4bit_use_double_quant: bool = field(
        default=True, metadata={"help": "quantize the quantization constants too (~0.4 bit/param saved)"}
    )
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata={"help": "bfloat16 | float16 | float32 | auto (bf16 on GPUs that have it, else fp32)"},
    )
    gradient_checkpointing: bool = field(
        default=True, metadata={"help": "recompute activations in backward: less memory, ~30% more time"}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "run model code shipped with a hub repo; off unless you trust it"}
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = field(
        default="sdpa", metadata={"help": "sdpa | eager | flash_attention_2"}
    )


@dataclass
class LoraConfig:
    r: int = field(default=16, metadata={"help": "adapter rank"})
    alpha: int = field(default=32, metadata={"help": "scaling numerator: the update is (alpha / r) * B @ A"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the adapter input"})
    target_modules: list = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "every attention and MLP projection"},
    )


@dataclass
class DataConfig:
    dataset: Optional[str] = field(
        default=None,
        metadata={
            "help": "built-in task name, hub id or local file (.jsonl/.json/.csv/.parquet); None = built-in "
            "`addition`"
        },
    )
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    eval_split: Optional[str] = field(
        default="test",
        metadata={"help": "held-out split for eval_accuracy (None: carve eval_size rows off train)"},
    )
    prompt_field: Optional[str] = field(
        default=None, metadata={"help": "column with the question (None: the preset's or `prompt`)"}
    )
    answer_field: Optional[str] = field(
        default=None, metadata={"help": "column with the final answer (None: the preset's or `answer`)"}
    )
    solution_field: Optional[str] = field(
        default=None,
        metadata={
            "help": "column with the worked reference solution used as gold (None: the preset's or "
            "`solution`)"
        },
    )
    system_prompt: Optional[str] = field(
        default=None, metadata={"help": "system message put before every question (None: the task's own)"}
    )
    max_prompt_length: int = field(
        default=512,
        metadata={"help": "prompts longer than this many tokens are dropped, and the drops counted"},
    )
    eval_size: int = field(default=200, metadata={"help": "held-out prompts used for eval_accuracy"})
    shuffle: bool = field(
        default=True, metadata={"help": "shuffle the training prompts (seeded by train.seed)"}
    )


@dataclass
class GCPOSection:
    num_generations: int = field(
        default=8,
        metadata={
            "help": "G, completions sampled per prompt (>= 2); `auto` = the largest that fits memory "
            "(memory.auto_num_generations)"
        },
    )
    temperature: float = field(
        default=1.0, metadata={"help": "sampling temperature; the training log-probs use the same one"}
    )
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    max_completion_length: int = field(
        default=256,
        metadata={"help": "tokens per completion, EOS included; unset, a dataset preset brings its own"},
    )
    gold_injection: Literal["all_wrong", "never", "always"] = field(
        default="all_wrong", metadata={"help": "all_wrong (GCPO) | never (plain GRPO) | always"}
    )
    gold_overflow: Literal["skip", "truncate"] = field(
        default="skip",
        metadata={
            "help": "gold longer than max_completion_length: skip (not injected, counted as gold_skipped_overflow) "
            "| truncate (its first max_completion_length tokens, which lack the answer and the end token, yet keep "
            "the full reward)"
        },
    )
    scale_rewards: Literal["group", "batch", "none"] = field(
        default="group", metadata={"help": "divide advantages by the std of: group | batch | none"}
    )
    importance_sampling_level: Literal[IS_LEVELS] = field(
        default="sequence", metadata={"help": "sequence (GSPO ratio, geometric mean per completion) | token"}
    )
    epsilon_low: Optional[float] = field(
        default=None, metadata={"help": "lower clip; None = 3e-4 (sequence) or 0.2 (token)"}
    )
    epsilon_high: Optional[float] = field(
        default=None, metadata={"help": "upper clip; None = 4e-4 (sequence) or 0.28 (token)"}
    )
    beta: float = field(
        default=0.0,
        metadata={
            "help": "KL weight (k3 estimator) against the base model with the adapter disabled; 0 = no KL"
        },
    )
    loss_type: Literal[LOSS_TYPES] = field(
        default="seq_mean_token_mean", metadata={"help": "seq_mean_token_mean | token_mean (DAPO) | dr_grpo"}
    )
    num_iterations: int = field(default=1, metadata={"help": "policy updates per rollout batch"})
    dynamic_sampling: bool = field(
        default=False,
        metadata={
            "help": "DAPO's dynamic sampling: drop groups without contrast and refill the step with groups of new "
            "prompts (oversampled by the last round's keep rate), for at most dynamic_sampling_max_rounds extra "
            "generation rounds. An all-wrong group whose gold passed its check is kept and gets it "
            "(gcpo.gold_injection=never: pure DAPO). The step's metrics describe every sample generated "
            "(rollouts), the kept groups' under kept_*"
        },
    )
    dynamic_sampling_max_rounds: int = field(
        default=3, metadata={"help": "extra generation rounds a step may take to refill (dynamic_sampling)"}
    )
    suppress_tokens: Optional[list] = field(
        default=None,
        metadata={
            "help": "token ids never sampled and masked out of training log-probs; "
            "None = pad (when it differs from EOS)"
        },
    )


@dataclass
class TrainConfig:
    output_dir: str = field(
        default="runs/gcpo", metadata={"help": "run directory: adapter, config.yaml, metrics.jsonl"}
    )
    max_steps: int = field(
        default=200,
        metadata={
            "help": "training steps: one rollout batch each, trained with gcpo.num_iterations optimizer updates; "
            "the LR schedule advances once per step"
        },
    )
    max_minutes: Optional[float] = field(
        default=None, metadata={"help": "stop after this much wall time, even before max_steps"}
    )
    batch_size: int = field(
        default=64, metadata={"help": "completions per step = prompts per step x num_generations"}
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate on the LoRA weights"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    optimizer: Literal["adamw", "adamw_8bit", "paged_adamw_8bit"] = field(
        default="adamw",
        metadata={
            "help": "adamw (torch, fp32 moments) | adamw_8bit (bitsandbytes, 8-bit moments; CPU or CUDA) | "
            "paged_adamw_8bit (8-bit moments in CUDA unified memory; CUDA only); `plan` budgets the same one"
        },
    )
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.99, metadata={"help": "AdamW beta2"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warmup steps"})
    lr_scheduler: Literal["constant", "linear", "cosine"] = field(
        default="constant", metadata={"help": "constant | linear | cosine (after warmup)"}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping; 0 = off"})
    seed: int = field(default=0, metadata={"help": "seeds torch, python and the data order"})
    eval_steps: int = field(
        default=25, metadata={"help": "held-out eval every N steps (0 = only at the end)"}
    )
    eval_temperature: float = field(default=0.0, metadata={"help": "0 = greedy held-out eval"})
    generation_batch_size: Optional[int] = field(
        default=None, metadata={"help": "sequences per generate call; None = the whole step"}
    )
    micro_batch_size: Optional[int] = field(
        default=None, metadata={"help": "sequences per forward/backward; None = the whole step"}
    )
    kernels: Literal["auto", "native", "reference"] = field(
        default="auto",
        metadata={
            "help": "log-prob / loss kernels: auto | native | reference (env GCPO_LITE_KERNELS overrides)"
        },
    )
    fused_loss: bool = field(
        default=True,
        metadata={
            "help": "train through the fused op gcpo_loss_from_hidden (hidden states -> loss, chunked lm_head); "
            "false: per-token log-probs first, then the loss (the composition: same loss and gradients)"
        },
    )
    length_buckets: Optional[int] = field(
        default=None,
        metadata={
            "help": "each training micro-batch runs as up to this many parts of rows of similar length, each "
            "padded to its own longest row (same gradients, less padding); None = 4 on CPU, 1 on CUDA"
        },
    )
    share_prompts: bool = field(
        default=True,
        metadata={
            "help": "in the update, run each distinct prompt of a micro-batch once and its G rows' completions on "
            "its keys and values (loss and gradients equal the per-row forward's to fp32 rounding; with "
            "lora.dropout > 0 a prompt's rows share one dropout mask)"
        },
    )
    logits_chunk_size: Optional[int] = field(
        default=None, metadata={"help": "tokens per lm_head chunk in the loss; None = the kernel's default"}
    )
    save_steps: int = field(
        default=0, metadata={"help": "checkpoint every N steps (0 = every save_minutes of wall time instead)"}
    )
    save_minutes: float = field(
        default=10.0,
        metadata={
            "help": "with save_steps=0: checkpoint at the end of the first step after this many minutes of wall "
            "time since the last checkpoint (or the start), so a crash or kill -9 loses at most about this much "
            "work; save_steps > 0 replaces it; 0 = only at the end (and on Ctrl-C/SIGTERM)"
        },
    )
    save_total_limit: Optional[int] = field(
        default=3,
        metadata={"help": "checkpoints kept in RUN_DIR/checkpoints (oldest deleted first); None = all"},
    )
    report_to: str = field(
        default="none",
        metadata={
            "help": "extra metric sinks: none | tensorboard | wandb | tensorboard,wandb (optional packages)"
        },
    )
    log_completions: int = field(
        default=2, metadata={"help": "sampled completions written to completions.jsonl per step"}
    )
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    num_threads: Optional[int] = field(
        default=None, metadata={"help": "torch CPU threads; None = torch's default"}
    )


@dataclass
class MemoryConfig:
    memory_budget: Optional[str] = field(
        default=None,
        metadata={
            "help": "memory the run may use, e.g. 8GiB or 7.5GB; None = free GPU memory (CPU: available "
            "RAM); see `gcpo-lite plan`"
        },
    )
    auto_num_generations: bool = field(
        default=False,
        metadata={
            "help": "let the planner set gcpo.num_generations: the largest G in [min_num_generations, "
            "max_num_generations] dividing train.batch_size whose group fits one generate call"
        },
    )
    min_num_generations: int = field(
        default=2,
        metadata={
            "help": "smallest G auto_num_generations may pick (below 4 it warns: gold injection needs a "
            "group to contrast)"
        },
    )
    max_num_generations: int = field(default=16, metadata={"help": "largest G auto_num_generations may pick"})
    oom_backoff: bool = field(
        default=True,
        metadata={
            "help": "on out-of-memory, halve the generation batch / micro-batch and redo the same work (no "
            "sample lost)"
        },
    )
    dequantized_base: bool = field(
        default=True,
        metadata={
            "help": "keep a dequantized copy (compute dtype) of the frozen 4-bit base for the decoder layers "
            "that fit the memory budget with 20% to spare, so matmuls skip bitsandbytes' per-call "
            "dequantization; false = always dequantize on the fly (the least memory)"
        },
    )
    cpu_allocator: Literal["caching", "system"] = field(
        default="caching",
        metadata={
            "help": "CPU runs: caching = large tensors from reused mappings, at most the plan's allocator slack "
            "cached (resident memory = live + slack, as planned); system = glibc's heap, which fragments "
            "(measured up to 3.4x the phase's live bytes); caching needs the native extension"
        },
    )


@dataclass
class RolloutConfig:
    backend: Literal["builtin"] = field(
        default="builtin",
        metadata={
            "help": "what turns prompts into completions and their sampling log-probs (gcpo_lite/"
            "rollout/backends.py): builtin = gcpo-lite's KV-cached sampler on the training model"
        },
    )
    share_prompts: bool = field(
        default=True,
        metadata={"help": "prefill each distinct prompt once and copy its KV cache to its G samples (exact)"},
    )
    drop_finished: bool = field(
        default=True,
        metadata={"help": "drop finished sequences from the decode batch, compacting the KV cache (exact)"},
    )
    merge_lora: bool = field(
        default=True,
        metadata={
            "help": "while sampling, each LoRA projection over an fp32 dequantized base layer (memory."
            "dequantized_base) runs one matmul on W + scaling * B @ A (a second copy of those layers, held only "
            "during the rollout and counted in the plan); log-probs equal the unmerged path's to fp32 rounding. "
            "A bf16/fp16 base samples unmerged: a merged bf16 weight would drop LoRA deltas under half an ulp"
        },
    )


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "lora": LoraConfig,
    "data": DataConfig,
    "reward": RewardConfig,
    "gcpo": GCPOSection,
    "train": TrainConfig,
    "memory": MemoryConfig,
    "rollout": RolloutConfig,
}  # in Config's order
