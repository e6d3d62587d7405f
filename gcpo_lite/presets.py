"""The embedded default run: what `gcpo-lite train` does with no --config, --model or --dataset.

Mirrors configs/tiny_addition_cpu.yaml (keep the two equal). Sized for 2 CPU cores (~1.2 GB RAM): a 2-layer
hidden-64 random Qwen2 model (4-bit NF4 base + LoRA) learns two-digit addition from gold solutions.
Measured choices (SFT and GCPO sweeps on the embedded task, see docs/BENCHMARKS.md):
- G = 2: in the all-wrong phase each group is one gold and one failure, so a step of 1024 rollouts carries
  512 gold solutions instead of 256 with G = 4. Measured on 2 quiet cores: 82% held-out at 4.5 minutes
  (G = 4: 11-32%). Once the model gets answers right, pairs still contrast a success with a failure.
- big steps: 1024 rollouts. Per-step cost grows less than linearly with the batch, and the
  noisy all-wrong phase learns far more per rollout with large batches (128 -> 1024 rollouts a step);
- LoRA r=64 (full rank on the 64-wide projections) with alpha/r = 2: alpha/r = 1 learned several times slower;
- lr 3e-3: 6e-3 and LoRA+ style higher lr for lora_B stalled;
- kernels: reference. With a 48-token vocab the fused kernels save nothing, and their first-use build
  (about a minute on 2 cores) would eat a fifth of the five-minute demo.
"""

EMBEDDED_DEFAULT: dict = {
    "model": {"name": None, "quantize": True, "gradient_checkpointing": False},
    "lora": {"r": 64, "alpha": 128},
    "data": {"dataset": "addition", "eval_size": 200},
    "gcpo": {"num_generations": 2, "temperature": 1.0, "max_completion_length": 5},
    "train": {
        "output_dir": "runs/embedded-addition",
        "max_steps": 1000,
        "max_minutes": 4.5,
        "batch_size": 1024,
        "learning_rate": 3e-3,
        "eval_steps": 25,
        "kernels": "reference",
    },
}
