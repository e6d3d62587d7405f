"""What a run logs besides the loop's own metrics: peak memory and the plan per step, optional
TensorBoard / Weights & Biases sinks (`--report-to`), and the progress bar (rich when installed, else tqdm).

TensorBoard and W&B are imported only when asked for; a missing package is a ConfigError that says
what to install. W&B reads its API key from WANDB_API_KEY or its own login; gcpo-lite never sees it.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Optional

import torch

from gcpo_lite.config import Config, ConfigError

log = logging.getLogger(__name__)

PLAN_KEYS = ("generation_batch_size", "micro_batch_size", "logits_chunk_size", "predicted_peak_bytes")


def _linux_peak_rss() -> Optional[int]:
    """VmHWM: this process's peak resident set since it started or since reset_peak_memory (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def reset_peak_memory(device) -> None:
    """Start a new peak-memory window: CUDA's peak stats, or (Linux) the process's VmHWM, so that the first
    step's peak is the step's and not the model load's (which the memory plan does not model)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
    except OSError:
        pass


def step_extras(trainer) -> dict:
    """Per-step fields: measured peak memory (since the last call) and the plan's current sizes."""
    out: dict = {}
    dev = trainer.device
    if dev.type == "cuda":
        out["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(dev))
        out["peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved(dev))
        torch.cuda.reset_peak_memory_stats(dev)
    elif (hwm := _linux_peak_rss()) is not None:  # peak resident set during this step
        out["peak_memory_bytes"] = hwm
        reset_peak_memory(dev)
    else:  # elsewhere: the process's peak resident set so far (macOS reports bytes); never goes down
        try:
            import resource  # POSIX only

            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out["peak_memory_bytes"] = int(rss if sys.platform == "darwin" else rss * 1024)
        except ImportError:
            pass
    plan = trainer.plan
    for key in PLAN_KEYS:
        out[f"plan_{key}"] = getattr(plan, key, None)
    return out


# ---------------------------------------------------------------- metric sinks


def _sinks(report_to: str) -> list[str]:
    return [s.strip() for s in (report_to or "").split(",") if s.strip() and s.strip() != "none"]


class Reporters:
    """Forwards each numeric metric row to TensorBoard and/or W&B."""

    def __init__(self, cfg: Config, run_dir: Path, *, resume_step: int = 0, enabled: bool = True):
        self.writers = []  # enabled=False (torchrun ranks other than 0): nothing is written
        for sink in _sinks(cfg.train.report_to) if enabled else []:
            if sink == "tensorboard":
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    raise ConfigError(
                        "train.report_to=tensorboard needs the tensorboard package: "
                        "pip install tensorboard (or drop --report-to tensorboard)"
                    ) from None
                self.writers.append(
                    (
                        "tensorboard",
                        SummaryWriter(
                            log_dir=str(run_dir / "tensorboard"),
                            purge_step=resume_step + 1 if resume_step else None,
                        ),
                    )
                )
            elif sink == "wandb":
                try:
                    import wandb
                except ImportError:
                    raise ConfigError(
                        "train.report_to=wandb needs the wandb package: pip install wandb, then "
                        "`wandb login` (or drop --report-to wandb)"
                    ) from None
                run = wandb.init(
                    project="gcpo-lite",
                    name=run_dir.name,
                    dir=str(run_dir),
                    config=cfg.to_dict(),
                    id=_wandb_id(run_dir),
                    resume="allow",
                )
                self.writers.append(("wandb", run))

    def log(self, row: dict) -> None:
        step = int(row.get("step", 0))
        scalars = {
            k: float(v)
            for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
        for kind, w in self.writers:
            if kind == "tensorboard":
                for k, v in scalars.items():
                    w.add_scalar(k, v, step)
                w.flush()
            else:
                w.log(scalars, step=step)

    def close(self) -> None:
        for kind, w in self.writers:
            w.close() if kind == "tensorboard" else w.finish()
        self.writers = []


def _wandb_id(run_dir: Path) -> str:
    """A W&B run id kept in the run directory, so --resume continues the same W&B run."""
    path = run_dir / ".wandb_id"
    if path.is_file():
        return path.read_text().strip()
    import uuid

    rid = uuid.uuid4().hex[:12]
    path.write_text(rid)
    return rid


# ---------------------------------------------------------------- progress bar


def _postfix(row: dict) -> dict:
    post = {
        "reward": f"{row.get('reward_mean', float('nan')):.2f}",
        "acc": f"{row.get('accuracy', float('nan')):.2f}",
        "gold": f"{row.get('gold_injected_frac', float('nan')):.2f}",
    }
    if "eval_accuracy" in row:
        post["eval"] = f"{row['eval_accuracy']:.2f}"
    return post


class ProgressBar:
    """A rich progress bar when rich is installed (optional), else tqdm; starts at `initial` on resume."""

    def __init__(self, total: int, initial: int = 0, *, prefer_rich: Optional[bool] = None):
        self._rich = None
        self._tqdm = None
        use_rich = prefer_rich if prefer_rich is not None else sys.stderr.isatty()
        if use_rich:
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )

                self._rich = Progress(
                    TextColumn("gcpo"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    TextColumn("{task.description}"),
                    transient=False,
                )
                self._task = self._rich.add_task("", total=total, completed=initial)
                self._rich.start()
            except ImportError:
                self._rich = None
        if self._rich is None:
            from tqdm.auto import tqdm

            self._tqdm = tqdm(total=total, initial=initial, desc="gcpo", unit="step", dynamic_ncols=True)

    def update(self, row: dict) -> None:
        post = _postfix(row)
        if self._rich is not None:
            self._rich.update(
                self._task, advance=1, description=" ".join(f"{k}={v}" for k, v in post.items())
            )
        else:
            self._tqdm.update(1)
            self._tqdm.set_postfix(post, refresh=False)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif self._tqdm is not None:
            self._tqdm.close()
