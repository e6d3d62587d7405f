"""Token log-probs + GCPO loss, forward + backward: native kernels vs eager PyTorch measured in the same run.

  python benchmarks/bench_logprob_loss.py                     # N in {512, 2048, 8192}, fp32 + bf16, CPU
  python benchmarks/bench_logprob_loss.py --quick             # N = 512 only
  python benchmarks/bench_logprob_loss.py --write-md docs/BENCHMARKS.md   # also (re)write our section there
  python benchmarks/bench_logprob_loss.py --device cuda --repeat 5        # GPU (benchmarks/gpu_validate.sh)

Cases (V = 151936, H = 1536, temperature 0.9, loss_type token_mean, token-level ratios, beta 0.04):
  eager-lsm      TRL-style: logits / T, log_softmax, gather, loss, backward        (baseline)
  eager-lse      TRL-style: logits / T, gather - logsumexp, loss, backward         (baseline)
  fused          native token_logprobs + native gcpo_loss, gradient in a new tensor
  fused-inplace  same, gradient written over the logits buffer
  hidden-eager   hidden @ W.T then eager-lsm (the full (N, V) logits exist)     (baseline for hidden)
  hidden-chunked native chunked token_logprobs_from_hidden + loss (at most chunk x V logits; its
                 peak extra = one chunk of logits + the (N, H) hidden gradient it returns)
  liger          (CUDA, when liger_kernel imports) Liger-Kernel's Triton GRPO loss on (B, T+1, V) logits
On CPU each case runs in its own subprocess (on CUDA in this process). CPU: peak extra memory = peak RSS
(VmHWM, reset via clear_refs
once the inputs exist) minus RSS with the inputs, on the first (cold) iteration. CUDA: peak minus
current torch.cuda allocated bytes after the inputs. Time = median of --repeat warm iterations. A case whose
estimated need exceeds the free RAM is skipped and reported as such.
Bandwidth: bytes the fused kernels must move (read logits twice, write the gradient once) over their
time, against a large tensor copy (read + write) measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bench_md import write_section  # noqa: E402  (this folder, first on sys.path when run as a script)

V, H, TEMP, T_PER_SEQ = 151936, 1536, 0.9, 256
LOSS_KW = dict(
    importance_sampling_level="token", epsilon_low=0.2, epsilon_high=0.28, beta=0.04, loss_type="token_mean"
)
CASES = ["eager-lsm", "eager-lse", "fused", "fused-inplace", "hidden-eager", "hidden-chunked"]  # default set
SECTION = "## Log-prob + loss kernels (issue 3)"


# ---- worker: one case in a fresh process ------------------------------------------------------------


def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _inputs(case: str, n: int, dtype: torch.dtype, device: str):
    g = torch.Generator(device=device).manual_seed(0)
    B = max(1, n // T_PER_SEQ)
    kw = dict(generator=g, device=device)
    d = {
        "ids": torch.randint(0, V, (n,), **kw),
        "old": -torch.rand(B, n // B, **kw) * 3,
        "adv": torch.randn(B, **kw),
        "ref": -torch.rand(B, n // B, **kw) * 3,
        "mask": torch.ones(B, n // B, dtype=torch.bool, device=device),
    }
    d["mask"][:, -7:] = False
    if case.startswith("hidden"):
        d["hidden"] = torch.randn(n, H, **kw).to(dtype)
        d["weight"] = (torch.randn(V, H, **kw) * 0.02).to(dtype)
    elif case == "liger":  # Liger drops the last position: logits (B, T + 1, V)
        d["logits"] = (torch.randn(B, n // B + 1, V, **kw) * 2).to(dtype)
    else:
        d["logits"] = (torch.randn(n, V, **kw) * 2).to(dtype)
    return d


def _step(case: str, d: dict, kernels, ref) -> None:
    B, T = d["old"].shape
    kw = dict(LOSS_KW, ref_per_token_logps=d["ref"])
    if case in ("eager-lsm", "eager-lse", "hidden-eager"):
        if case == "hidden-eager":
            h = d["hidden"].requires_grad_()
            logits = h @ d["weight"].t()  # (N, V)
        else:
            logits = d["logits"].requires_grad_()
        x = logits.float() / TEMP  # (N, V) fp32
        if case == "eager-lse":
            logp = x.gather(-1, d["ids"][:, None]).squeeze(-1) - torch.logsumexp(x, dim=-1)
        else:
            logp = torch.log_softmax(x, dim=-1).gather(-1, d["ids"][:, None]).squeeze(-1)
        loss, _ = ref.gcpo_loss(logp.view(B, T), d["old"], d["adv"], d["mask"], **kw)
    elif case in ("fused", "fused-inplace"):
        logits = d["logits"].requires_grad_()
        logp = kernels.token_logprobs(logits, d["ids"], TEMP, inplace_backward=case == "fused-inplace")
        loss, _ = kernels.gcpo_loss(logp.view(B, T), d["old"], d["adv"], d["mask"], **kw)
    elif case == "liger":
        from liger_kernel.transformers.grpo_loss import triton_grpo_loss

        logits = d["logits"].requires_grad_()
        loss, _ = triton_grpo_loss(
            logits,
            d["old"],
            d["ref"],
            d["ids"].view(B, T),
            d["adv"],
            d["mask"],
            temperature=TEMP,
            beta=kw["beta"],
            eps_low=kw["epsilon_low"],
            eps_high=kw["epsilon_high"],
            inplace=True,
            loss_type="bnpo",
            importance_sampling_level="token",
            reduce=True,
        )
    else:  # hidden-chunked
        h = d["hidden"].requires_grad_()
        logp = kernels.token_logprobs_from_hidden(h, d["weight"], d["ids"], TEMP)
        loss, _ = kernels.gcpo_loss(logp.view(B, T), d["old"], d["adv"], d["mask"], **kw)
    loss.backward()
    for k in ("logits", "hidden"):
        if k in d:
            d[k].grad = None


def worker(case: str, n: int, dtype_name: str, repeat: int, device: str) -> dict:
    import gcpo_lite.kernels as kernels
    from gcpo_lite.kernels import reference as ref

    dtype = getattr(torch, dtype_name)
    if case in ("fused", "fused-inplace", "hidden-chunked"):
        assert kernels.set_backend("native") == "native"
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    d = _inputs(case, n, dtype, device)
    sync()
    if cuda:
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _rss_bytes("VmRSS")
        _reset_peak()
    t0 = time.perf_counter()
    _step(case, d, kernels, ref)
    sync()
    cold = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if cuda else _rss_bytes("VmHWM")) - base
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _step(case, d, kernels, ref)
        sync()
        times.append(time.perf_counter() - t0)
    return {"time_s": statistics.median(times) if times else cold, "peak_extra_bytes": max(peak, 0)}


# ---- driver ---------------------------------------------------------------------------------------------


def copy_bandwidth(device: str) -> float:
    """bytes/s of a 1 GiB fp32 tensor copy (read + write counted)."""
    src = torch.randn(2**28, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(_timed(lambda: dst.copy_(src), device) for _ in range(5))
    return 2 * src.numel() * 4 / best


def _timed(fn, device: str) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def need_bytes(case: str, n: int, elem: int) -> float:
    """Rough peak (inputs + extras) to decide whether a case fits in RAM."""
    nv = n * V
    if case in ("eager-lsm", "eager-lse"):
        return nv * elem + 4 * nv * 4
    if case == "hidden-eager":
        return nv * elem * 2 + 4 * nv * 4
    if case in ("fused", "fused-inplace", "liger"):
        return 2 * nv * elem
    return 3 * 256 * 2**20 + V * H * elem


def mem_available(device: str) -> int:
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def run_case(case, n, dtype, repeat, timeout, device):
    if device == "cuda":  # in process: CUDA peak stats reset per case, and no per-case start-up cost
        try:
            return worker(case, n, dtype, repeat, device)
        except Exception as e:  # OOM or a failing third-party kernel: report it in the table
            return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
        finally:
            torch.cuda.empty_cache()
    cmd = [sys.executable, __file__, "--worker", case, str(n), dtype, str(repeat), device]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout > {timeout}s"}
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"rc {p.returncode}"]
        return {"error": "killed (out of memory?)" if p.returncode in (-9, 137) else tail[0][:200]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="512,2048,8192", help="comma-separated token counts N")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--repeat", type=int, default=2, help="warm iterations timed per case (median)")
    ap.add_argument(
        "--hidden-max-n", type=int, default=8192, help="skip hidden-* cases above this N (slow matmuls)"
    )
    ap.add_argument(
        "--hidden-timed-max-n",
        type=int,
        default=2048,
        help="above this N, hidden-* cases run one (cold) iteration: time then includes first-touch",
    )
    ap.add_argument("--timeout", type=int, default=1200)
    ap.add_argument("--quick", action="store_true", help="N = 512, repeat 1")
    ap.add_argument(
        "--write-md", default=None, help="replace our section of this markdown file with the results"
    )
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        case, n, dt, rep, dev = a.worker
        print(json.dumps(worker(case, int(n), dt, int(rep), dev)))
        return
    if a.quick:
        a.sizes, a.repeat = "512", 1
    import gcpo_lite.kernels as kernels

    print(kernels._ext.build(verbose=False), flush=True)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no GPU visible to torch")
    bw = copy_bandwidth(a.device)
    print(f"copy bandwidth: {bw / 1e9:.1f} GB/s (read + write)", flush=True)
    rows = []
    for dt in a.dtypes.split(","):
        elem = torch.empty((), dtype=getattr(torch, dt)).element_size()
        for n in map(int, a.sizes.split(",")):
            res = {}
            for case in a.cases.split(","):
                if case == "liger" and (a.device != "cuda" or not _liger_ok()):
                    res[case] = {"error": "skipped: needs CUDA and an importable liger_kernel"}
                elif case.startswith("hidden") and n > a.hidden_max_n:
                    res[case] = {"error": f"skipped (--hidden-max-n {a.hidden_max_n})"}
                elif need_bytes(case, n, elem) > 0.9 * mem_available(a.device):
                    res[case] = {
                        "error": f"skipped: needs ~{need_bytes(case, n, elem) / 2**30:.0f} GiB, "
                        f"{mem_available(a.device) / 2**30:.0f} GiB free"
                    }
                else:  # hidden cases above --hidden-timed-max-n: cold iteration only (minutes of matmul each)
                    slow = a.device == "cpu" and case.startswith("hidden") and n > a.hidden_timed_max_n
                    res[case] = run_case(case, n, dt, 0 if slow else a.repeat, a.timeout, a.device)
                print(f"{dt:9s} N={n:5d} {case:15s} {_fmt(res[case])}", flush=True)
            rows.append((dt, n, res, elem))
    table = render(rows, bw) + "\n\n" + targets(rows)
    print("\n" + table)
    if a.write_md:
        write_results(Path(a.write_md), table, "python " + " ".join(sys.argv), bw, a.device)


def _liger_ok() -> bool:
    try:
        from liger_kernel.transformers.grpo_loss import triton_grpo_loss  # noqa: F401

        return True
    except Exception:
        return False


def _fmt(r):
    if "error" in r:
        return r["error"]
    return f"{r['time_s'] * 1e3:9.1f} ms  peak extra {r['peak_extra_bytes'] / 2**20:8.0f} MiB"


def _ratio(a, b, key):
    if "error" in a or "error" in b or not b[key]:
        return "n/a"
    return f"{a[key] / b[key]:.2f}"


def render(rows, bw) -> str:
    out = [
        "| dtype | N | case | time ms | peak extra MiB | time / eager-lsm | mem / eager-lsm | GB/s (% of copy) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dt, n, res, elem in rows:
        for case, r in res.items():
            base = res.get("hidden-eager" if case.startswith("hidden") else "eager-lsm", {"error": ""})
            if "error" in r:
                out.append(f"| {dt} | {n} | {case} | {r['error']} | | | | |")
                continue
            gbs = ""
            if case.startswith("fused") or case == "liger":
                moved = 3 * n * V * elem  # fwd reads logits, bwd reads them and writes the gradient
                gbs = f"{moved / r['time_s'] / 1e9:.1f} ({100 * moved / r['time_s'] / bw:.0f}%)"
            ref_t = _ratio(r, base, "time_s") if case not in ("eager-lsm", "hidden-eager") else "1"
            ref_m = _ratio(r, base, "peak_extra_bytes") if case not in ("eager-lsm", "hidden-eager") else "1"
            out.append(
                f"| {dt} | {n} | {case} | {r['time_s'] * 1e3:.0f} | {r['peak_extra_bytes'] / 2**20:.0f} | "
                f"{ref_t} | {ref_m} | {gbs} |"
            )
    return "\n".join(out)


def targets(rows) -> str:
    """The issue's CPU targets, checked against this run's figures."""
    lines = [
        "Targets (issue 3): fused fwd+bwd time <= 0.5x eager-lsm; peak extra memory <= 10% of eager with",
        "the in-place gradient, <= 55% without; hidden-chunked peak extra independent of N.",
        "",
    ]
    for dt, n, res, _ in rows:
        base = res.get("eager-lsm", {"error": ""})
        for case, limit_mem in (("fused", 0.55), ("fused-inplace", 0.10)):
            r = res.get(case)
            if r is None or "error" in r or "error" in base:
                continue
            t, m = r["time_s"] / base["time_s"], r["peak_extra_bytes"] / max(base["peak_extra_bytes"], 1)
            ok = "met" if t <= 0.5 and m <= limit_mem else "MISSED"
            lines.append(f"- {dt} N={n} {case}: time {t:.2f}x, memory {100 * m:.1f}% -> {ok}")
    for dt in dict.fromkeys(r[0] for r in rows):
        peaks = [(n, res["hidden-chunked"]) for d, n, res, _ in rows if d == dt and "hidden-chunked" in res]
        peaks = [(n, r["peak_extra_bytes"]) for n, r in peaks if "error" not in r]
        if peaks:
            desc = ", ".join(f"N={n}: {b / 2**20:.0f} MiB" for n, b in peaks)
            lines.append(f"- {dt} hidden-chunked peak extra: {desc} (one chunk of logits + the (N, H) grad)")
    return "\n".join(lines)


def write_results(path: Path, table: str, cmd: str, bw: float, device: str) -> None:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    if device == "cuda":
        cpu = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), host {cpu}"
    body = (
        f"{SECTION}\n\nMachine: {cpu}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, torch {torch.__version__}, "
        f"copy bandwidth {bw / 1e9:.1f} GB/s.\nCommand: `{cmd}`\n\n{table}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_section(path, SECTION, body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
