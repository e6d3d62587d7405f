"""The embedded default run: what `gcpo-lite train` does with no --config, --model or --dataset.

Mirrors configs/tiny_addition_cpu.yaml (keep the two equal). Sized for 2 CPU cores (~1.2 GB RAM): a 2-layer
hidden-64 Qwen2 model (4-bit NF4 base + LoRA) improves at two-digit addition with GCPO at G = 4.
Measured choices (docs/BENCHMARKS.md):
- the base is `embedded-tiny-qwen2-addition`: the random embedded model after a short deterministic supervised
  fine-tune on the task's training split (embedded_base.py, ~25 s once, cached). It starts at ~20% held-out
  accuracy after 4-bit quantization, as real bases start with partial skill, so GCPO works as users run it:
  groups mix successes and failures, and gold fills the all-wrong ones. From the random model the demo
  hinged on a phase transition that 1 run in 3 missed (issue 10: 6-95% at 4.5 minutes);
- G = 4, as users run GCPO; 256 prompts x 4 = 1024 rollouts a step: large steps learn more per second here;
- LoRA r=64 (full rank on the 64-wide projections) with alpha/r = 2: alpha/r = 1 learned several times slower;
- lr 3e-3: 6e-3 and LoRA+ style higher lr for lora_B stalled;
- 4 minutes of training, so that a first run (model creation and pretraining included) ends within 5;
- a checkpoint every minute (train.save_minutes; the default 10 would save only at the end): a kill -9 loses
  at most a minute, for ~0.1 s of saving in all (docs/BENCHMARKS.md, "Checkpoint cost");
- kernels: reference. With a 48-token vocab the fused kernels save nothing, and their first-use build
  (about a minute on 2 cores) would eat a fifth of the demo.
"""

EMBEDDED_DEFAULT: dict = {
    "model": {"name": "embedded-tiny-qwen2-addition", "quantize": True, "gradient_checkpointing": False},
    "lora": {"r": 64, "alpha": 128},
    "data": {"dataset": "addition", "eval_size": 200},
    "gcpo": {"num_generations": 4, "temperature": 1.0, "max_completion_length": 5},
    "train": {
        "output_dir": "runs/embedded-addition",
        "max_steps": 1000,
        "max_minutes": 4.0,
        "batch_size": 1024,
        "learning_rate": 3e-3,
        "eval_steps": 25,
        "save_minutes": 1.0,
        "kernels": "reference",
    },
}
