"""The embedded default run: what `gcpo-lite train` does with no --config, --model or --dataset.

Mirrors configs/tiny_addition_cpu.yaml (a test keeps the two equal). Sized for 2 CPU cores:
a 2-layer hidden-64 Qwen2 model learns two-digit addition from gold solutions in minutes.
"""
EMBEDDED_DEFAULT: dict = {
    "model": {"name": None, "quantize": True, "gradient_checkpointing": False},
    "lora": {"r": 16, "alpha": 32},
    "data": {"dataset": "addition", "eval_size": 200},
    "gcpo": {"num_generations": 8, "temperature": 1.0, "max_completion_length": 5},
    "train": {"output_dir": "runs/embedded-addition", "max_steps": 300, "max_minutes": 4.5,
              "batch_size": 256, "learning_rate": 3e-3, "eval_steps": 25},
}
