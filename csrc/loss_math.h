// GCPO loss maths shared by the CPU and CUDA kernels: plain functions on scalars, no tensors.
// The specification is gcpo_lite/kernels/reference.py::gcpo_loss; every formula below is its
// closed-form forward and its derivative with respect to the per-token log-probs.
#pragma once

#include "hd.h"

namespace gcpo_lite {

enum IsLevel : int { kSequence = 0, kToken = 1 };                       // reference.IS_LEVELS order
enum LossType : int { kSeqMeanTokenMean = 0, kTokenMean = 1, kDrGrpo = 2 };  // reference.LOSS_TYPES order
enum Metric : int { kClipLow = 0, kClipHigh = 1, kClip = 2, kRatioMean = 3, kKl = 4, kNumMetrics = 5 };

template <typename acc_t>
struct LossParams {
  int is_level, loss_type;
  acc_t eps_low, eps_high, beta;
  long long max_len;  // dr_grpo denominator
  long long B, T;
};

// Weight c_b of one masked token of row b in the aggregated loss: loss = sum_bt c_b * m_bt * ptl_bt.
template <typename acc_t>
GCPO_HD acc_t row_weight(const LossParams<acc_t>& p, acc_t ntok_b, acc_t ntok_total) {
  const acc_t B = p.B > 0 ? acc_t(p.B) : acc_t(1);
  if (p.loss_type == kSeqMeanTokenMean) return acc_t(1) / ((ntok_b > acc_t(1) ? ntok_b : acc_t(1)) * B);
  if (p.loss_type == kTokenMean) return acc_t(1) / (ntok_total > acc_t(1) ? ntok_total : acc_t(1));
  return acc_t(1) / (B * acc_t(p.max_len));
}

// Clipped surrogate -min(r*A, clip(r)*A) and its derivative in r. torch.minimum splits the gradient
// on ties and clamp passes it inside [lo, hi]; both reduce to: d/dr = -A when r*A <= clip(r)*A, else 0.
template <typename acc_t>
GCPO_HD acc_t surrogate(const LossParams<acc_t>& p, acc_t r, acc_t A, acc_t* d_dr) {
  const acc_t lo = acc_t(1) - p.eps_low, hi = acc_t(1) + p.eps_high;
  const acc_t rc = r < lo ? lo : (r > hi ? hi : r);
  const acc_t u = r * A, c = rc * A;
  *d_dr = u <= c ? -A : acc_t(0);
  return -(u <= c ? u : c);
}

}  // namespace gcpo_lite
