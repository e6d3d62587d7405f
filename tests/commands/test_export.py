"""Export: the adapter reloads with plain transformers + peft to identical logits, the merged model matches
the adapter model, and the Hub push runs huggingface_hub's own API with only the HTTP transport replaced."""

import base64
import json
import logging

import pytest
import torch

from gcpo_lite.config import from_dict
from gcpo_lite.export.hub_push import PushError, push_to_hub
from gcpo_lite.export.write import export
from gcpo_lite.run import checkpoints as ck
from gcpo_lite.train.trainer import Trainer

IDS = torch.tensor([[1, 5, 7, 9, 11, 3, 4, 20, 21, 2], [2, 8, 8, 30, 12, 13, 6, 7, 40, 1]])  # (2, 10)
TOKEN = "hf_TESTtokenNEVERprintedXYZ0123456789"


@pytest.fixture(scope="module")
def run(embedded_model_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    cfg = from_dict(
        {
            "model": {"gradient_checkpointing": False},
            "gcpo": {"num_generations": 4, "max_completion_length": 4},
            "data": {"eval_size": 4},
            "train": {
                "batch_size": 8,
                "output_dir": str(run_dir),
                "learning_rate": 3e-2,
                "max_steps": 2,
                "eval_steps": 0,
                "save_steps": 1,
                "num_threads": 1,
                "kernels": "reference",
            },
        }
    )
    tr = Trainer(cfg, progress=False)
    tr.train()
    tr.model.eval()
    with torch.no_grad():
        logits = tr.model(input_ids=IDS).logits.float()  # (2, 10, V) the trained policy: 4-bit base + LoRA
    return run_dir, tr, logits


def plain_4bit_base(path):
    """The base as a user loads it with transformers alone (the run's NF4 settings)."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from gcpo_lite.models.loading import _keep_cpu_4bit_trainable

    model = AutoModelForCausalLM.from_pretrained(
        path,
        dtype=torch.float32,
        device_map={"": "cpu"},
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        ),
    )
    _keep_cpu_4bit_trainable(
        model
    )  # same bitsandbytes CPU kernel as training (its AVX512 repack rounds differently)
    return model


def logits_of(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits.float()


def test_adapter_reloads_with_plain_peft_to_identical_logits(run, tmp_path):
    from peft import PeftModel
    from transformers import AutoTokenizer

    run_dir, tr, ref = run
    out = export(run_dir, tmp_path / "out")
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "tokenizer_config.json"} <= {
        p.name for p in out.iterdir()
    }
    acfg = json.loads((out / "adapter_config.json").read_text())
    model = PeftModel.from_pretrained(plain_4bit_base(acfg["base_model_name_or_path"]), str(out))
    diff = (logits_of(model) - ref).abs().max().item()
    print(f"export -> reload: max |logit diff| = {diff:.3g}")
    assert diff == 0.0
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok("12+30=").input_ids == tr.tokenizer("12+30=").input_ids


@pytest.mark.parametrize("dtype,atol", [("float32", 1e-4), ("bfloat16", 0.15)])
def test_merged_model_matches_adapter_model(run, tmp_path, dtype, atol):
    from transformers import AutoModelForCausalLM

    run_dir, _, ref = run
    out = export(run_dir, tmp_path / "merged", merged=True, dtype=dtype)
    assert (out / "model.safetensors").is_file() and (out / "adapter" / "adapter_model.safetensors").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["dtype"] == dtype
    model = AutoModelForCausalLM.from_pretrained(str(out))  # no peft, no bitsandbytes
    assert next(model.parameters()).dtype == getattr(torch, dtype)
    diff = (logits_of(model) - ref).abs().max().item()
    print(
        f"merged ({dtype}) vs adapter model: max |logit diff| = {diff:.3g} (max |logit| {ref.abs().max():.3g})"
    )
    assert diff < atol


def test_export_checkpoint_and_model_card(run, tmp_path):
    from safetensors.torch import load_file

    run_dir, _, _ = run
    out = export(run_dir, tmp_path / "ck1", checkpoint=1)
    saved = load_file(str(ck.find_checkpoint(run_dir, 1) / "adapter" / "adapter_model.safetensors"))
    exported = load_file(str(out / "adapter_model.safetensors"))
    assert saved.keys() == exported.keys() and all(torch.equal(saved[k], exported[k]) for k in saved)
    final = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    assert any(not torch.equal(final[k], exported[k]) for k in final)  # really step 1, not the end
    card = (out / "README.md").read_text()
    for text in (
        "base_model:",
        "library_name: peft",
        "GCPO",
        "2510.07790",
        "When Contrast Fails, Go Gold",
        "gold_injection: all_wrong",
        "| step | 1 |",
        "| reward_mean |",
        "PeftModel.from_pretrained",
    ):
        assert text in card, text


# ---------------------------------------------------------------- push, with a fake Hub behind httpx


class FakeHub:
    """Answers the Hub API calls create_repo and upload_folder make; records what was uploaded."""

    def __init__(self, create_status=200):
        self.create_status = create_status
        self.created, self.files, self.auth, self.card_checked = None, {}, set(), False

    def __call__(self, request):
        import httpx2

        self.auth.add(request.headers.get("authorization", ""))
        path = request.url.path
        if path == "/api/repos/create":
            self.created = json.loads(request.content)
            if self.create_status != 200:
                return httpx2.Response(self.create_status, json={"error": "You don't have the rights"})
            return httpx2.Response(
                200,
                json={"url": f"https://huggingface.co/{self.created['organization']}/{self.created['name']}"},
            )
        if path == "/api/validate-yaml":  # upload_folder checks the model card's metadata first
            self.card_checked = "base_model:" in json.loads(request.content)["content"]
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if "/preupload/" in path:
            files = json.loads(request.content)["files"]
            return httpx2.Response(
                200,
                json={
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                },
            )
        if "/commit/" in path:
            for line in request.content.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return httpx2.Response(
                200, json={"commitUrl": "https://huggingface.co/me/x/commit/abc", "commitOid": "a" * 40}
            )
        return httpx2.Response(404, json={"error": f"fake hub: no route {path}"})


@pytest.fixture
def fake_hub(monkeypatch):
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hubs = []

    def install(hub):
        hubs.append(hub)
        # huggingface_hub's own client and request hook; only the transport (the network) is replaced
        _http.set_client_factory(
            lambda: httpx2.Client(
                event_hooks={"request": [_http.hf_request_event_hook]},
                follow_redirects=True,
                transport=httpx2.MockTransport(hub),
            )
        )
        _http.close_session()
        return hub

    yield install
    _http.set_client_factory(_http.default_client_factory)
    _http.close_session()


def test_push_uploads_the_export(run, tmp_path, fake_hub, capsys, caplog):
    from gcpo_lite.cli import main

    caplog.set_level(logging.DEBUG)
    hub = fake_hub(FakeHub())
    out = tmp_path / "pushed"
    assert main(["export", str(run[0]), "--output-dir", str(out), "--push-to-hub", "me/x", "--private"]) == 0
    assert hub.created == {"name": "x", "organization": "me", "visibility": "private", "type": "model"}
    local = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert hub.files == local  # every file, byte for byte
    assert hub.card_checked
    assert f"Bearer {TOKEN}" in hub.auth  # the token was used ...
    text = capsys.readouterr()
    logs = caplog.text + text.out + text.err
    assert "pushed to" in text.out and TOKEN not in logs  # ... and never shown
    assert all(TOKEN.encode() not in data for data in local.values())


@pytest.mark.parametrize("failure", ["no_token", "forbidden", "no_network"])
def test_push_failures_are_clear_and_keep_the_export(
    run, tmp_path, fake_hub, monkeypatch, capsys, caplog, failure
):
    import httpx2

    from gcpo_lite.cli import main

    caplog.set_level(logging.DEBUG)
    if failure == "no_token":
        monkeypatch.delenv("HF_TOKEN")
        monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
        fake_hub(FakeHub())
    elif failure == "forbidden":
        fake_hub(FakeHub(create_status=403))
    else:

        def offline(request):
            raise httpx2.ConnectError("Name or service not known", request=request)

        fake_hub(offline)
    out = tmp_path / "kept"
    rc = main(["export", str(run[0]), "--output-dir", str(out), "--push-to-hub", "someone-else/taken"])
    err = capsys.readouterr().err
    assert rc == 2
    expect = {
        "no_token": "no Hugging Face token",
        "forbidden": "may not write to someone-else/taken",
        "no_network": "could not reach the Hub",
    }[failure]
    assert expect in err and "export in" in err
    assert TOKEN not in err + caplog.text
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()


def test_push_error_never_contains_the_token(tmp_path, fake_hub):
    """Even when the server echoes the token back in its error body."""
    import httpx2

    fake_hub(lambda request: httpx2.Response(500, json={"error": f"bad header {TOKEN}"}))
    with pytest.raises(PushError) as e:
        push_to_hub(tmp_path, "me/x")
    assert TOKEN not in str(e.value)
