"""GCPOTrainer: gcpo-lite from Python, with the arguments of TRL's GRPOTrainer where the idea is the same.

    trainer = GCPOTrainer(model="qwen2.5-1.5b", reward_funcs=[accuracy, format_reward],
                          args=GCPOConfig(output_dir="runs/x", max_steps=200), train_dataset=dataset)
    trainer.train()                       # the same session `gcpo-lite train` runs (api/session.py)
    trainer.evaluate()                    # held-out accuracy, as training measures it
    trainer.export("out/adapter", push_to_hub="me/my-adapter")

model: a registry name, hub id or directory, a loaded transformers model, or None (the embedded tiny model).
reward_funcs: callables in TRL's convention, built-in names or FILE.py:NAME specs (None: reward.functions).
train_dataset / eval_dataset: a datasets.Dataset or a list of dicts (None: data.dataset). With no model, no
dataset and no args, the embedded default run trains: offline, on the built-in addition task.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from gcpo_lite.api.config import GCPOConfig
from gcpo_lite.api.session import Outcome, Session, run_session
from gcpo_lite.config import Config, ConfigError
from gcpo_lite.demo.default_run import EMBEDDED_DEFAULT
from gcpo_lite.models.registry import EMBEDDED_BASE_NAME, EMBEDDED_NAME
from gcpo_lite.rewards.functions import function_name, spec_of
from gcpo_lite.train.inputs import RunInputs
from gcpo_lite.train.run_config import REAL_MODEL_DATASET, apply_preset_lengths


@dataclass
class TrainOutput:
    """What train() returns: the last step, its metrics row, the run directory, and the signal that stopped it
    (None when it ran to the end; continue with train(resume_from_checkpoint=True))."""

    global_step: int
    metrics: dict
    run_dir: str
    interrupted: Optional[str] = None


class GCPOTrainer:
    def __init__(
        self,
        model: Any = None,
        reward_funcs: Union[None, Callable, str, list] = None,
        args: Union[None, GCPOConfig, Config] = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        *,
        progress: bool = True,
        say: Callable[[str], None] = print,
    ):
        funcs = (
            None
            if reward_funcs is None
            else list(reward_funcs)
            if isinstance(reward_funcs, (list, tuple))
            else [reward_funcs]
        )
        self.args = args if args is not None else GCPOConfig()
        self.inputs = RunInputs(
            reward_funcs=funcs,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            model=None if model is None or isinstance(model, (str, Path)) else model,
            tokenizer=processing_class,
        )
        self.progress, self.say = progress, say
        self.config, self.embedded = self._config(model)
        self.trainer = None  # the Trainer (train/trainer.py), once train() or evaluate() has built it

    def _config(self, model) -> tuple[Config, bool]:
        """(the run's Config, whether it is the embedded default): args over the embedded default when no model
        or dataset is named anywhere, else over gcpo-lite's defaults; model= and reward_funcs= on top."""
        name = _model_name(model)
        specs = None if self.inputs.reward_funcs is None else [_spec(f) for f in self.inputs.reward_funcs]
        base = None
        if isinstance(self.args, Config):
            cfg, explicit = self.args, {"gcpo.max_completion_length"}  # a Config is taken as it is
            if specs is not None:
                cfg = dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, functions=specs))
        else:
            probe = self.args.to_config(reward_functions=specs)
            named = name or probe.model.name or probe.data.dataset or self.inputs.train_dataset is not None
            base = None if named else EMBEDDED_DEFAULT
            if base is not None and self.args.base is None:
                self.args.base = base  # args.num_generations etc. read the run's own values
            cfg, explicit = self.args.to_config(base, reward_functions=specs), self.args.explicit_keys()
        if name is not None:
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=name))
        embedded = cfg.model.name in (None, EMBEDDED_NAME, EMBEDDED_BASE_NAME)
        if cfg.data.dataset is None and self.inputs.train_dataset is None and not embedded:
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset=REAL_MODEL_DATASET))
        return apply_preset_lengths(cfg, explicit, self.say), base is not None and name is None

    def train(
        self, resume_from_checkpoint: Union[None, bool, str] = None, overwrite: bool = False
    ) -> TrainOutput:
        """Train until train.max_steps (or a signal). resume_from_checkpoint: True continues args' output_dir,
        a path continues that run directory; overwrite: move a previous run in output_dir aside first."""
        cfg, resume = self.config, None
        if resume_from_checkpoint:
            resume = cfg.train.output_dir if resume_from_checkpoint is True else str(resume_from_checkpoint)
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, output_dir=resume))
        if resume and overwrite:
            raise ConfigError(
                "resume_from_checkpoint continues a run and overwrite starts a new one; pass one"
            )
        session = Session(
            cfg,
            self.inputs,
            resume=resume,
            overwrite=overwrite,
            progress=self.progress,
            embedded=self.embedded and not resume,
            say=self.say,
        )
        from gcpo_lite.run.directory import unlock_run_dir

        try:
            outcome: Outcome = run_session(session)
        finally:  # the CLI's lock lasts its process; a notebook's run is free again once train() returns
            unlock_run_dir(cfg.train.output_dir)
        self.trainer = outcome.trainer
        interrupted = getattr(outcome.trainer, "interrupted", None)
        return TrainOutput(outcome.trainer.step, outcome.last, cfg.train.output_dir, interrupted)

    def evaluate(self, eval_dataset: Any = None) -> dict:
        """{"eval_accuracy": the share of held-out prompts answered correctly (reward.correct_fn), greedy by
        default}; eval_dataset: other rows to score (a datasets.Dataset or a list of dicts)."""
        trainer = self._trainer()
        examples = None
        if eval_dataset is not None:
            from gcpo_lite.data.datasets import eval_examples_from_rows

            needs_answer = trainer.rewards.needs_answer
            examples = eval_examples_from_rows(
                eval_dataset, trainer.cfg.data, trainer.tokenizer, needs_answer
            )
        return {"eval_accuracy": trainer.evaluate(examples)}

    def _trainer(self):
        if self.trainer is None:  # evaluating before training: the untrained adapter (a baseline)
            from gcpo_lite.train.trainer import Trainer

            self.trainer = Trainer(self.config, progress=False, inputs=self.inputs, echo=self.say)
        return self.trainer

    def save_model(self, output_dir: Optional[str] = None) -> str:
        """The adapter (peft's save_pretrained layout) and tokenizer to output_dir (default: RUN_DIR/adapter)."""
        path = Path(output_dir or Path(self.config.train.output_dir) / "adapter")
        self._trainer().save_adapter(path)
        return str(path)

    def export(
        self,
        output_dir: str,
        *,
        merged: bool = False,
        push_to_hub: Optional[str] = None,
        private: bool = False,
        checkpoint=None,
        overwrite: bool = False,
    ) -> str:
        """`gcpo-lite export` of this run: the checked adapter (or with merged=True a full model) in output_dir,
        then pushed to the Hub repo `push_to_hub` when given; returns the folder (or the repo URL)."""
        from gcpo_lite.export.hub_push import push_to_hub as push
        from gcpo_lite.export.write import export

        folder = export(
            self.config.train.output_dir,
            output_dir,
            checkpoint=checkpoint,
            merged=merged,
            overwrite=overwrite,
            echo=self.say,
        )
        return push(folder, push_to_hub, private=private) if push_to_hub else str(folder)


def _model_name(model) -> Optional[str]:
    """model= as the name config.yaml records: itself, or a loaded model's name_or_path."""
    if model is None:
        return None
    if isinstance(model, (str, Path)):
        return str(model)
    return str(getattr(model, "name_or_path", "") or "") or None


def _spec(fn) -> str:
    """How config.yaml records a reward function: its name or spec, module:NAME for an importable callable,
    python:NAME for one defined in a script or notebook (a resume from the command line cannot find it)."""
    return spec_of(fn) or f"python:{function_name(fn)}"
