"""`gcpo-lite doctor` and `build-ext`: every section reported, nothing compiled, tokens never shown."""

import json

from gcpo_lite.cli import COMMANDS, build_parser, main
from gcpo_lite.commands import doctor

TOKEN = "hf_DOCTORtokenMUSTnotAPPEAR0123456789"


def test_report_has_every_section(tmp_path):
    r = doctor.collect(tmp_path / "not" / "made" / "yet")
    assert set(r) == {"versions", "optional", "machine", "cuda", "bitsandbytes", "kernels", "disk", "hub"}
    assert r["versions"]["torch"] and r["versions"]["transformers"] and r["versions"]["peft"]
    assert r["cuda"]["available"] in (True, False) and ("why" in r["cuda"] or r["cuda"]["gpus"])
    assert r["bitsandbytes"]["ok"] and r["bitsandbytes"]["backend"]
    assert r["kernels"]["live"] and "why_not_native" in r["kernels"]
    assert r["disk"]["free_bytes"] > 0 and r["disk"]["checked_at"] == str(tmp_path)  # nearest existing parent
    text = doctor.format_report(r)
    for head in ("versions:", "CUDA:", "bitsandbytes:", "kernels:", "disk:", "hub:"):
        assert head in text


def test_cli_doctor_never_shows_the_token(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["doctor", "--run-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "token available (not shown)" in out and TOKEN not in out
    assert main(["doctor", "--run-dir", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["hub"]["token_available"] is True and TOKEN not in out


def test_build_ext_reports_the_build(monkeypatch, capsys):
    from gcpo_lite.kernels import _ext

    monkeypatch.setattr(_ext, "build", lambda verbose=True: "native kernels: OK (test)")
    assert main(["build-ext", "--quiet"]) == 0
    monkeypatch.setattr(_ext, "build", lambda verbose=True: "native kernels: NOT available: no compiler")
    assert main(["build-ext"]) == 1
    assert "no compiler" in capsys.readouterr().out


def test_commands_are_registered():
    assert {"train", "eval", "export", "plot", "doctor", "build-ext"} <= set(COMMANDS)
    build_parser()  # every module imports and declares its arguments
