// Token log-probs from hidden states, chunked over tokens: logits for at most `chunk` tokens exist at
// any time (one reused (chunk, V) buffer). Device-generic: the caller passes its device's row kernels.
// Backward recomputes each chunk's logits, overwrites them with their gradient in place, then
//   grad_hidden[chunk] = grad_logits @ W        (chunk, H)
//   grad_weight       += grad_logits^T @ hidden (V, H), fp32, only when asked (lm_head is usually frozen).
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <optional>
#include <tuple>

namespace gcpo_lite {

inline void check_hidden(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& ids, int64_t chunk,
                         const char* op) {
  TORCH_CHECK(hidden.dim() == 2, op, ": hidden must be (N, H), got ", hidden.sizes());
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == hidden.size(1), op, ": weight must be (V, H) with H = ",
              hidden.size(1), ", got ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == hidden.scalar_type(), op, ": hidden is ", hidden.scalar_type(),
              " but weight is ", weight.scalar_type(), "; cast one of them (the reference would fail in matmul too)");
  TORCH_CHECK(weight.device() == hidden.device(), op, ": hidden on ", hidden.device(), " but weight on ",
              weight.device());
  TORCH_CHECK(ids.dim() == 1 && ids.size(0) == hidden.size(0), op, ": ids must be (N,) = (", hidden.size(0),
              ",), got ", ids.sizes());
  TORCH_CHECK(chunk > 0, op, ": chunk_size must be > 0, got ", chunk);
}

// fwd(logits_chunk, ids_chunk, logp_chunk, lse_chunk) fills the (c,) outputs from (c, V) logits.
template <typename Fwd>
std::tuple<at::Tensor, at::Tensor> hidden_fwd(const at::Tensor& hidden, const at::Tensor& weight,
                                              const at::Tensor& ids, int64_t chunk, Fwd&& fwd) {
  const int64_t N = hidden.size(0), V = weight.size(0);
  const auto out_dtype = hidden.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor logp = at::empty({N}, hidden.options().dtype(out_dtype));
  at::Tensor lse = at::empty({N}, hidden.options().dtype(out_dtype));
  if (N == 0) return {logp, lse};
  const at::Tensor wt = weight.t();  // (H, V) view, no copy
  at::Tensor buf = at::empty({std::min(chunk, N), V}, hidden.options());  // the only vocab-sized tensor
  for (int64_t s = 0; s < N; s += chunk) {
    const int64_t c = std::min(chunk, N - s);
    at::Tensor lc = buf.narrow(0, 0, c);
    at::mm_out(lc, hidden.narrow(0, s, c), wt);  // (c, V) logits in hidden's dtype, as hidden @ W.T
    fwd(lc, ids.narrow(0, s, c), logp.narrow(0, s, c), lse.narrow(0, s, c));
  }
  return {logp, lse};
}

// bwd_(grad_chunk, logits_chunk, ids_chunk, lse_chunk) overwrites logits_chunk with its gradient.
template <typename BwdInplace>
std::tuple<at::Tensor, at::Tensor> hidden_bwd(const at::Tensor& grad_logp, const at::Tensor& hidden,
                                              const at::Tensor& weight, const at::Tensor& ids, const at::Tensor& lse,
                                              int64_t chunk, bool weight_grad, BwdInplace&& bwd_) {
  const int64_t N = hidden.size(0), V = weight.size(0);
  at::Tensor grad_hidden = at::empty({N, hidden.size(1)}, hidden.options());
  const auto acc = weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor grad_weight = weight_grad ? at::zeros(weight.sizes(), weight.options().dtype(acc))
                                       : at::empty({0}, weight.options());
  if (N == 0) return {grad_hidden, weight_grad ? grad_weight.to(weight.scalar_type()) : grad_weight};
  const at::Tensor wt = weight.t();
  at::Tensor buf = at::empty({std::min(chunk, N), V}, hidden.options());
  for (int64_t s = 0; s < N; s += chunk) {
    const int64_t c = std::min(chunk, N - s);
    at::Tensor lc = buf.narrow(0, 0, c);
    const at::Tensor hc = hidden.narrow(0, s, c);
    at::mm_out(lc, hc, wt);                                   // recompute (c, V) logits
    bwd_(grad_logp.narrow(0, s, c), lc, ids.narrow(0, s, c), lse.narrow(0, s, c));  // now d logp / d logits
    at::Tensor gh = grad_hidden.narrow(0, s, c);
    at::mm_out(gh, lc, weight);                               // (c, H)
    if (weight_grad) grad_weight.addmm_(lc.t().to(acc), hc.to(acc));  // (V, H) += (V, c) @ (c, H)
  }
  if (weight_grad && weight.scalar_type() != acc) grad_weight = grad_weight.to(weight.scalar_type());
  return {grad_hidden, grad_weight};
}

}  // namespace gcpo_lite
