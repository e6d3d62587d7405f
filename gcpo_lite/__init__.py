"""gcpo-lite: GCPO reinforcement learning for small LLMs on one consumer GPU (or a CPU).

    from gcpo_lite import GCPOConfig, GCPOTrainer

    trainer = GCPOTrainer(reward_funcs=[my_reward], args=GCPOConfig(output_dir="runs/x", max_steps=20))
    trainer.train()

Names are imported on first use: `import gcpo_lite` (and `gcpo-lite --help`) loads no torch.
"""

from __future__ import annotations

__all__ = ["GCPOConfig", "GCPOTrainer", "TrainOutput"]


def __getattr__(name: str):
    if name == "GCPOConfig":
        from gcpo_lite.api.config import GCPOConfig

        return GCPOConfig
    if name in ("GCPOTrainer", "TrainOutput"):
        from gcpo_lite.api import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'gcpo_lite' has no attribute {name!r}")
