"""A model or dataset the hub cannot give (offline, gated, missing) is one clear error, fast, without retries
or a traceback; a cached copy is used offline (issue 9, item 13)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2
import huggingface_hub
import huggingface_hub.constants as hf_constants
import pytest
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from gcpo_lite.run import hub


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty hub cache, probes forgotten, offline mode restored afterwards."""
    monkeypatch.setattr(hub, "_checked", {})
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _answer(monkeypatch, error):
    def repo_info(self, repo_id, **kw):
        if error is not None:
            raise error

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", repo_info)


def _http_error(cls, status):
    response = httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/api/x"))
    return cls("refused", response=response)


def _cache_model(root: Path, repo_id: str) -> None:
    snap = root / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")


def test_gated_model_says_accept_and_token(fresh, monkeypatch):
    _answer(monkeypatch, _http_error(GatedRepoError, 403))
    with pytest.raises(hub.HubError, match=r"'meta/llama' is gated.*accept its terms.*HF_TOKEN"):
        hub.ensure_fetchable("meta/llama")


def test_missing_dataset_says_check_name_or_token(fresh, monkeypatch):
    _answer(monkeypatch, _http_error(RepositoryNotFoundError, 404))
    with pytest.raises(hub.HubError, match=r"dataset 'me/nope' was not found.*HF_TOKEN.*--dataset FILE"):
        hub.ensure_fetchable("me/nope", repo_type="dataset")


def test_unreachable_and_uncached_is_one_error_with_the_fixes(fresh, monkeypatch):
    _answer(monkeypatch, httpx2.ConnectError("[Errno -2] Name or service not known"))
    with pytest.raises(hub.HubError) as e:
        hub.ensure_fetchable("Qwen/Qwen2.5-1.5B-Instruct")
    msg = str(e.value)
    assert "cannot be reached" in msg and "no copy in the local cache" in msg
    assert "--model DIR" in msg and "hf download Qwen/Qwen2.5-1.5B-Instruct" in msg


def test_unreachable_but_cached_goes_offline_once(fresh, monkeypatch):
    _cache_model(fresh, "Qwen/Qwen2.5-1.5B-Instruct")
    calls = []
    _answer(monkeypatch, httpx2.ConnectError("no route"))
    monkeypatch.setattr(hub, "_probe", lambda *a: calls.append(a) or httpx2.ConnectError("no route"))
    note = hub.ensure_fetchable("Qwen/Qwen2.5-1.5B-Instruct")
    assert "using the cached copy" in note and huggingface_hub.is_offline_mode()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert hub.ensure_fetchable("Qwen/Qwen2.5-1.5B-Instruct") == note and len(calls) == 1


def test_offline_mode_asks_nothing_and_the_cache_decides(fresh, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    _answer(monkeypatch, AssertionError("no request may be made offline"))
    with pytest.raises(hub.HubError, match="not in the local cache and HF_HUB_OFFLINE is set"):
        hub.ensure_fetchable("someone/model")
    _cache_model(fresh, "someone/model")
    assert hub.ensure_fetchable("someone/model") is None


def _cli(env_extra, *argv, cwd):
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "gcpo_lite.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_cli_uncached_model_offline_is_one_line_and_leaves_no_run_dir(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    r = _cli(
        env, "train", "--model", "someone/not-cached", "--output-dir", str(out), "--no-progress", cwd=tmp_path
    )
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(errors) == 1 and "'someone/not-cached'" in errors[0] and "hf download" in errors[0]
    assert not out.exists()
    r = _cli(env, "train", "--model", "someone/not-cached", "--output-dir", str(out), "--debug", cwd=tmp_path)
    assert "Traceback" in r.stderr and "HubError" in r.stderr


def test_cli_trains_a_cached_hub_model_offline(tmp_path, embedded_model_dir):
    snap = tmp_path / "hf" / "hub" / "models--someone--tiny" / "snapshots" / "0123abcd"
    shutil.copytree(embedded_model_dir, snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0123abcd")
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    argv = [
        "train",
        "--model",
        "someone/tiny",
        "--dataset",
        "addition",
        "--output-dir",
        str(tmp_path / "run"),
    ]
    r = _cli(
        env,
        *argv,
        "--no-progress",
        "train.max_steps=1",
        "train.batch_size=8",
        "gcpo.num_generations=4",
        "data.eval_size=4",
        "model.quantize=false",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
