// CUDA kernels for token log-probs from logits. Header-only, plain pointers; the host code with the
// checks and launches is logprobs_cuda.cu. Accumulation in fp32 (fp64 for fp64 logits).
//
// Forward: one block per row. Each thread walks its strided share of the vocab once, keeping an
// online (max, sum of exp(x - max)) pair; the pairs merge across warps -> lse. One pass over memory.
// The pair arithmetic (push, merge) is ../lse_math.h, shared with a host-compiled test: -inf entries
// (masked or padded vocab, fp16 underflow) add nothing and infinities are never subtracted from each other.
// Token ids are checked on the device (CUDA_KERNEL_ASSERT): an id outside [0, V) stops the kernel with an
// assertion instead of reading another row.
// Backward: a 2-D grid of (vocab block, row); every element is independent:
//   grad[v] = g * scale * (onehot(v == id) - exp(x[v] * scale - lse)), 0 at suppressed ids,
// which may overwrite the logits in place (each thread reads its element before writing it).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../lse_math.h"

#ifndef CUDA_KERNEL_ASSERT  // torch's (always on, also with NDEBUG) inside the extension; plain assert elsewhere
#include <cassert>
#define CUDA_KERNEL_ASSERT(cond) assert(cond)
#endif

namespace gcpo_lite {
namespace cuda {

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_acc(float x);
template <> __device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <typename T> __device__ __forceinline__ T from_acc(double x) { return T(x); }

__device__ __forceinline__ float exp_acc(float x) { return expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }
__device__ __forceinline__ float log_acc(float x) { return logf(x); }
__device__ __forceinline__ double log_acc(double x) { return log(x); }

using lse::MaxSum;  // (max, sum of exp(x - max)); lse::merge is associative, identity lse::empty()

template <typename acc_t>
__device__ __forceinline__ MaxSum<acc_t> warp_merge(MaxSum<acc_t> v) {
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum<acc_t> w{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = lse::merge(v, w);
  }
  return v;
}

// logits (N, V) row stride ld; ids (N,); supp_mask (V,) 1 = suppressed, or nullptr -> logp, lse (N,)
template <typename scalar_t, int BLOCK>
__global__ void __launch_bounds__(BLOCK) logprobs_fwd_kernel(
    const scalar_t* __restrict__ logits, int64_t ld, const int64_t* __restrict__ ids,
    const uint8_t* __restrict__ supp_mask, typename AccOf<scalar_t>::type scale, int64_t N, int64_t V,
    typename AccOf<scalar_t>::type* __restrict__ logp, typename AccOf<scalar_t>::type* __restrict__ lse) {
  using acc_t = typename AccOf<scalar_t>::type;
  static_assert(BLOCK % 32 == 0 && BLOCK >= 32 && BLOCK <= 1024, "BLOCK: whole warps, at most 1024 threads");
  constexpr int WARPS = BLOCK / 32;
  static_assert(WARPS <= 32, "the second merge stage is one warp: at most 32 warps");
  __shared__ acc_t sm_m[WARPS], sm_s[WARPS];
  const acc_t neg_inf = -INFINITY;
  for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
    const scalar_t* row = logits + i * ld;
    MaxSum<acc_t> ms = lse::empty<acc_t>();
#pragma unroll 4
    for (int64_t v = threadIdx.x; v < V; v += BLOCK) {
      if (supp_mask != nullptr && supp_mask[v]) continue;
      ms = lse::push(ms, acc_t(to_acc(row[v]) * scale));
    }
    ms = warp_merge(ms);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) { sm_m[warp] = ms.m; sm_s[warp] = ms.s; }
    __syncthreads();
    if (warp == 0) {
      ms = lane < WARPS ? MaxSum<acc_t>{sm_m[lane], sm_s[lane]} : lse::empty<acc_t>();
      ms = warp_merge(ms);
      if (lane == 0) {
        const acc_t l = lse::value(ms);
        const int64_t id = ids[i];
        CUDA_KERNEL_ASSERT(lse::id_in_range(id, V) && "token id outside [0, V): -100 or a wrong vocab?");
        const bool banned = supp_mask != nullptr && supp_mask[id];
        lse[i] = l;
        logp[i] = banned ? neg_inf : to_acc(row[id]) * scale - l;
      }
    }
    __syncthreads();  // sm_* are reused by the next row
  }
}

// grad (N,), lse (N,) -> out (N, V) row stride ld_out; `out` may equal `logits`.
template <typename scalar_t, int BLOCK, int PER_THREAD>
__global__ void __launch_bounds__(BLOCK) logprobs_bwd_kernel(
    const typename AccOf<scalar_t>::type* __restrict__ grad, const scalar_t* logits, int64_t ld,
    const int64_t* __restrict__ ids, const typename AccOf<scalar_t>::type* __restrict__ lse,
    const uint8_t* __restrict__ supp_mask, typename AccOf<scalar_t>::type scale, int64_t N, int64_t V,
    scalar_t* out, int64_t ld_out) {
  using acc_t = typename AccOf<scalar_t>::type;
  static_assert(BLOCK % 32 == 0 && BLOCK <= 1024 && PER_THREAD >= 1, "BLOCK: whole warps, at most 1024 threads");
  for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
    const acc_t g = grad[i] * scale, l = lse[i];
    const int64_t id = ids[i];
    CUDA_KERNEL_ASSERT(lse::id_in_range(id, V) && "token id outside [0, V): -100 or a wrong vocab?");
    const scalar_t* row = logits + i * ld;
    scalar_t* o = out + i * ld_out;
    const int64_t base = int64_t(blockIdx.x) * BLOCK * PER_THREAD + threadIdx.x;
#pragma unroll
    for (int k = 0; k < PER_THREAD; ++k) {
      const int64_t v = base + int64_t(k) * BLOCK;
      if (v >= V) break;
      acc_t r = acc_t(0);
      if (g != acc_t(0) && (supp_mask == nullptr || !supp_mask[v])) {
        const acc_t logp = to_acc(row[v]) * scale - l;
        r = v == id ? lse::target_grad(g, logp) : -g * exp_acc(logp);  // g (1 - p) without cancelling
      }
      o[v] = from_acc<scalar_t>(r);
    }
  }
}

// supp (S,) vocab ids -> mask (V,) with 1 at each id (mask zeroed by the caller; ids already range-checked
// on the host when they came from the CPU, asserted here when they were on the device already).
__global__ void suppress_mask_kernel(const int64_t* __restrict__ supp, int64_t S, int64_t V, uint8_t* mask) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= S) return;
  CUDA_KERNEL_ASSERT(lse::id_in_range(supp[k], V) && "suppress_ids: id outside the vocab");
  mask[supp[k]] = 1;
}

}  // namespace cuda
}  // namespace gcpo_lite
