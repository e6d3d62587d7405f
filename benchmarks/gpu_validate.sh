#!/usr/bin/env bash
# One-shot GPU validation of the native kernels, < 8 min on one GPU (H100/H200/A100 class):
#   1. JIT-build the extension with its CUDA kernels (needs an nvcc matching torch's CUDA),
#   2. run the CUDA kernel tests (the CPU ones too: they are fast),
#   3. benchmark fused/chunked vs eager (and Liger-Kernel's Triton GRPO loss when importable).
# Results: stdout, and the markdown table in $OUT_DIR/gpu_bench.md (default ./gpu_validate_out).
#   bash benchmarks/gpu_validate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-${OUT:-gpu_validate_out}}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$SECONDS
stamp() { echo "== [$((SECONDS - start)) s] $*"; }

stamp "environment"
python - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu_validate.sh needs a CUDA GPU (torch.cuda.is_available() is False)"
print(f"torch {torch.__version__} CUDA {torch.version.cuda} on {torch.cuda.get_device_name()}")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

stamp "build (JIT, cached; prints one status line)"
python -c "from gcpo_lite.kernels import _ext; line = _ext.build(verbose=False); print(line); assert 'CUDA kernels: yes' in line, line"

stamp "kernel tests (CUDA cases included)"
timeout 240 python -m pytest -q -x tests/kernels/test_native.py tests/kernels/test_backend.py 2>&1 | tee "$OUT_DIR/tests.txt" | tail -15

stamp "benchmark"
timeout 300 python benchmarks/bench_logprob_loss.py --device cuda --sizes 512,2048,8192 --repeat 5 \
  --cases eager-lsm,eager-lse,fused,fused-inplace,hidden-eager,hidden-chunked,liger \
  --write-md "$OUT_DIR/gpu_bench.md" 2>&1 | tee "$OUT_DIR/bench.txt" | tail -40
stamp "done; results in $OUT_DIR/"
