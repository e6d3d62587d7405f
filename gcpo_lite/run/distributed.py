"""Data parallelism under torchrun: which process this is, and the few collectives the GCPO loop needs.

    torchrun --nproc-per-node N -m gcpo_lite train ...      (N processes on one machine)

torchrun starts N copies of `gcpo-lite train` with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and the
rendezvous address set; init_world() joins them into one process group (NCCL on CUDA, gloo on CPU). Each
process (rank) rolls out, scores and injects gold for its own whole groups, then the ranks meet only at
fixed points of a step, so an OOM retry on one rank never leaves another waiting in a collective it
cannot match:
  - after the rollout: the step's metrics (and, for scale_rewards=batch, the batch's rewards);
  - before the update: the step's normalizer (tokens or rows of the global batch);
  - after the update's backward passes: one all-reduce (sum) of the LoRA gradients. Each rank's loss is
    already divided by the global normalizer, so the sum is the gradient of the global batch's loss;
  - at a step's end: whether any rank must stop (a signal, train.max_minutes); checkpoints (every rank's
    random streams and data position gathered to rank 0, which writes); the sharded evaluation.
docs/RUNS.md ("More processes") gives the full semantics.

Without torchrun (WORLD_SIZE unset or 1) World() is a single process whose collectives return their
input, and the loop runs exactly as it always has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch

from gcpo_lite.config import ConfigError


class PeerFailed(ConfigError):
    """A collective failed because another process of the job stopped (its own error says why)."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1  # processes on this machine (they share its RAM on CPU)
    backend: str = ""  # "gloo" | "nccl"; "" for a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: cuda:LOCAL_RANK for a CUDA run under torchrun, else `device` as it is."""
        if self.distributed and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    # ------------------------------------------------------------ collectives
    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def _run(self, fn, *args, **kwargs):
        """A torch.distributed call; a peer that has died surfaces as PeerFailed (one line, exit 2)."""
        try:
            return fn(*args, **kwargs)
        except (RuntimeError, ValueError) as e:  # gloo: "Connection closed by peer"; DistBackendError
            raise PeerFailed(
                f"process {self.rank} of {self.size}: another process of this torchrun job stopped (its "
                f"own error is above); this one stops too ({str(e).strip().splitlines()[0][:160]})"
            ) from None

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Elementwise sum over ranks of a few numbers (float64: counts stay exact)."""
        return self._all_reduce(values, "SUM")

    def all_max(self, values: Sequence[float]) -> list[float]:
        return self._all_reduce(values, "MAX")

    def _all_reduce(self, values: Sequence[float], op: str) -> list[float]:
        if not self.distributed:
            return [float(v) for v in values]
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm_device())
        self._run(dist.all_reduce, t, op=getattr(dist.ReduceOp, op))
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any (e.g. one rank caught a signal: all stop together)."""
        return bool(self.all_max([1.0 if flag else 0.0])[0]) if self.distributed else bool(flag)

    def gather(self, obj) -> list:
        """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.size
        self._run(dist.all_gather_object, out, obj)
        return out

    def sum_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """p.grad <- sum over ranks, for every p (a rank that trained no rows contributes zeros)."""
        if not self.distributed:
            return
        import torch.distributed as dist
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = _flatten_dense_tensors(grads)  # one buffer: one all-reduce for the whole adapter
        self._run(dist.all_reduce, flat, op=dist.ReduceOp.SUM)
        for p, g in zip(params, _unflatten_dense_tensors(flat, grads)):
            p.grad = g

    def broadcast_from_main(self, tensors: Sequence[torch.Tensor]) -> None:
        """Every rank's tensors <- rank 0's (in place): the adapter every rank starts from."""
        if not self.distributed:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for t in tensors:
                self._run(dist.broadcast, t.data, src=0)

    def close(self, together: bool = False) -> None:
        """Leave the process group. together=True (every rank finished the run): first wait for all of them,
        so no rank tears its connections down while another still uses them; a gloo rank whose peer closed
        first was seen to abort at exit ("terminate called without an active exception")."""
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                if together:
                    self._run(dist.barrier)
                dist.destroy_process_group()


def world_size_from_env() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; launch with torchrun"
        ) from None


def init_world(device: str = "auto") -> World:
    """The process group torchrun describes in the environment (NCCL when the run is on CUDA, gloo on
    CPU), or World() for a single process. device is train.device."""
    size = world_size_from_env()
    if size <= 1:
        return World()
    import torch.distributed as dist

    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={size} but {', '.join(missing)} unset: start several processes with "
            "`torchrun --nproc-per-node N -m gcpo_lite train ...`, or unset WORLD_SIZE for one process"
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                "use --nproc-per-node at most the number of GPUs"
            )
        torch.cuda.set_device(local_rank)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return World(
        rank=dist.get_rank(),
        size=dist.get_world_size(),
        local_rank=local_rank,
        local_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        backend=backend,
    )


def check_split(prompts_per_step: int, num_generations: int, world: World) -> None:
    """Each rank takes whole groups: the step's prompts must split evenly across the ranks."""
    if prompts_per_step % world.size == 0:
        return
    unit = num_generations * world.size
    lo = max(unit, prompts_per_step * num_generations // unit * unit)
    raise ConfigError(
        f"train.batch_size={prompts_per_step * num_generations} is {prompts_per_step} groups of "
        f"G={num_generations}, which do not split into whole groups across {world.size} processes; use a "
        f"multiple of G x processes = {unit}, e.g. train.batch_size={lo} or {lo + unit}"
    )


def merge_records(world: World, record: dict, maxed: Sequence[str] = ()) -> dict:
    """One rank's per-step record -> the whole job's: lists concatenated in rank order (each rank's rows are
    whole groups, so groups stay contiguous), numbers summed (those in `maxed`: the largest), dicts of
    numbers summed key by key."""
    if not world.distributed:
        return record
    parts = world.gather(record)
    out = {}
    for key, value in record.items():
        values = [p[key] for p in parts]
        if isinstance(value, list):
            out[key] = [x for v in values for x in v]
        elif isinstance(value, dict):
            out[key] = {k: sum(v.get(k, 0) for v in values) for k in set().union(*values)}
        elif key in maxed:
            out[key] = max(values)
        else:
            out[key] = sum(values)
    return out


def rank_view(state: dict, world: World, where: str) -> dict:
    """A checkpoint's trainer_state seen by this rank: its own data position, random streams, reward error
    count and plan sizes in place of rank 0's. Refuses a checkpoint of another number of processes."""
    saved = int(state.get("world_size", 1))
    if saved != world.size:
        how = (
            f"torchrun --nproc-per-node {saved} -m gcpo_lite train --resume RUN_DIR"
            if saved > 1
            else "gcpo-lite train --resume RUN_DIR (without torchrun)"
        )
        raise ConfigError(
            f"{where} was written by a run of {saved} process(es) and this run has {world.size}: each process "
            f"draws its own prompts and random numbers, so it resumes exactly only with the same number; "
            f"resume with `{how}`"
        )
    if saved == 1:
        return state
    mine = state["ranks"][world.rank]
    return {**{k: v for k, v in state.items() if k != "ranks"}, **mine}
