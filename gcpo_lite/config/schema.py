"""A run's configuration: the sections (sections.py) in one Config, validated on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from gcpo_lite.config.objective import resolved_epsilons
from gcpo_lite.config.sections import (
    DataConfig,
    GCPOSection,
    LoraConfig,
    MemoryConfig,
    ModelConfig,
    RewardConfig,
    RolloutConfig,
    TrainConfig,
)
from gcpo_lite.config.validation import validate


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    gcpo: GCPOSection = field(default_factory=GCPOSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)

    def __post_init__(self):
        validate(self)

    @property
    def prompts_per_step(self) -> int:
        return self.train.batch_size // self.gcpo.num_generations

    def resolved_epsilons(self) -> tuple[float, float]:
        """(epsilon_low, epsilon_high) with the per-level defaults filled in."""
        g = self.gcpo
        return resolved_epsilons(g.importance_sampling_level, g.epsilon_low, g.epsilon_high)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_cpu_allocator(self, allocator: str) -> "Config":
        """A new, validated Config with memory.cpu_allocator set (the allocator the run really got)."""
        return self._with("memory", cpu_allocator=allocator)

    def with_batch_size(self, batch_size: int) -> "Config":
        """A new, validated Config with train.batch_size set (one torchrun process's share of the step)."""
        return self._with("train", batch_size=batch_size)

    def with_num_generations(self, num_generations: int) -> "Config":
        """A new, validated Config with G set (how a planner-chosen G enters the run's effective config);
        this one is not changed."""
        return self._with("gcpo", num_generations=num_generations)

    def _with(self, section: str, **values) -> "Config":
        """A new Config with section's values replaced, validated again (this one is not changed)."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **values)})
