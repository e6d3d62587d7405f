"""One training micro-step, forward + backward through the LoRA policy: the fused op against the composition.

    python benchmarks/bench_fused_step.py [--hidden 256] [--vocab 32768] [--rows 8] [--tokens 128] [--repeat 7]

fused      logprobs.completion_loss: hidden states -> kernels.gcpo_loss_from_hidden -> loss (the trainer's
           default, train.fused_loss=true)
composed   logprobs.completion_logprobs, then kernels.gcpo_loss (train.fused_loss=false)
Both run on the same random Qwen2-shaped model with LoRA on every projection, in this process, alternating,
with the live kernel backend (native when it builds). Prints the median time of each, their ratio, and the
largest difference in loss and LoRA gradients between the two.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gcpo_lite import kernels  # noqa: E402
from gcpo_lite.data.collate import pad_batch  # noqa: E402
from gcpo_lite.policy.logprobs import completion_logprobs, completion_loss  # noqa: E402


def build(hidden: int, vocab: int):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=4,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(cfg)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    for p in model.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.02)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = build(a.hidden, a.vocab).train()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, a.vocab, (32,), generator=g).tolist() for _ in range(a.rows)]
    lengths = [a.tokens - (7 * i) % (a.tokens // 2) for i in range(a.rows)]  # uneven: padding
    completions = [torch.randint(0, a.vocab, (n,), generator=g).tolist() for n in lengths]
    rows = pad_batch(prompts, completions, 0, torch.device("cpu"))
    adv = torch.randn(a.rows, generator=g)
    kw = dict(
        importance_sampling_level="sequence", epsilon_low=3e-4, epsilon_high=4e-4, normalizer=float(a.rows)
    )
    params = [p for p in model.parameters() if p.requires_grad]

    def fused():
        loss, _ = completion_loss(model, rows, None, adv, temperature=0.9, **kw)
        return loss

    def composed():
        lp = completion_logprobs(model, rows, temperature=0.9)
        loss, _ = kernels.gcpo_loss(lp, lp.detach(), adv, rows.completion_mask, **kw)
        return loss

    def run(fn):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss = fn()
        loss.backward()
        return time.perf_counter() - t0, loss.item(), [p.grad.clone() for p in params]

    times = {"fused": [], "composed": []}
    run(fused), run(composed)  # warm-up (and the native build, when it compiles now)
    for _ in range(a.repeat):
        for name, fn in (("fused", fused), ("composed", composed)):
            times[name].append(run(fn)[0])
    _, lf, gf = run(fused)
    _, lc, gc = run(composed)
    grad_diff = max(float((x - y).abs().max() / y.abs().max().clamp(min=1e-30)) for x, y in zip(gf, gc))
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, kernels {kernels.active_backend()}"
    )
    print(
        f"model: hidden {a.hidden}, vocab {a.vocab}, 4 layers, LoRA r=16; {a.rows} rows, {sum(lengths)} "
        f"completion tokens"
    )
    print(f"fused    {med['fused']:8.1f} ms (median of {a.repeat})")
    print(f"composed {med['composed']:8.1f} ms")
    print(f"fused / composed = {med['fused'] / med['composed']:.3f}")
    print(
        f"loss difference {abs(lf - lc):.2e}, largest LoRA gradient difference (relative to its tensor's max) "
        f"{grad_diff:.2e}"
    )


if __name__ == "__main__":
    main()
