// CPU GCPO loss: forward value, d loss / d logps (B, T) and the five metrics in two passes over (B, T).
// The tensors are small (one float per token), so this is plain serial code; maths in loss_math.h.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "../loss_checks.h"
#include "../loss_math.h"

namespace gcpo_lite {
namespace {

template <typename acc_t>
void loss_rows(const LossParams<acc_t>& p, const acc_t* lp, const acc_t* old, const acc_t* ref, const acc_t* adv,
               const acc_t* mask, acc_t* loss, acc_t* grad, acc_t* metrics) {
  const int64_t B = p.B, T = p.T;
  std::vector<double> ntok(B), sum_lr(B);  // per-row token count and masked log-ratio sum
  double ntot = 0;
  for (int64_t b = 0; b < B; ++b) {
    double n = 0, s = 0;
    for (int64_t t = 0; t < T; ++t) {
      const acc_t m = mask[b * T + t];
      if (m == acc_t(0)) continue;
      n += m;
      s += double((lp[b * T + t] - old[b * T + t]) * m);
    }
    ntok[b] = n, sum_lr[b] = s, ntot += n;
  }
  double total = 0, m_low = 0, m_high = 0, m_ratio = 0, m_kl = 0;
  for (int64_t b = 0; b < B; ++b) {
    const acc_t A = adv[b], nb = acc_t(ntok[b]);
    const acc_t c = row_weight(p, nb, acc_t(ntot));
    acc_t r_seq = 1, d_seq = 0, l_seq = 0;
    if (p.is_level == kSequence) {  // one ratio per completion: exp(mean masked log-ratio)
      r_seq = std::exp(acc_t(sum_lr[b]) / (nb > acc_t(1) ? nb : acc_t(1)));
      l_seq = surrogate(p, r_seq, A, &d_seq);
      // d loss / d r_seq = d_seq * c * ntok_b; d r_seq / d lp_t = r_seq * m_t / max(ntok_b, 1)
      d_seq = d_seq * c * nb * r_seq / (nb > acc_t(1) ? nb : acc_t(1));
    }
    for (int64_t t = 0; t < T; ++t) {
      const int64_t k = b * T + t;
      const acc_t m = mask[k];
      if (m == acc_t(0)) { grad[k] = 0; continue; }
      acc_t r = r_seq, l, g;
      if (p.is_level == kSequence) {
        l = l_seq, g = d_seq * m;
      } else {
        r = std::exp((lp[k] - old[k]) * m);
        acc_t d;
        l = surrogate(p, r, A, &d);
        g = c * m * d * r * m;
      }
      if (p.beta != acc_t(0)) {  // k3 = e^(ref - lp) - (ref - lp) - 1, d k3 / d lp = 1 - e^(ref - lp)
        const acc_t delta = ref[k] - lp[k], e = std::exp(delta);
        const acc_t kl = e - delta - acc_t(1);
        l += p.beta * kl;
        g += c * m * p.beta * (acc_t(1) - e);
        m_kl += double(kl * m);
      }
      total += double(c * m * l);
      grad[k] = g;
      const acc_t lo = acc_t(1) - p.eps_low, hi = acc_t(1) + p.eps_high;
      m_low += (r < lo && A < 0) ? double(m) : 0.0;
      m_high += (r > hi && A > 0) ? double(m) : 0.0;
      m_ratio += double(r * m);
    }
  }
  const double den = ntot > 1.0 ? ntot : 1.0;
  *loss = acc_t(total);
  metrics[kClipLow] = acc_t(m_low / den);
  metrics[kClipHigh] = acc_t(m_high / den);
  metrics[kClip] = acc_t((m_low + m_high) / den);
  metrics[kRatioMean] = acc_t(m_ratio / den);
  metrics[kKl] = acc_t(m_kl / den);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gcpo_loss_fwd_cpu(
    const at::Tensor& logps, const at::Tensor& old_logps, const std::optional<at::Tensor>& ref_logps,
    const at::Tensor& advantages, const at::Tensor& mask, int64_t is_level, double eps_low, double eps_high,
    double beta, int64_t loss_type, int64_t max_len) {
  const LossInputs in = prepare_loss_inputs(logps, old_logps, ref_logps, advantages, mask, is_level, beta,
                                            loss_type, max_len);
  at::Tensor loss = at::empty({}, in.lp.options());
  at::Tensor grad = at::empty_like(in.lp);
  at::Tensor metrics = at::empty({kNumMetrics}, in.lp.options());
  AT_DISPATCH_FLOATING_TYPES(in.lp.scalar_type(), "gcpo_loss_fwd_cpu", [&] {
    const LossParams<scalar_t> p{int(is_level), int(loss_type), scalar_t(eps_low), scalar_t(eps_high),
                                 scalar_t(beta), max_len, in.lp.size(0), in.lp.size(1)};
    loss_rows<scalar_t>(p, in.lp.const_data_ptr<scalar_t>(), in.old.const_data_ptr<scalar_t>(),
                        in.ref.const_data_ptr<scalar_t>(), in.adv.const_data_ptr<scalar_t>(),
                        in.mask.const_data_ptr<scalar_t>(), loss.mutable_data_ptr<scalar_t>(),
                        grad.mutable_data_ptr<scalar_t>(), metrics.mutable_data_ptr<scalar_t>());
  });
  return {loss, grad, metrics};
}

}  // namespace

TORCH_LIBRARY_IMPL(gcpo_lite, CPU, m) { m.impl("gcpo_loss_fwd", &gcpo_loss_fwd_cpu); }

}  // namespace gcpo_lite
