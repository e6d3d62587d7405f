"""One warning when truncated_frac stays >= 0.5 for 3 steps in a row (train/truncation_warning.py), fed by
MetricsLog.write (train/metrics.py) and said through the trainer's echo (rank 0's; the others' do nothing)."""

import io
from types import SimpleNamespace

import pytest

from gcpo_lite.config import from_dict
from gcpo_lite.train.metrics import MetricsLog
from gcpo_lite.train.truncation_warning import TruncationWarning

# rows as the embedded default writes them (metrics.jsonl of `gcpo-lite train`, steps 0-6): its 5-token limit
# cuts a sample now and then, never most of them
EMBEDDED_ROWS = [{"step": 0, "eval_accuracy": 0.2}] + [
    {"step": i, "truncated_frac": f, "completion_length_mean": 3.6, "reward_mean": 0.3}
    for i, f in enumerate([0.0029, 0.0059, 0.0, 0.0, 0.00098, 0.00195], start=1)
]


def fake_trainer(**cfg):
    said = []
    trainer = SimpleNamespace(cfg=from_dict(cfg), echo=said.append, step=0)
    return trainer, said


def log_rows(trainer, fracs) -> None:
    log = MetricsLog(trainer, io.StringIO(), io.StringIO())
    for step, frac in enumerate(fracs, start=1):
        log.write({"step": step} if frac is None else {"step": step, "truncated_frac": frac})


def test_three_high_steps_warn_once(capsys):
    trainer, said = fake_trainer(gcpo={"max_completion_length": 256})
    log_rows(trainer, [0.9, 0.5, 1.0, 1.0, 0.8, 0.0, 0.9, 0.9, 0.9])
    assert said == [
        "warning: 100% of samples hit gcpo.max_completion_length=256 without ending, 3 steps in a row; they "
        "score 0 (reward.truncated=zero), so rewards and advantages say little. To fix: raise "
        "gcpo.max_completion_length (gcpo-lite plan sizes its memory), ask for shorter answers "
        "(data.system_prompt), or set reward.truncated=mask (leave them out of the loss) or score (score their "
        "text)"
    ]
    assert capsys.readouterr().out == ""  # through the trainer's echo, not print


@pytest.mark.parametrize(
    "fracs",
    [
        [0.9, 0.9],  # two high steps
        [0.9, 0.9, 0.49, 0.9, 0.9, 0.1, 0.6, 0.7],  # a low step starts the count over
        [0.0] * 20,
        [0.4] * 20,
    ],
)
def test_fewer_than_three_high_steps_in_a_row_are_silent(fracs):
    trainer, said = fake_trainer()
    log_rows(trainer, fracs)
    assert said == []


def test_an_eval_row_neither_counts_nor_breaks_the_streak():
    trainer, said = fake_trainer()
    log_rows(trainer, [0.9, None, 0.9, None, None])
    assert said == []
    log_rows(trainer, [0.9, 0.9, None, 0.9])
    assert len(said) == 1


def test_the_embedded_defaults_rows_are_silent():
    trainer, said = fake_trainer(gcpo={"num_generations": 4, "max_completion_length": 5})
    log = MetricsLog(trainer, io.StringIO(), io.StringIO())
    for row in EMBEDDED_ROWS * 5:
        log.write(row)
    assert said == []


@pytest.mark.parametrize(
    "mode, needle",
    [("mask", "left out of the loss (reward.truncated=mask)"), ("score", "scored as cut off")],
)
def test_the_line_fits_the_runs_reward_truncated(mode, needle):
    trainer, said = fake_trainer(reward={"truncated": mode})
    watch = TruncationWarning(trainer)
    assert [watch.feed({"truncated_frac": 0.75}) for _ in range(4)] == [None, None, said[0], None]
    assert needle in said[0] and "75% of samples" in said[0]
    assert "reward.truncated=mask or" not in said[0] and said[0].endswith(
        "ask for shorter answers (data.system_prompt)"
    )


def test_other_ranks_say_nothing():
    """The Trainer's echo on a rank other than 0 is a no-op: the warning goes nowhere there."""
    trainer, _ = fake_trainer()
    trainer.echo = lambda _: None
    watch = TruncationWarning(trainer)
    lines = [watch.feed({"truncated_frac": 1.0}) for _ in range(3)]
    assert lines[2] is not None and watch.fired


def test_a_training_run_whose_samples_are_all_cut_warns_once(small_trainer, monkeypatch, capsys):
    """The real loop: every sample runs to max_completion_length (6) without an end token for 4 steps."""
    tr = small_trainer(gold_injection="never")
    monkeypatch.setattr(tr.cfg.train, "max_steps", 4)
    monkeypatch.setattr(tr.cfg.train, "eval_steps", 0)
    monkeypatch.setattr(tr, "eval_examples", [])
    cut = tr.tokenizer("1", add_special_tokens=False).input_ids[:1] * 6

    def generate(prompts, temperature, max_new_tokens):
        return [list(cut) for _ in prompts], [-1.0] * len(prompts)

    monkeypatch.setattr(tr, "generate", generate)
    tr.train()
    lines = [x for x in capsys.readouterr().out.splitlines() if "samples hit gcpo.max_completion_length" in x]
    assert len(lines) == 1 and lines[0].startswith(
        "warning: 100% of samples hit gcpo.max_completion_length=6"
    )
