"""Worker for tests/run/test_distributed.py, run under torchrun (2 gloo processes) or as one plain process.

python tests/distributed_worker.py update OUT MODEL LOSS_TYPE
    one Trainer.update on a fixed global batch of 4 groups (G=4), each process taking its whole groups
    (rank r: groups 2r, 2r+1; a single process: all 4); writes OUT/<rank or "single">.pt with the LoRA
    gradients the optimizer saw, the weights after the step and update()'s metrics.
python tests/distributed_worker.py fail-at STEP RANK -- [gcpo-lite train arguments]
    `gcpo-lite train` in which process RANK raises in the update of step STEP (a crash, not a signal).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gcpo_lite.config import from_dict  # noqa: E402

G, GROUPS = 4, 4
REWARDS = [
    [1.0, 0.0, 0.0, 1.0],
    [0.0, 0.0, 0.0, 0.0],  # all equal: skipped (beta 0), so rank 0 trains fewer rows than rank 1
    [1.0, 0.5, 0.0, 0.0],
    [0.0, 1.0, 1.0, 1.0],
]


def update(out: Path, model: str, loss_type: str) -> None:
    from gcpo_lite.algorithm.advantages import group_advantages
    from gcpo_lite.algorithm.batches import StepBatch
    from gcpo_lite.run.distributed import init_world
    from gcpo_lite.train.trainer import Trainer

    world = init_world("cpu")
    cfg = from_dict(
        {
            "model": {"name": model, "quantize": False, "gradient_checkpointing": False},
            "gcpo": {"num_generations": G, "max_completion_length": 6, "loss_type": loss_type},
            "train": {
                "batch_size": G * GROUPS,
                "output_dir": str(out / f"run{world.rank}"),
                "learning_rate": 1e-2,
                "num_threads": 1,
                "kernels": "reference",
            },
            "data": {"eval_size": 4},
        }
    )
    tr = Trainer(cfg, progress=False, world=world)
    init = torch.Generator().manual_seed(3)  # nonzero LoRA B (as mid-run), the same on every rank
    for n, p in tr.model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05, generator=init)
    examples = tr.eval_examples[:GROUPS]  # the same on every rank
    gen = torch.Generator().manual_seed(7)
    allowed = [i for i in range(tr.model.config.vocab_size) if i not in set(tr.suppress)]
    completions = []
    for _ in range(G * GROUPS):
        n = int(torch.randint(1, 7, (1,), generator=gen))
        completions.append([allowed[int(i)] for i in torch.randint(len(allowed), (n,), generator=gen)])
    rewards = torch.tensor([r for group in REWARDS for r in group])
    batch = StepBatch(
        examples=examples,
        prompts=[tr._prompt(ex) for ex in examples for _ in range(G)],
        completions=completions,
        rewards=rewards,
        advantages=group_advantages(rewards, G, "group"),
        is_gold=torch.zeros(G * GROUPS, dtype=torch.bool),
    )
    per = GROUPS // world.size
    rows = slice(world.rank * per * G, (world.rank + 1) * per * G)  # this rank's whole groups
    mine = StepBatch(
        examples=examples[world.rank * per : (world.rank + 1) * per],
        prompts=batch.prompts[rows],
        completions=batch.completions[rows],
        rewards=batch.rewards[rows],
        advantages=batch.advantages[rows],
        is_gold=batch.is_gold[rows],
    )
    seen = {}
    names = {id(p): n for n, p in tr.model.named_parameters() if p.requires_grad}

    def keep_grads(optimizer, *_):
        for group in optimizer.param_groups:
            for p in group["params"]:
                seen[names[id(p)]] = p.grad.detach().clone()

    tr.optimizer.register_step_pre_hook(keep_grads)
    metrics = tr.update(mine)
    weights = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    name = str(world.rank) if world.distributed else "single"
    torch.save({"grads": seen, "weights": weights, "metrics": metrics}, out / f"{name}.pt")
    world.close(together=True)


def fail_at(step: int, rank: int, argv: list[str]) -> int:
    from gcpo_lite.cli import main
    from gcpo_lite.train.trainer import Trainer

    original = Trainer.update

    def update(self, batch):
        if self.world.rank == rank and self.step + 1 == step:
            raise RuntimeError(f"injected failure in rank {rank}, step {step}")
        return original(self, batch)

    Trainer.update = update
    return main(argv)


def oom_at(step: int, rank: int, argv: list[str]) -> int:
    from gcpo_lite.cli import main
    from gcpo_lite.train.trainer import Trainer

    original, fired = Trainer._bucket_step, []

    def bucket_step(self, work, old, ref, s, e, *shared):
        if self.world.rank == rank and self.step + 1 == step and not fired:
            fired.append(True)
            raise torch.OutOfMemoryError("out of memory (injected)")
        return original(self, work, old, ref, s, e, *shared)

    Trainer._bucket_step = bucket_step
    return main(argv)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "update":
        update(Path(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif mode in ("fail-at", "oom-at"):
        fn = fail_at if mode == "fail-at" else oom_at
        sys.exit(fn(int(sys.argv[2]), int(sys.argv[3]), sys.argv[sys.argv.index("--") + 1 :]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
