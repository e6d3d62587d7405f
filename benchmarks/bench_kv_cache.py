"""The sampler with transformers' DynamicCache vs gcpo-lite's preallocated KV cache (gcpo_lite/kv_cache.py).

    python benchmarks/bench_kv_cache.py [--size h256] [--lengths 48,192,512] [--rows 64] [--repeats 3]
        [--threads 2] [--work-dir DIR] [--write-md docs/BENCHMARKS.md]

One process loads a random 4-bit + LoRA Qwen2 of bench_vs_trl.py's --size (written once to --work-dir) with
its dequantized base and merged sampling weights, as the trainer runs it. It then samples --rows
completions (16 prompts x 4) of exactly each length (no EOS), alternating the two caches --repeats times
with the same seed. Both give the same completions (checked on every pair). The table gives the median time
per rollout and the ratio.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_md import report  # noqa: E402  (this folder)

SECTION = "## Sampler KV cache: DynamicCache vs preallocated (issue 12)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="h256")
    p.add_argument("--lengths", default="48,192,512")
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/gcpo_bench_kv"))
    p.add_argument("--write-md", type=Path)
    a = p.parse_args()

    import torch
    from bench_vs_trl import make_model
    from transformers import DynamicCache

    from gcpo_lite.config import from_dict
    from gcpo_lite.demo.embedded_model import prepare_model
    from gcpo_lite.models import dequantized_base
    from gcpo_lite.models.loading import load_policy
    from gcpo_lite.policy import kv_cache
    from gcpo_lite.rollout.sampler import sample_completions

    torch.set_num_threads(a.threads)
    model_dir = a.work_dir / a.size
    if not (model_dir / "config.json").is_file():
        make_model(model_dir, a.size)
    cfg = from_dict(
        {"model": {"name": str(model_dir), "gradient_checkpointing": False, "compute_dtype": "float32"}}
    )
    model, tok = load_policy(cfg, prepare_model(cfg.model.name), torch.device("cpu"))
    dequantized_base.attach(model, len(dequantized_base.decoder_layers(model)), torch.float32)
    prompts = [tok.apply_chat_template([{"role": "user", "content": f"{i}+{3 * i}="}], add_generation_prompt=True,
                                       tokenize=True) for i in range(a.rows // 4)]  # fmt: skip
    prompts = [list(q if isinstance(q, list) else q["input_ids"]) for q in prompts for _ in range(4)]
    preallocated = kv_cache.PreallocatedCache

    def rollout(cache_class, length: int):
        kv_cache.PreallocatedCache = cache_class
        start = time.perf_counter()
        with dequantized_base.merged_lora(model):
            out = sample_completions(model, prompts, max_new_tokens=length, temperature=1.0, top_p=1.0,
                                     eos_ids={10**9}, pad_id=tok.pad_token_id,
                                     generator=torch.Generator().manual_seed(0))  # fmt: skip
        return time.perf_counter() - start, out.completions

    rows = []
    for length in map(int, a.lengths.split(",")):
        times = {"DynamicCache": [], "preallocated": []}
        for _ in range(a.repeats):
            t_dyn, c_dyn = rollout(lambda capacity: DynamicCache(), length)
            t_pre, c_pre = rollout(preallocated, length)
            assert c_dyn == c_pre, "the two caches sampled different completions"
            times["DynamicCache"].append(t_dyn)
            times["preallocated"].append(t_pre)
        dyn, pre = statistics.median(times["DynamicCache"]), statistics.median(times["preallocated"])
        rows.append(f"| {length} | {dyn:.3f} | {pre:.3f} | {pre / dyn:.2f} |")
        print(rows[-1], flush=True)
    kv_cache.PreallocatedCache = preallocated
    text = "\n".join(
        [
            SECTION,
            "",
            f"Command: `python benchmarks/bench_kv_cache.py {' '.join(sys.argv[1:])}`",
            "",
            f"Machine: {platform.machine()}, {platform.platform()}, {a.threads} torch threads. Model: random "
            f"{a.size} of bench_vs_trl.py, 4-bit NF4 + LoRA r=16, dequantized base and merged sampling weights. "
            f"{a.rows} rows (16 prompts x 4), every row sampled to the full length, {a.repeats} alternating "
            "repeats; identical completions from both caches on every pair.",
            "",
            "| completion tokens | DynamicCache (s) | preallocated (s) | ratio |",
            "|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    return report(text, a.write_md, SECTION)


if __name__ == "__main__":
    sys.exit(main())
