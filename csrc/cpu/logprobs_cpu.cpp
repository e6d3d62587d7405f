// CPU kernels for token log-probs from logits: forward (logp, lse) and backward g*(onehot - softmax),
// out of place or in place. One row per task (at::parallel_for over OpenMP), fp32 accumulation.
// The vocab loops carry no calls or branches so the compiler vectorizes them (omp simd + exp_vec).
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../checks.h"
#include "../chunked.h"
#include "../lse_math.h"
#include "vec_exp.h"

namespace gcpo_lite {
namespace {

// ids (N,) as a contiguous tensor, each checked to lie in [0, V) before any kernel reads through it.
at::Tensor checked_ids(const at::Tensor& ids, int64_t V, const char* op) {
  at::Tensor idx = ids.contiguous();
  const int64_t* p = idx.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < idx.numel(); ++i)
    TORCH_CHECK(p[i] >= 0 && p[i] < V, op, ": ids[", i, "] = ", p[i], " is outside the vocab [0, ", V, ")");
  return idx;
}

template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// Element v as fp32 (fp64 for double). bf16 through its bits, so the vocab loops stay vectorizable.
template <typename scalar_t>
GCPO_ALWAYS_INLINE acc_type<scalar_t> load_acc(const scalar_t* p, int64_t v) {
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    const uint32_t u = uint32_t(p[v].x) << 16;
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
  } else {
    return acc_type<scalar_t>(p[v]);
  }
}

// p[v] = x rounded to scalar_t (bf16: round to nearest even on the bits, as c10::BFloat16 does for finite x).
template <typename scalar_t>
GCPO_ALWAYS_INLINE void store_acc(scalar_t* p, int64_t v, acc_type<scalar_t> x) {
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof(u));
    p[v].x = uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  } else {
    p[v] = scalar_t(x);
  }
}

// The per-row vocab loops live in non-inlined functions, one loop nest each, with exp_vec/load_acc
// force-inlined: that is what GCC 12 reliably vectorizes (otherwise 5-8x slower, checked with objdump).
#if defined(__GNUC__)
#define GCPO_NOINLINE __attribute__((noinline))
#else
#define GCPO_NOINLINE
#endif

// logsumexp over v of row[v] * scale (scale > 0) in two passes: max, then sum of exp(x - max); the
// second pass re-reads the row from L2 (0.6 MB fp32 at V=151936).
template <typename scalar_t>
GCPO_NOINLINE acc_type<scalar_t> lse_row(const scalar_t* row, int64_t V, acc_type<scalar_t> scale) {
  using acc_t = acc_type<scalar_t>;
  acc_t m = -std::numeric_limits<acc_t>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t v = 0; v < V; ++v) {
    const acc_t x = load_acc(row, v);
    m = x > m ? x : m;
  }
  const acc_t ms = m * scale;
  acc_t s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t v = 0; v < V; ++v) s += exp_vec(load_acc(row, v) * scale - ms);
  return ms + std::log(s);
}

// Same through the fp32 buffer `x` (V,) holding the scaled row, suppressed entries (if any) at -inf.
template <typename scalar_t>
GCPO_NOINLINE acc_type<scalar_t> lse_row_suppressed(const scalar_t* row, int64_t V, acc_type<scalar_t> scale, const int64_t* supp,
                                      int64_t S, acc_type<scalar_t>* x) {
  using acc_t = acc_type<scalar_t>;
#pragma omp simd
  for (int64_t v = 0; v < V; ++v) x[v] = load_acc(row, v) * scale;
  for (int64_t k = 0; k < S; ++k) x[supp[k]] = -std::numeric_limits<acc_t>::infinity();
  acc_t m = -std::numeric_limits<acc_t>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t v = 0; v < V; ++v) m = x[v] > m ? x[v] : m;
  acc_t s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t v = 0; v < V; ++v) s += exp_vec(x[v] - m);
  return m + std::log(s);
}

// logits (N, V) with row stride `ld`, ids (N,), supp (S,) -> logp (N,), lse (N,) of logits*scale.
template <typename scalar_t>
void fwd_rows(const scalar_t* logits, int64_t ld, const int64_t* ids, const int64_t* supp, int64_t S,
              double scale_d, int64_t N, int64_t V, acc_type<scalar_t>* logp, acc_type<scalar_t>* lse) {
  using acc_t = acc_type<scalar_t>;
  const acc_t scale = acc_t(scale_d);
  at::parallel_for(0, N, 1, [=](int64_t begin, int64_t end) {
    // fp32/fp64 rows without suppressed ids reduce in place; 16-bit rows are widened once into a per-thread
    // fp32 buffer first (GCC does not vectorize the max reduction over 16-bit loads).
    constexpr bool wide = std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>;
    const bool direct = wide && S == 0;
    std::vector<acc_t> buf(direct ? 0 : V);
    for (int64_t i = begin; i < end; ++i) {
      const scalar_t* row = logits + i * ld;
      const acc_t l = direct ? lse_row(row, V, scale) : lse_row_suppressed(row, V, scale, supp, S, buf.data());
      bool banned = false;
      for (int64_t k = 0; k < S; ++k) banned |= supp[k] == ids[i];
      lse[i] = l;
      logp[i] = banned ? -std::numeric_limits<acc_t>::infinity() : load_acc(row, ids[i]) * scale - l;
    }
  });
}

// o[v] = -g * exp(row[v] * scale - l) for one row; `o` may equal `row`.
template <typename scalar_t>
GCPO_NOINLINE void grad_row(const scalar_t* row, scalar_t* o, int64_t V, acc_type<scalar_t> g, acc_type<scalar_t> l,
              acc_type<scalar_t> scale) {
#pragma omp simd
  for (int64_t v = 0; v < V; ++v) store_acc(o, v, -g * exp_vec(load_acc(row, v) * scale - l));
}

// d logp_i / d logits_iv = scale * (onehot - softmax); rows with grad 0 get zeros. `out` may alias
// `logits` (in-place backward): each element is read before it is written, the target first.
template <typename scalar_t>
void bwd_rows(const acc_type<scalar_t>* grad, const scalar_t* logits, int64_t ld, const int64_t* ids,
              const acc_type<scalar_t>* lse, const int64_t* supp, int64_t S, double scale_d, int64_t N,
              int64_t V, scalar_t* out, int64_t ld_out) {
  using acc_t = acc_type<scalar_t>;
  const acc_t scale = acc_t(scale_d);
  at::parallel_for(0, N, 1, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const scalar_t* row = logits + i * ld;
      scalar_t* o = out + i * ld_out;
      const acc_t g = grad[i] * scale, l = lse[i];
      if (g == acc_t(0)) {
#pragma omp simd
        for (int64_t v = 0; v < V; ++v) store_acc(o, v, acc_t(0));
        continue;
      }
      const int64_t id = ids[i];
      const acc_t logp_id = load_acc(row, id) * scale - l;  // read before `o` (maybe `row`) is overwritten
      grad_row(row, o, V, g, l, scale);
      o[id] = scalar_t(lse::target_grad(g, logp_id));  // g (1 - p) as -g expm1(logp): no cancelling as p -> 1
      for (int64_t k = 0; k < S; ++k) o[supp[k]] = scalar_t(0);  // index_fill(-inf) blocks the gradient
    }
  });
}

std::tuple<at::Tensor, at::Tensor> token_logprobs_fwd_cpu(const at::Tensor& logits, const at::Tensor& ids,
                                                          double temperature,
                                                          const std::optional<at::Tensor>& suppress_ids) {
  check_logits(logits, ids, temperature, "token_logprobs_fwd");
  const at::Tensor supp = suppress_list(suppress_ids, logits);
  const int64_t N = logits.size(0), V = logits.size(1);
  const auto out_dtype = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor logp = at::empty({N}, logits.options().dtype(out_dtype));
  at::Tensor lse = at::empty({N}, logits.options().dtype(out_dtype));
  const at::Tensor idx = checked_ids(ids, V, "token_logprobs_fwd");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "token_logprobs_fwd_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    fwd_rows<scalar_t>(logits.const_data_ptr<scalar_t>(), logits.stride(0), idx.const_data_ptr<int64_t>(),
                       supp.const_data_ptr<int64_t>(), supp.numel(), 1.0 / temperature, N, V,
                       logp.mutable_data_ptr<acc_t>(), lse.mutable_data_ptr<acc_t>());
  });
  return {logp, lse};
}

void bwd_into(const at::Tensor& grad_logp, const at::Tensor& logits, const at::Tensor& ids, const at::Tensor& lse,
              double temperature, const std::optional<at::Tensor>& suppress_ids, at::Tensor& out) {
  const at::Tensor supp = suppress_list(suppress_ids, logits);
  const int64_t N = logits.size(0), V = logits.size(1);
  const at::Tensor idx = checked_ids(ids, V, "token_logprobs_bwd");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "token_logprobs_bwd_cpu", [&] {
    using acc_t = acc_type<scalar_t>;
    const at::Tensor g = grad_logp.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    const at::Tensor l = lse.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    bwd_rows<scalar_t>(g.const_data_ptr<acc_t>(), logits.const_data_ptr<scalar_t>(), logits.stride(0),
                       idx.const_data_ptr<int64_t>(), l.const_data_ptr<acc_t>(), supp.const_data_ptr<int64_t>(),
                       supp.numel(), 1.0 / temperature, N, V, out.mutable_data_ptr<scalar_t>(), out.stride(0));
  });
}

at::Tensor token_logprobs_bwd_cpu(const at::Tensor& grad_logp, const at::Tensor& logits, const at::Tensor& ids,
                                  const at::Tensor& lse, double temperature,
                                  const std::optional<at::Tensor>& suppress_ids) {
  check_logits(logits, ids, temperature, "token_logprobs_bwd");
  check_rows(grad_logp, lse, logits.size(0), "token_logprobs_bwd");
  at::Tensor out = at::empty({logits.size(0), logits.size(1)}, logits.options());
  bwd_into(grad_logp, logits, ids, lse, temperature, suppress_ids, out);
  return out;
}

void token_logprobs_bwd_inplace_cpu(const at::Tensor& grad_logp, at::Tensor& logits, const at::Tensor& ids,
                                    const at::Tensor& lse, double temperature,
                                    const std::optional<at::Tensor>& suppress_ids) {
  check_logits(logits, ids, temperature, "token_logprobs_bwd_");
  check_rows(grad_logp, lse, logits.size(0), "token_logprobs_bwd_");
  at::assert_no_internal_overlap(logits);  // each element is read then written by one thread: no aliasing rows
  bwd_into(grad_logp, logits, ids, lse, temperature, suppress_ids, logits);
}

std::tuple<at::Tensor, at::Tensor> logprobs_from_hidden_fwd_cpu(const at::Tensor& hidden, const at::Tensor& weight,
                                                                const at::Tensor& ids, double temperature,
                                                                int64_t chunk,
                                                                const std::optional<at::Tensor>& suppress_ids) {
  check_hidden(hidden, weight, ids, chunk, "logprobs_from_hidden_fwd");
  const at::Tensor h = hidden.contiguous();
  return hidden_fwd(h, weight, ids, chunk, [&](const at::Tensor& lc, const at::Tensor& ic, at::Tensor lp, at::Tensor ls) {
    auto [a, b] = token_logprobs_fwd_cpu(lc, ic, temperature, suppress_ids);
    lp.copy_(a), ls.copy_(b);  // (c,) copies; the vocab-sized work happened in place
  });
}

std::tuple<at::Tensor, at::Tensor> logprobs_from_hidden_bwd_cpu(const at::Tensor& grad_logp, const at::Tensor& hidden,
                                                                const at::Tensor& weight, const at::Tensor& ids,
                                                                const at::Tensor& lse, double temperature,
                                                                int64_t chunk,
                                                                const std::optional<at::Tensor>& suppress_ids,
                                                                bool weight_grad) {
  check_hidden(hidden, weight, ids, chunk, "logprobs_from_hidden_bwd");
  check_rows(grad_logp, lse, hidden.size(0), "logprobs_from_hidden_bwd");
  const at::Tensor h = hidden.contiguous();
  return hidden_bwd(grad_logp, h, weight, ids, lse, chunk, weight_grad,
                    [&](const at::Tensor& gc, at::Tensor& lc, const at::Tensor& ic, const at::Tensor& lsc) {
                      token_logprobs_bwd_inplace_cpu(gc, lc, ic, lsc, temperature, suppress_ids);
                    });
}

}  // namespace

TORCH_LIBRARY_IMPL(gcpo_lite, CPU, m) {
  m.impl("token_logprobs_fwd", &token_logprobs_fwd_cpu);
  m.impl("token_logprobs_bwd", &token_logprobs_bwd_cpu);
  m.impl("token_logprobs_bwd_", &token_logprobs_bwd_inplace_cpu);
  m.impl("logprobs_from_hidden_fwd", &logprobs_from_hidden_fwd_cpu);
  m.impl("logprobs_from_hidden_bwd", &logprobs_from_hidden_bwd_cpu);
}

}  // namespace gcpo_lite
