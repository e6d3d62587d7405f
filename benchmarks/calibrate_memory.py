"""Calibrate gcpo_lite.memory.model against measured memory, per component.

    python benchmarks/calibrate_memory.py                    # CPU: tiny + mid random Qwen2 models (~2 min)
    python benchmarks/calibrate_memory.py --device cuda --sizes tiny,mid,qwen2.5-1.5b   # GPU: max_memory_allocated
    python benchmarks/calibrate_memory.py --sizes mid --json out.json

Each model is a random Qwen2 written to a temp dir and loaded the way the trainer loads it
(gcpo_lite.models.loading: 4-bit NF4 + double quant, peft LoRA, gradient checkpointing), then measured
around each phase with the trainer's own code (rollout.sample_completions,
logprobs.completion_logprobs):

  weights / lora_params / optimizer_state   memory held after loading / wrapping / the first step
  generation    peak of one sample_completions call: g sequences, P prompt + C completion tokens
  activations   peak of forward + backward through the decoder (+ LoRA grads), checkpointing on and off
  logits_*      peak of token_logprobs_from_hidden forward + backward over the completion tokens, per
                kernels backend (reference = PyTorch chunked; native = compiled ops, when built)
  train_step    peak of a whole micro-step (decoder + log-probs + backward) on the live backend

CPU measures resident memory: each size runs in a fresh process with glibc told to serve every
allocation above 128 KiB by mmap (so a free really returns memory), the peak is VmHWM after
resetting it through /proc/self/clear_refs, minus the resident memory just before the phase.
Memory held by tensors (weights, LoRA, optimizer state) is compared with the bytes of those
tensors, because on CPU the resident size also counts checkpoint pages safetensors left mapped.
CUDA measures torch.cuda.max_memory_allocated minus memory_allocated before the phase.
Each row prints predicted, measured and predicted/measured; the check is |ratio - 1| <= 25%.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {  # random Qwen2 models: architecture + run shape measured
    "tiny": dict(
        arch=dict(
            hidden_size=256,
            intermediate_size=704,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=8192,
        ),
        prompt=64,
        completion=64,
        gen_batch=16,
        micro_batch=8,
        r=8,
        chunk=128,
    ),
    "mid": dict(
        arch=dict(
            hidden_size=1024,
            intermediate_size=2816,
            num_hidden_layers=8,
            num_attention_heads=16,
            num_key_value_heads=4,
            vocab_size=151936,
        ),
        prompt=128,
        completion=128,
        gen_batch=8,
        micro_batch=4,
        r=16,
        chunk=256,
    ),
    # the target, for GPUs: Qwen2.5-1.5B's shape (random weights), G=8, 512-token completions
    "qwen2.5-1.5b": dict(
        arch=dict(
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            vocab_size=151936,
        ),
        prompt=256,
        completion=512,
        gen_batch=8,
        micro_batch=2,
        r=16,
        chunk=512,
        save_dtype="bfloat16",
    ),
}
WARMUP_ARCH = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    vocab_size=256,
)
TOLERANCE = 0.25


# ---------------------------------------------------------------- measuring (child process)


class Meter:
    """Current / peak bytes since `mark()`: resident memory on CPU, the torch allocator on CUDA."""

    def __init__(self, device):
        import torch

        self.torch, self.cuda = torch, device.type == "cuda"
        self._libc = ctypes.CDLL("libc.so.6") if not self.cuda else None

    def _status(self, key: str) -> int:
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"{key} missing from /proc/self/status")

    def current(self) -> int:
        gc.collect()
        if self.cuda:
            self.torch.cuda.synchronize()
            return self.torch.cuda.memory_allocated()
        self._libc.malloc_trim(0)
        return self._status("VmRSS:")

    def mark(self) -> int:
        now = self.current()
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        return now

    def peak(self) -> int:
        if self.cuda:
            self.torch.cuda.synchronize()
            return self.torch.cuda.max_memory_allocated()
        return self._status("VmHWM:")


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def quantized_model_bytes(model) -> int:
    """Exact bytes held by parameters, buffers and bitsandbytes quant states (tied tensors once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
        qs = getattr(t, "quant_state", None)
        if qs is not None:
            for x in (
                qs.absmax,
                qs.code,
                getattr(getattr(qs, "state2", None), "absmax", None),
                getattr(getattr(qs, "state2", None), "code", None),
                getattr(qs, "offset", None),
            ):
                if x is not None and hasattr(x, "numel"):
                    total += x.numel() * x.element_size()
    return total


def set_checkpointing(model, on: bool) -> None:
    """Gradient checkpointing on the peft-wrapped model's base (transformers 5 names, then 4.x)."""
    base = model.get_base_model()
    if not on:
        (getattr(base, "activation_checkpointing_disable", None) or base.gradient_checkpointing_disable)()
    elif hasattr(base, "activation_checkpointing_enable"):
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def child(spec: dict) -> dict:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    device = torch.device(spec["device"])
    meter = Meter(device)
    if spec.get("warmup_dir"):  # one pass on a 1-layer model: lazy imports, thread pools, kernel caches
        run_phases(
            spec["warmup_dir"],
            dict(spec, arch=WARMUP_ARCH, prompt=8, completion=4, gen_batch=2, micro_batch=2, r=4, chunk=8),
            device,
            Meter(device),
        )
    return run_phases(spec["model_dir"], spec, device, meter)


def run_phases(model_dir: str, spec: dict, device, meter: Meter) -> dict:
    import torch

    from gcpo_lite import kernels
    from gcpo_lite.config import LoraConfig, ModelConfig
    from gcpo_lite.data.collate import pad_batch
    from gcpo_lite.kernels import token_logprobs_from_hidden
    from gcpo_lite.models.loading import add_lora, decoder_and_head, load_base_model
    from gcpo_lite.policy.logprobs import completion_logprobs
    from gcpo_lite.rollout.sampler import sample_completions

    measured, exact = {}, {}
    if device.type == "cuda":
        torch.ones(64, 64, device=device) @ torch.ones(64, 64, device=device)  # context + cuBLAS
        free, total = torch.cuda.mem_get_info()
        measured["runtime"] = total - free - torch.cuda.memory_reserved()
    else:
        measured["runtime"] = meter.current()

    mcfg = ModelConfig(quantize=True, compute_dtype=spec["compute_dtype"], gradient_checkpointing=True)
    before = meter.mark()
    base = load_base_model(model_dir, mcfg, device)
    with torch.no_grad():  # on CPU safetensors weights stay file-mapped until read: read them all now
        for t in list(base.parameters()) + list(base.buffers()):
            t.reshape(-1)[:: max(1, 4096 // t.element_size())].float().sum()
    measured["weights"] = meter.current() - before
    exact["weights"] = quantized_model_bytes(base)
    before = meter.current()
    model = add_lora(base, LoraConfig(r=spec["r"]), gradient_checkpointing=False)
    set_checkpointing(model, True)
    params = [p for p in model.parameters() if p.requires_grad]
    measured["lora_params"] = meter.current() - before
    exact["lora_params"] = tensor_bytes(params)
    opt = torch.optim.AdamW(params, lr=1e-6)
    for p in params:
        p.grad = torch.zeros_like(p)
    before = meter.current()
    opt.step()
    measured["optimizer_state"] = meter.current() - before
    exact["optimizer_state"] = tensor_bytes(t for s in opt.state.values() for t in s.values() if t.dim())
    for p in params:
        p.grad = None

    V, P, C = spec["arch"]["vocab_size"], spec["prompt"], spec["completion"]
    g, m = spec["gen_batch"], spec["micro_batch"]
    stop = V - 1  # an EOS id that is also suppressed: every sequence runs to C tokens
    prompts = torch.randint(0, V - 2, (max(g, m), P)).tolist()

    before = meter.mark()
    out = sample_completions(
        model,
        prompts[:g],
        max_new_tokens=C,
        temperature=1.0,
        top_p=1.0,
        eos_ids={stop},
        pad_id=V - 2,
        suppress_ids=[stop],
    )
    measured["generation"] = meter.peak() - before
    assert all(len(c) == C for c in out.completions)
    completions = (out.completions * (m // g + 1))[:m]
    suppress = torch.tensor([stop], device=device)

    model.train()
    rows = pad_batch(prompts[:m], completions, V - 2, device)
    decoder, head = decoder_and_head(model)
    for gc_on in (True, False):
        set_checkpointing(model, gc_on)
        before = meter.mark()
        ids = torch.cat([rows.prompt_ids, rows.completion_ids], 1)
        mask = torch.cat([rows.prompt_mask, rows.completion_mask], 1)
        hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        hidden[:, P - 1 : -1].float().pow(2).mean().backward()
        del hidden
        measured["activations_gc" if gc_on else "activations_nogc"] = meter.peak() - before
        for p in params:
            p.grad = None
    set_checkpointing(model, True)

    dtype = head.weight.dtype
    live = kernels.active_backend()  # what the trainer would use ("auto")
    backends = ["reference"] + (["native"] if live == "native" else [])
    tgt = rows.completion_ids.reshape(-1)
    for backend in backends:
        kernels.set_backend(backend)
        h = torch.randn(m * C, spec["arch"]["hidden_size"], device=device, dtype=dtype, requires_grad=True)
        token_logprobs_from_hidden(
            h[:4], head.weight, tgt[:4], 1.0, chunk_size=2, suppress_ids=suppress
        ).sum().backward()
        h.grad = None  # (warm-up above: first-call allocations of the backend)
        before = meter.mark()
        lp = token_logprobs_from_hidden(
            h, head.weight, tgt, 1.0, chunk_size=spec["chunk"], suppress_ids=suppress
        )
        lp.sum().backward()
        del lp
        measured[f"logits_{backend}"] = meter.peak() - before
        del h
    kernels.set_backend("auto")

    before = meter.mark()
    lp = completion_logprobs(model, rows, temperature=1.0, suppress_ids=suppress, chunk_size=spec["chunk"])
    lp.sum().backward()
    del lp
    measured["train_step"] = meter.peak() - before

    shape_info = {
        "prompt": P,
        "completion": C,
        "gen_batch": g,
        "micro_batch": m,
        "r": spec["r"],
        "chunk": spec["chunk"],
        "dtype": str(dtype),
        "device": device.type,
        "arch": spec["arch"],
        "kernels": live,
        "backends": backends,
    }
    return {"predicted": predict(shape_info), "measured": measured, "exact": exact, "shape": shape_info}


def predict(info: dict) -> dict:
    """The memory model's figure for every measured component of one calibration size."""
    from gcpo_lite.memory import model as mm
    from gcpo_lite.memory.architectures import from_hf_config

    P, C, g, m, chunk = (
        info["prompt"],
        info["completion"],
        info["gen_batch"],
        info["micro_batch"],
        info["chunk"],
    )
    arch = from_hf_config({**info["arch"], "model_type": "qwen2", "tie_word_embeddings": True})
    shape = mm.RunShape(
        prompt_tokens=P,
        completion_tokens=C,
        lora_r=info["r"],
        compute_dtype=info["dtype"].split(".")[-1],
        device=info["device"],
        grad_accumulation=False,
        logprob_backend=info["kernels"],
    )
    w = mm.weight_bytes(arch, shape)
    lora = mm.lora_state_bytes(arch, shape)
    gen = mm.generation_bytes(arch, shape, g)
    tr_gc = mm.training_bytes(arch, shape, m, chunk)
    tr_nogc = mm.training_bytes(arch, mm.with_changes(shape, gradient_checkpointing=False), m, chunk)
    return {
        "runtime": mm.runtime_bytes(shape),
        "weights": w["weights_4bit"] + w["weights_unquantized"],
        "lora_params": lora["lora_params"],
        "optimizer_state": lora["optimizer_state"],
        "generation": sum(gen.values()),
        # decoder alone: saved activations + one layer's backward + LoRA grads (no log-prob kernel)
        "activations_gc": tr_gc["activations"] + tr_gc["layer_backward"] + tr_gc["lora_grads"],
        "activations_nogc": tr_nogc["activations"] + tr_nogc["layer_backward"] + tr_nogc["lora_grads"],
        **{
            f"logits_{b}": mm.logits_bytes(arch, mm.with_changes(shape, logprob_backend=b), m, chunk)
            for b in info["backends"]
        },
        "train_step": mm.training_phase_bytes(tr_gc),
    }


# ---------------------------------------------------------------- driver (parent process)


def make_model_dir(arch: dict, root: Path, save_dtype: str = "float32") -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    d = root / ("qwen2-" + "-".join(str(v) for v in arch.values()))
    if not (d / "config.json").is_file():
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(Qwen2Config(**arch, tie_word_embeddings=True, max_position_embeddings=4096))
        model.to(getattr(torch, save_dtype)).save_pretrained(d)
    return d


def run_size(name: str, device: str, compute_dtype: str, root: Path, threads: int | None) -> dict:
    spec = dict(SIZES[name], device=device, compute_dtype=compute_dtype, threads=threads)
    spec["model_dir"] = str(make_model_dir(spec["arch"], root, spec.get("save_dtype", "float32")))
    spec["warmup_dir"] = str(make_model_dir(WARMUP_ARCH, root))
    env = dict(
        os.environ,
        MALLOC_MMAP_THRESHOLD_="131072",
        MALLOC_TRIM_THRESHOLD_="131072",
        MALLOC_ARENA_MAX="1",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"calibration child for {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(name: str, res: dict) -> list[str]:
    lines, worst = [], 0.0
    lines.append(f"{name}: {res['shape']}")
    lines.append(f"  {'component':<18}{'predicted MiB':>14}{'measured MiB':>14}{'pred/meas':>10}  check")
    cpu = res["shape"]["device"] == "cpu"
    for comp, pred in res["predicted"].items():
        meas = res["measured"].get(comp)
        extra = ""
        if (
            cpu and comp in res["exact"]
        ):  # held tensors: count them (RSS also has file-mapped checkpoint pages)
            meas, extra = (
                res["exact"][comp],
                f"  (tensor bytes; RSS grew {res['measured'][comp] / 2**20:.1f} MiB)",
            )
        elif comp in res["exact"]:
            extra = f"  (tensor bytes {res['exact'][comp] / 2**20:.1f} MiB)"
        if meas is None or meas <= 0:
            continue
        ratio = pred / meas
        ok = abs(ratio - 1) <= TOLERANCE
        if comp != "runtime":
            worst = max(worst, abs(ratio - 1))
        lines.append(
            f"  {comp:<18}{pred / 2**20:>14.1f}{meas / 2**20:>14.1f}{ratio:>10.2f}  "
            f"{'ok' if ok else 'OFF'}{extra}"
        )
    lines.append(f"  worst deviation (excluding runtime): {worst:.0%}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--sizes", default="tiny,mid", help=f"comma list of {list(SIZES)}")
    ap.add_argument("--compute-dtype", default=None, help="default: float32 on cpu, bfloat16 on cuda")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the raw results here")
    ap.add_argument(
        "--report",
        default=None,
        metavar="JSON",
        help="re-print a saved --json run against the current memory model (no measuring)",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.report:
        for name, res in json.loads(Path(args.report).read_text()).items():
            res["shape"].setdefault("chunk", SIZES[name]["chunk"])
            res["shape"].setdefault(
                "kernels", "native" if "logits_native" in res["measured"] else "reference"
            )
            res["shape"].setdefault("backends", [k[7:] for k in res["measured"] if k.startswith("logits_")])
            res["predicted"] = predict(res["shape"])
            print("\n".join(report(name, res)))
        return 0
    dtype = args.compute_dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    results = {}
    with tempfile.TemporaryDirectory(prefix="gcpo-calib-") as tmp:
        for name in args.sizes.split(","):
            results[name] = run_size(name, args.device, dtype, Path(tmp), args.threads)
            print("\n".join(report(name, results[name])), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
