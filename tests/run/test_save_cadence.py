"""When checkpoints are written by default: a run loses at most train.save_minutes of work to a kill -9 (issue 28,
item 2). The clock is faked; the resumes that must stay exact are in test_checkpoints.py."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from gcpo_lite.config import ConfigError, from_dict
from gcpo_lite.demo.default_run import EMBEDDED_DEFAULT
from gcpo_lite.run import stop
from gcpo_lite.run.distributed import World


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def minutes(self, m: float) -> None:
        self.now += 60 * m


class Rank(World):
    """A rank of a 2-process job with no process group: all_max records what this rank offers and
    returns the job's answer, `reply` ([stop, save-time-reached] as rank 0 would have it)."""

    def __init__(self, rank: int, reply: list[float]):
        super().__init__(rank=rank, size=2, backend="gloo")
        object.__setattr__(self, "reply", reply)
        object.__setattr__(self, "offered", [])

    def all_max(self, values):
        self.offered.append(list(values))
        return [max(v, r) for v, r in zip(values, self.reply)]


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(stop.time, "monotonic", c)
    return c


def checkpointer(monkeypatch, world=None, **train):
    """A Checkpointer over a stand-in trainer; returns (checkpointer, steps it saved)."""
    saved = []
    monkeypatch.setattr(stop, "save_checkpoint", lambda trainer, state: None)  # rank 0 writes nothing here
    real_save = stop.Checkpointer.save

    def save(self):  # every rank calls it (and gathers its state); rank 0 then writes
        saved.append(self.trainer.step)
        return real_save(self)

    monkeypatch.setattr(stop.Checkpointer, "save", save)
    param = torch.nn.Parameter(torch.zeros(1))
    trainer = SimpleNamespace(
        optimizer=torch.optim.SGD([param], lr=0.1),
        world=world or World(),
        cfg=from_dict({"train": train}),
        step=0,
    )
    trainer.state_dict = lambda: {"step": trainer.step}
    return stop.Checkpointer(trainer), saved


def steps(ckpt, clock, n: int, minutes_each: float) -> None:
    for _ in range(n):
        ckpt.begin_step()
        clock.minutes(minutes_each)
        ckpt.trainer.step += 1
        ckpt.end_step()


def test_the_default_saves_every_few_minutes():
    t = from_dict({}).train
    assert t.save_steps == 0 and 0 < t.save_minutes <= 10


def test_the_demo_saves_before_it_ends():
    """The 4-minute demo (and its config file) checkpoints every minute: a kill -9 loses at most one."""
    demo = from_dict(EMBEDDED_DEFAULT).train
    assert 0 < demo.save_minutes < demo.max_minutes
    path = Path(__file__).resolve().parents[2] / "configs" / "tiny_addition_cpu.yaml"
    assert yaml.safe_load(path.read_text())["train"]["save_minutes"] == demo.save_minutes


def test_a_checkpoint_every_save_minutes(monkeypatch, clock):
    ckpt, saved = checkpointer(monkeypatch, save_minutes=5)
    steps(ckpt, clock, 12, minutes_each=1.1)  # past 5 minutes at steps 5 (5.5), 10 (5.5 after step 5)
    assert saved == [5, 10]


def test_save_steps_replaces_save_minutes(monkeypatch, clock):
    ckpt, saved = checkpointer(monkeypatch, save_steps=4, save_minutes=1)
    steps(ckpt, clock, 9, minutes_each=2)
    assert saved == [4, 8]


def test_save_minutes_zero_saves_only_at_the_end(monkeypatch, clock):
    ckpt, saved = checkpointer(monkeypatch, save_minutes=0)
    steps(ckpt, clock, 5, minutes_each=60)
    assert saved == []
    ckpt.save_final()
    assert saved == [5]


@pytest.mark.parametrize("value", [-1, "nan", "inf"])
def test_save_minutes_is_checked(value):
    with pytest.raises(ConfigError, match=r"train.save_minutes=.*>= 0"):
        from_dict({"train": {"save_minutes": value}})


def test_under_torchrun_rank_0s_clock_decides(monkeypatch, clock):
    """Rank 1's clock is never asked (the ranks' clocks differ): it saves when rank 0 says so, together."""
    late_on_rank_0 = Rank(1, reply=[0.0, 1.0])
    ckpt, saved = checkpointer(monkeypatch, world=late_on_rank_0, save_minutes=5)
    steps(ckpt, clock, 1, minutes_each=0)
    assert late_on_rank_0.offered == [[0.0, 0.0]] and saved == [1]  # it offered nothing, and saved
    early_on_rank_0 = Rank(1, reply=[0.0, 0.0])
    ckpt, saved = checkpointer(monkeypatch, world=early_on_rank_0, save_minutes=5)
    steps(ckpt, clock, 3, minutes_each=10)  # rank 1 itself is long past 5 minutes
    assert saved == [] and early_on_rank_0.offered == [[0.0, 0.0]] * 3
    rank_0 = Rank(0, reply=[0.0, 0.0])
    ckpt, saved = checkpointer(monkeypatch, world=rank_0, save_minutes=5)
    steps(ckpt, clock, 2, minutes_each=3)
    assert rank_0.offered == [[0.0, 0.0], [0.0, 1.0]] and saved == [2]
