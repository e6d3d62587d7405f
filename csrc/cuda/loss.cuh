// CUDA GCPO loss: value, d loss / d logps (B, T) and the five metrics, in one single-block launch.
// Phase 1 (per-row token count and log-ratio sum) gives each row a warp whose lanes read consecutive tokens;
// it was one thread per row walking its row alone, so a warp's 32 loads hit 32 rows T apart (uncoalesced)
// and B < 1024 rows left most of the block idle.
// The inputs hold one float per token (a few thousand to a few hundred thousand values), so one block
// is enough and keeps every reduction deterministic. Maths in ../loss_math.h, same as the CPU path.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../loss_math.h"
#include "logprobs.cuh"

namespace gcpo_lite {
namespace cuda {

// Sums `vals[0..K)` over the block; the result is valid in thread 0. `sm` holds K * BLOCK/32 values.
template <typename acc_t, int BLOCK, int K>
__device__ __forceinline__ void block_sum(acc_t (&vals)[K], acc_t* sm) {
  static_assert(BLOCK % 32 == 0 && BLOCK <= 1024, "BLOCK: whole warps, at most 1024 threads");
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    for (int o = 16; o > 0; o >>= 1) vals[j] += __shfl_xor_sync(0xffffffffu, vals[j], o);
    if (lane == 0) sm[j * (BLOCK / 32) + warp] = vals[j];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
#pragma unroll
    for (int j = 0; j < K; ++j) {
      acc_t s = 0;
      for (int w = 0; w < BLOCK / 32; ++w) s += sm[j * (BLOCK / 32) + w];
      vals[j] = s;
    }
  }
  __syncthreads();
}

// lp, old, ref, mask (B, T); adv (B,); row_stats (2B,) scratch -> loss (1,), grad (B, T), metrics (5,)
template <typename acc_t, int BLOCK>
__global__ void __launch_bounds__(BLOCK) gcpo_loss_kernel(
    LossParams<acc_t> p, const acc_t* __restrict__ lp, const acc_t* __restrict__ old, const acc_t* __restrict__ ref,
    const acc_t* __restrict__ adv, const acc_t* __restrict__ mask, acc_t* __restrict__ row_stats,
    acc_t* __restrict__ loss, acc_t* __restrict__ grad, acc_t* __restrict__ metrics) {
  static_assert(BLOCK % 32 == 0 && BLOCK >= 32 && BLOCK <= 1024, "BLOCK: whole warps, at most 1024 threads");
  __shared__ acc_t sm[6 * (BLOCK / 32)];
  __shared__ acc_t ntot_sh;
  const int64_t B = p.B, T = p.T;
  acc_t* ntok = row_stats;      // (B,) masked token count
  acc_t* sum_lr = row_stats + B;  // (B,) masked log-ratio sum
  acc_t tot[1] = {0};
  // Phase 1, one warp per row: its 32 lanes read consecutive tokens (coalesced), then reduce by shuffles.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t b = warp; b < B; b += BLOCK / 32) {  // every lane of a warp runs the same iterations
    acc_t n = 0, s = 0;
    for (int64_t t = lane; t < T; t += 32) {
      const acc_t m = mask[b * T + t];
      if (m == acc_t(0)) continue;
      n += m;
      s += (lp[b * T + t] - old[b * T + t]) * m;
    }
    for (int o = 16; o > 0; o >>= 1) {
      n += __shfl_xor_sync(0xffffffffu, n, o);
      s += __shfl_xor_sync(0xffffffffu, s, o);
    }
    if (lane == 0) ntok[b] = n, sum_lr[b] = s, tot[0] += n;
  }
  block_sum<acc_t, BLOCK, 1>(tot, sm);
  if (threadIdx.x == 0) ntot_sh = tot[0];
  __syncthreads();  // also publishes ntok / sum_lr written by other threads
  const acc_t ntot = ntot_sh, lo = acc_t(1) - p.eps_low, hi = acc_t(1) + p.eps_high;
  acc_t acc[5] = {0, 0, 0, 0, 0};  // loss, clip_low, clip_high, ratio, kl (masked sums)
  for (int64_t k = threadIdx.x; k < B * T; k += BLOCK) {
    const acc_t m = mask[k];
    if (m == acc_t(0)) { grad[k] = 0; continue; }
    const int64_t b = k / T;
    const acc_t A = adv[b], nb = ntok[b], nb1 = nb > acc_t(1) ? nb : acc_t(1);
    const acc_t c = row_weight(p, nb, ntot);
    acc_t r, l, g, d;
    if (p.is_level == kSequence) {
      r = exp_acc(sum_lr[b] / nb1);
      l = surrogate(p, r, A, &d);
      g = d * c * nb * r / nb1 * m;
    } else {
      r = exp_acc((lp[k] - old[k]) * m);
      l = surrogate(p, r, A, &d);
      g = c * m * d * r * m;
    }
    if (p.beta != acc_t(0)) {
      const acc_t delta = ref[k] - lp[k], e = exp_acc(delta), kl = e - delta - acc_t(1);
      l += p.beta * kl;
      g += c * m * p.beta * (acc_t(1) - e);
      acc[4] += kl * m;
    }
    grad[k] = g;
    acc[0] += c * m * l;
    acc[1] += (r < lo && A < acc_t(0)) ? m : acc_t(0);
    acc[2] += (r > hi && A > acc_t(0)) ? m : acc_t(0);
    acc[3] += r * m;
  }
  block_sum<acc_t, BLOCK, 5>(acc, sm);
  if (threadIdx.x == 0) {
    const acc_t den = ntot > acc_t(1) ? ntot : acc_t(1);
    loss[0] = acc[0];
    metrics[kClipLow] = acc[1] / den;
    metrics[kClipHigh] = acc[2] / den;
    metrics[kClip] = (acc[1] + acc[2]) / den;
    metrics[kRatioMean] = acc[3] / den;
    metrics[kKl] = acc[4] / den;
  }
}

}  // namespace cuda
}  // namespace gcpo_lite
