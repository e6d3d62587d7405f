"""The checkpointable state of a Trainer (a part of it): state_dict() / load_state_dict() and what restoring
the plan and the adapter weights takes."""

from __future__ import annotations

import json
import logging

from gcpo_lite.config import ConfigError
from gcpo_lite.models import dequantized_base
from gcpo_lite.run.rng import rng_state, set_rng_state

log = logging.getLogger(__name__)


class CheckpointState:
    """Trainer's state methods; they read the trainer's prompts, optimizer, schedule, plan and rewards."""

    def state_dict(self) -> dict:
        """Everything a checkpoint needs besides the adapter weights: plain containers and tensors (the plan as
        plan.json holds it). Under torchrun (a collective: every rank calls it) also every rank's own data
        position, random streams, reward error count and plan, in `ranks` (distributed.rank_view picks a
        rank's on resume)."""
        own = {
            "data": self.prompts.state_dict(),
            "reward_errors": self.rewards.errors,
            "rng": rng_state(),
            "plan": json.loads(self.plan.to_json()),
        }
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),  # the same on every rank (same gradients, same steps)
            "optimizer_kind": self.cfg.train.optimizer,
            "lr_schedule": self.lr_schedule.state_dict(),
            **own,
        }
        if self.world.distributed:
            state["world_size"] = self.world.size
            state["ranks"] = self.world.gather(own)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore state_dict()'s contents, and the adapter weights when `state` holds them ("adapter", as a
        checkpoint's safetensors file gives them). The data position first (a checkpoint of other data is
        refused before anything changes), the random streams last (nothing may draw after them)."""
        kind = state.get("optimizer_kind", "adamw")  # checkpoints before train.optimizer existed: AdamW
        if kind != self.cfg.train.optimizer:
            raise ConfigError(
                f"this checkpoint's optimizer state is {kind}'s and this run builds {self.cfg.train.optimizer}; "
                f"resume with train.optimizer={kind}"
            )
        self.prompts.load_state_dict(state["data"])
        if state.get("plan") is not None:
            self._restore_plan(state["plan"])
        if state.get("adapter") is not None:
            self._load_adapter_weights(state["adapter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.rewards.errors = int(state.get("reward_errors", 0))
        self.step = int(state["step"])
        set_rng_state(state["rng"])

    def _restore_plan(self, saved: dict) -> None:
        """The saved plan's sizes (the same generation / micro-batch splits: they decide how the RNG is
        consumed); its dequantized layers may be fewer, when the run gave some back on an OOM."""
        sizes = {k: v for k, v in saved.items() if k.endswith("_size") and getattr(self.plan, k, v) != v}
        for k, v in saved.items():
            if hasattr(self.plan, k):
                setattr(self.plan, k, v)
        if sizes:
            log.info("resume keeps the checkpoint's plan %s (this machine's fresh plan would differ)", sizes)
        keep = self.plan.dequantized_layers
        if dequantized_base.attached_layers(self.model) > keep:
            dequantized_base.detach(self.model, keep=keep)

    def _load_adapter_weights(self, weights: dict) -> None:
        from peft import set_peft_model_state_dict

        try:
            result = set_peft_model_state_dict(self.model, weights)
        except RuntimeError as e:  # shapes differ: another LoRA rank or base model
            raise ConfigError(
                f"the checkpoint's adapter does not fit this model ({str(e).splitlines()[-1].strip()[:160]}); "
                "resume with the run's own config (model.*, lora.* unchanged)"
            ) from None
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ConfigError(
                f"the checkpoint's adapter does not fit this model (unexpected keys {unexpected[:3]}...)"
            )
