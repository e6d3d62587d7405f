"""`gcpo-lite plot` and run/curves.py: a PNG with every panel from metrics.jsonl; a clear error without matplotlib."""

import builtins
import json

import pytest

from gcpo_lite.config import ConfigError
from gcpo_lite.run.curves import PANELS, plot, series


def write_run(run_dir, steps=12):
    rows = [{"step": 0, "eval_accuracy": 0.1}]
    for s in range(1, steps + 1):
        rows.append(
            {
                "step": s,
                "reward_mean": s / steps,
                "reward_std": 0.3,
                "accuracy": s / (2 * steps),
                "gold_injected_frac": 1 - s / steps,
                "all_wrong_frac": 1 - s / steps,
                "all_correct_frac": 0.0,
                "loss": 0.1 / s,
                "completion_length_mean": 20 + s,
                "completion_length_max": 40,
            }
        )
    rows[-1]["eval_accuracy"] = 0.6
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 13, "rew'
    )  # cut line


def test_series_skips_rows_without_the_key(tmp_path):
    write_run(tmp_path)
    from gcpo_lite.run.curves import read_metrics

    rows = read_metrics(tmp_path)
    assert series(rows, "eval_accuracy") == ([0, 12], [0.1, 0.6])
    assert series(rows, "loss")[0] == list(range(1, 13))


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    write_run(tmp_path)
    out = plot(tmp_path, smooth=3)
    assert out == tmp_path / "curves.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    import matplotlib.image

    height, width = matplotlib.image.imread(str(out)).shape[:2]
    assert height > width and len(PANELS) == 5  # one panel a row: reward, accuracy, gold, loss, lengths


def test_plot_cli_and_errors(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from gcpo_lite.cli import main

    write_run(tmp_path)
    assert main(["plot", str(tmp_path), "--output", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").is_file() and "wrote" in capsys.readouterr().out
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "metrics.jsonl not found" in capsys.readouterr().err


def test_missing_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    write_run(tmp_path)
    real_import = builtins.__import__

    def no_matplotlib(name, *a, **kw):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ConfigError, match="pip install matplotlib"):
        plot(tmp_path)
