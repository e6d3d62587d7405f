#!/usr/bin/env bash
# Compile-check every CUDA source under csrc/ with nvcc for sm_80 and sm_90. Needs no GPU.
#  1. header-only kernels (*.cuh): .ci/cuda_headers_check.cu includes and instantiates them (seconds);
#     a .cuh it does not include fails the check.
#  2. host/binding files (*.cu): against the headers of the torch CUDA wheel matching nvcc
#     (torch 2.14.1+cu130 for nvcc 13.0), downloaded once (~550 MB) and unpacked (include/ only,
#     ~60 MB) under $GCPO_LITE_CI_CACHE (default ~/.cache/gcpo-lite-ci); ~1.5 min on 2 cores.
# Exits non-zero when a kernel does not compile or nvcc is missing. Env: NVCC, TORCH_CUDA_WHEEL_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
CACHE=${GCPO_LITE_CI_CACHE:-$HOME/.cache/gcpo-lite-ci}
TORCH_VER=${TORCH_CUDA_WHEEL_VERSION:-2.14.1}
ARCHS=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90)
# torch's own nvcc flags (what torch.utils.cpp_extension adds to every .cu it builds: no implicit half/bf16
# operators or conversions), so a kernel that only compiles without them fails here, not on a user's machine.
mapfile -t TORCH_NVCC < <(python -c "from torch.utils.cpp_extension import COMMON_NVCC_FLAGS as f; print(*f, sep='\n')")
[ "${#TORCH_NVCC[@]}" -gt 0 ] || { echo "check_cuda_compile: FAIL: could not read torch's COMMON_NVCC_FLAGS"; exit 1; }
COMMON=(-std=c++20 -O3 "${TORCH_NVCC[@]}" -Xcompiler -fPIC "${ARCHS[@]}")
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

[ -x "$NVCC" ] || { echo "check_cuda_compile: FAIL: nvcc not found (set NVCC)"; exit 1; }
echo "check_cuda_compile: $("$NVCC" --version | grep -o 'release [0-9.]*'), archs sm_80 sm_90, torch flags: ${TORCH_NVCC[*]}"

# 1. header-only kernels
mapfile -t headers < <(find csrc -name '*.cuh' | sort)
for h in "${headers[@]}"; do
  grep -q "include \"../${h}\"" .ci/cuda_headers_check.cu || {
    echo "check_cuda_compile: FAIL: ${h} is not included by .ci/cuda_headers_check.cu (add it and instantiate its kernels)"
    exit 1; }
done
t0=$SECONDS
"$NVCC" "${COMMON[@]}" -c .ci/cuda_headers_check.cu -o "$OUT/headers.o"
echo "check_cuda_compile: OK   ${headers[*]} (via .ci/cuda_headers_check.cu, $((SECONDS - t0)) s)"

# 2. host/binding .cu files against the torch CUDA wheel's headers
inc="$CACHE/torch-$TORCH_VER/torch/include"
if [ ! -f "$inc/torch/library.h" ]; then
  echo "check_cuda_compile: fetching torch==$TORCH_VER headers into $CACHE (once)"
  mkdir -p "$CACHE/wheels"
  whl=$(ls "$CACHE"/wheels/torch-"$TORCH_VER"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$whl" ]; then
    python -m pip download --quiet --no-deps "torch==$TORCH_VER" -d "$CACHE/wheels"
    whl=$(ls "$CACHE"/wheels/torch-"$TORCH_VER"-*.whl | head -1)
  fi
  rm -rf "$CACHE/torch-$TORCH_VER"
  python - "$whl" "$CACHE/torch-$TORCH_VER" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("torch/include/") or n == "torch/version.py"])
PY
fi
grep -q "cuda: Optional\[str\] = '" "$CACHE/torch-$TORCH_VER/torch/version.py" \
  || { echo "check_cuda_compile: FAIL: torch $TORCH_VER headers in $CACHE are not from a CUDA wheel"; exit 1; }
mapfile -t units < <(find csrc -name '*.cu' | sort)
for cu in "${units[@]}"; do
  t0=$SECONDS
  "$NVCC" "${COMMON[@]}" -DTORCH_EXTENSION_NAME=gcpo_lite_ops -Icsrc -isystem "$inc" \
    -isystem "$inc/torch/csrc/api/include" -c "$cu" -o "$OUT/$(basename "$cu").o"
  echo "check_cuda_compile: OK   $cu (torch $TORCH_VER headers, $((SECONDS - t0)) s)"
done
echo "check_cuda_compile: all ${#headers[@]} headers and ${#units[@]} host files compile for sm_80 and sm_90"
