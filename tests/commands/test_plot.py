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


def _plot_cli(capsys, *argv) -> tuple[int, str, str]:
    from gcpo_lite.cli import main

    code = main(["plot", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line(code, err, *needles):
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_plot_to_an_unsupported_extension_is_refused_naming_the_ones_there_are(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    write_run(tmp_path)
    code, _, err = _plot_cli(capsys, str(tmp_path), "--output", str(tmp_path / "x.txt"))
    _one_line(code, err, "'.txt'", "png", "svg", "pdf", "--output")
    assert not (tmp_path / "x.txt").exists()


def test_plot_to_a_directory_writes_curves_png_inside_it_and_says_so(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    write_run(tmp_path)
    (tmp_path / "figs").mkdir()
    code, out, _ = _plot_cli(capsys, str(tmp_path), "--output", str(tmp_path / "figs"))
    assert code == 0 and (tmp_path / "figs" / "curves.png").is_file()
    assert out.strip() == f"wrote {tmp_path / 'figs' / 'curves.png'}"
    assert not (tmp_path / "figs.png").exists()


def test_plot_to_a_name_without_extension_says_the_file_it_wrote(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    write_run(tmp_path)
    code, out, _ = _plot_cli(capsys, str(tmp_path), "--output", str(tmp_path / "curves"))
    assert code == 0 and out.strip() == f"wrote {tmp_path / 'curves.png'}"
    assert (tmp_path / "curves.png").is_file()


def test_metrics_lines_that_are_not_objects_are_skipped_with_a_note(tmp_path, caplog):
    """`5`, `[1, 2]` or a row whose step is not a number: the other rows still plot; a note names the lines."""
    pytest.importorskip("matplotlib")
    write_run(tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('\n5\n[1, 2]\n"x"\n{"step": "seven", "loss": 1.0}\n{"step": null, "loss": 2}\n')
    with caplog.at_level("WARNING"):
        out = plot(tmp_path)
    assert out.is_file()
    assert "metrics.jsonl: skipped lines 15, 16, 17 (not JSON objects)" in caplog.text
    from gcpo_lite.run.curves import read_metrics

    assert series(read_metrics(tmp_path), "loss")[0] == list(range(1, 13))  # step "seven" and null: no point


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(13, "Permission denied"),
        OSError(30, "Read-only file system"),
    ],
)
def test_plot_to_a_read_only_place_is_one_line(tmp_path, capsys, monkeypatch, error):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    write_run(tmp_path)

    def refuse(self, fname, *a, **kw):
        error.filename = str(fname)
        raise error

    monkeypatch.setattr(Figure, "savefig", refuse)
    code, _, err = _plot_cli(capsys, str(tmp_path))
    _one_line(code, err, f"cannot write {tmp_path / 'curves.png'} ({error.strerror})", "--output")


def test_plot_into_a_folder_that_cannot_be_made_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from pathlib import Path

    write_run(tmp_path)

    def read_only(self, *a, **kw):
        raise OSError(30, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = _plot_cli(capsys, str(tmp_path), "--output", str(tmp_path / "new" / "c.png"))
    _one_line(code, err, f"cannot write {tmp_path / 'new' / 'c.png'} (Read-only file system)", "--output")


def test_unreadable_metrics_is_one_line(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = _plot_cli(capsys, str(tmp_path))
    _one_line(code, err, "metrics.jsonl cannot be read")
