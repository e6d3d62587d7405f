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
    assert r["kernels"]["live"] and "why_not_native" in r["kernels"] and r["kernels"]["sources"]
    assert r["disk"]["free_bytes"] > 0 and r["disk"]["checked_at"] == str(tmp_path)  # nearest existing parent
    text = doctor.format_report(r)
    for head in ("versions:", "CUDA:", "bitsandbytes:", "kernels:", "kernel sources:", "disk:", "hub:"):
        assert head in text


def test_doctor_says_where_the_kernel_sources_are_or_that_there_are_none(tmp_path, monkeypatch):
    from gcpo_lite.kernels import _ext

    package, checkout = tmp_path / "site" / "gcpo_lite" / "csrc", tmp_path / "repo" / "csrc"
    monkeypatch.setattr(_ext, "PACKAGE_CSRC", package)
    monkeypatch.setattr(_ext, "CHECKOUT_CSRC", checkout)
    r = doctor.collect(tmp_path)

    def sources_line() -> str:
        monkeypatch.setattr(_ext, "CSRC_WHERE", _ext._find_csrc()[1])
        r["kernels"] = doctor.kernels_report()
        return next(ln for ln in doctor.format_report(r).splitlines() if "kernel sources:" in ln).strip()

    looked = f"looked in the installed package, {package}, and a source checkout, {checkout}"
    assert sources_line().startswith(f"kernel sources: none found ({looked}); reinstall")
    for found in (checkout, package):  # an editable install's checkout, then a wheel's copy, which wins
        found.mkdir(parents=True)
        (found / "gcpo_ops.cpp").write_text("")
    assert sources_line() == f"kernel sources: installed package ({package})"
    (package / "gcpo_ops.cpp").unlink()
    assert sources_line() == f"kernel sources: source checkout ({checkout})"


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
    build_parser()  # the table alone: each command module is imported when its command is chosen (test_cli.py)
