// CUDA host side: argument checks, launches and dispatcher registration for every gcpo_lite op.
// Kernels live in logprobs.cuh / loss.cuh; the token chunking of the hidden-state op in ../chunked.h.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"
#include "../chunked.h"
#include "../loss_checks.h"
#include "logprobs.cuh"
#include "loss.cuh"

namespace gcpo_lite {
namespace {

constexpr int kFwdBlock = 512;   // threads per row in the forward
constexpr int kBwdBlock = 256;   // threads per vocab tile in the backward
constexpr int kBwdPerThread = 8; // elements per thread: a tile covers 2048 vocab entries
constexpr int kLossBlock = 1024;
constexpr int64_t kMaxGridY = 65535;

template <typename T> struct CudaType { using type = T; };
template <> struct CudaType<at::Half> { using type = __half; };
template <> struct CudaType<at::BFloat16> { using type = __nv_bfloat16; };

void check_cuda(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.is_cuda(), what, " must be a CUDA tensor, got ", t.device());
}

// (V,) uint8 mask of suppressed ids, or an undefined tensor when there are none.
at::Tensor suppress_mask(const std::optional<at::Tensor>& suppress_ids, const at::Tensor& logits) {
  const at::Tensor supp = suppress_list(suppress_ids, logits);
  if (supp.numel() == 0) return at::Tensor();
  const int64_t V = logits.size(1);
  at::Tensor mask = at::zeros({V}, logits.options().dtype(at::kByte));
  const int64_t S = supp.numel();
  cuda::suppress_mask_kernel<<<(S + 255) / 256, 256, 0, c10::cuda::getCurrentCUDAStream()>>>(
      supp.const_data_ptr<int64_t>(), S, V, mask.mutable_data_ptr<uint8_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return mask;
}

const uint8_t* mask_ptr(const at::Tensor& mask) { return mask.defined() ? mask.const_data_ptr<uint8_t>() : nullptr; }

std::tuple<at::Tensor, at::Tensor> token_logprobs_fwd_cuda(const at::Tensor& logits, const at::Tensor& ids,
                                                           double temperature,
                                                           const std::optional<at::Tensor>& suppress_ids) {
  check_logits(logits, ids, temperature, "token_logprobs_fwd");
  check_cuda(logits, "logits");
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t N = logits.size(0), V = logits.size(1);
  const auto out_dtype = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor logp = at::empty({N}, logits.options().dtype(out_dtype));
  at::Tensor lse = at::empty({N}, logits.options().dtype(out_dtype));
  if (N == 0) return {logp, lse};
  const at::Tensor mask = suppress_mask(suppress_ids, logits);
  const at::Tensor idx = ids.contiguous();
  const int grid = int(std::min<int64_t>(N, 65535));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "token_logprobs_fwd_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    using acc_t = typename cuda::AccOf<T>::type;
    cuda::logprobs_fwd_kernel<T, kFwdBlock><<<grid, kFwdBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
        reinterpret_cast<const T*>(logits.const_data_ptr<scalar_t>()), logits.stride(0), idx.const_data_ptr<int64_t>(),
        mask_ptr(mask), acc_t(1.0 / temperature), N, V, logp.mutable_data_ptr<acc_t>(), lse.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {logp, lse};
}

void bwd_into(const at::Tensor& grad_logp, const at::Tensor& logits, const at::Tensor& ids, const at::Tensor& lse,
              double temperature, const std::optional<at::Tensor>& suppress_ids, at::Tensor& out) {
  check_cuda(logits, "logits");
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t N = logits.size(0), V = logits.size(1);
  if (N == 0) return;
  const at::Tensor mask = suppress_mask(suppress_ids, logits);
  const at::Tensor idx = ids.contiguous();
  const dim3 grid(unsigned((V + kBwdBlock * kBwdPerThread - 1) / (kBwdBlock * kBwdPerThread)),
                  unsigned(std::min(N, kMaxGridY)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, logits.scalar_type(), "token_logprobs_bwd_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    using acc_t = typename cuda::AccOf<T>::type;
    const auto acc_dtype = out.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    const at::Tensor g = grad_logp.to(logits.device(), acc_dtype).contiguous();
    const at::Tensor l = lse.to(logits.device(), acc_dtype).contiguous();
    cuda::logprobs_bwd_kernel<T, kBwdBlock, kBwdPerThread><<<grid, kBwdBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
        g.const_data_ptr<acc_t>(), reinterpret_cast<const T*>(logits.const_data_ptr<scalar_t>()), logits.stride(0),
        idx.const_data_ptr<int64_t>(), l.const_data_ptr<acc_t>(), mask_ptr(mask), acc_t(1.0 / temperature), N, V,
        reinterpret_cast<T*>(out.mutable_data_ptr<scalar_t>()), out.stride(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

at::Tensor token_logprobs_bwd_cuda(const at::Tensor& grad_logp, const at::Tensor& logits, const at::Tensor& ids,
                                   const at::Tensor& lse, double temperature,
                                   const std::optional<at::Tensor>& suppress_ids) {
  check_logits(logits, ids, temperature, "token_logprobs_bwd");
  check_rows(grad_logp, lse, logits.size(0), "token_logprobs_bwd");
  at::Tensor out = at::empty({logits.size(0), logits.size(1)}, logits.options());
  bwd_into(grad_logp, logits, ids, lse, temperature, suppress_ids, out);
  return out;
}

void token_logprobs_bwd_inplace_cuda(const at::Tensor& grad_logp, at::Tensor& logits, const at::Tensor& ids,
                                     const at::Tensor& lse, double temperature,
                                     const std::optional<at::Tensor>& suppress_ids) {
  check_logits(logits, ids, temperature, "token_logprobs_bwd_");
  check_rows(grad_logp, lse, logits.size(0), "token_logprobs_bwd_");
  at::assert_no_internal_overlap(logits);  // each element is read then written by one thread: no aliasing rows
  bwd_into(grad_logp, logits, ids, lse, temperature, suppress_ids, logits);
}

std::tuple<at::Tensor, at::Tensor> logprobs_from_hidden_fwd_cuda(const at::Tensor& hidden, const at::Tensor& weight,
                                                                 const at::Tensor& ids, double temperature,
                                                                 int64_t chunk,
                                                                 const std::optional<at::Tensor>& suppress_ids) {
  check_hidden(hidden, weight, ids, chunk, "logprobs_from_hidden_fwd");
  check_cuda(hidden, "hidden");
  const c10::cuda::CUDAGuard guard(hidden.device());
  const at::Tensor h = hidden.contiguous();
  return hidden_fwd(h, weight, ids, chunk, [&](const at::Tensor& lc, const at::Tensor& ic, at::Tensor lp, at::Tensor ls) {
    auto [a, b] = token_logprobs_fwd_cuda(lc, ic, temperature, suppress_ids);
    lp.copy_(a), ls.copy_(b);
  });
}

std::tuple<at::Tensor, at::Tensor> logprobs_from_hidden_bwd_cuda(const at::Tensor& grad_logp, const at::Tensor& hidden,
                                                                 const at::Tensor& weight, const at::Tensor& ids,
                                                                 const at::Tensor& lse, double temperature,
                                                                 int64_t chunk,
                                                                 const std::optional<at::Tensor>& suppress_ids,
                                                                 bool weight_grad) {
  check_hidden(hidden, weight, ids, chunk, "logprobs_from_hidden_bwd");
  check_rows(grad_logp, lse, hidden.size(0), "logprobs_from_hidden_bwd");
  check_cuda(hidden, "hidden");
  const c10::cuda::CUDAGuard guard(hidden.device());
  const at::Tensor h = hidden.contiguous();
  return hidden_bwd(grad_logp, h, weight, ids, lse, chunk, weight_grad,
                    [&](const at::Tensor& gc, at::Tensor& lc, const at::Tensor& ic, const at::Tensor& lsc) {
                      token_logprobs_bwd_inplace_cuda(gc, lc, ic, lsc, temperature, suppress_ids);
                    });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gcpo_loss_fwd_cuda(
    const at::Tensor& logps, const at::Tensor& old_logps, const std::optional<at::Tensor>& ref_logps,
    const at::Tensor& advantages, const at::Tensor& mask, int64_t is_level, double eps_low, double eps_high,
    double beta, int64_t loss_type, int64_t max_len) {
  check_cuda(logps, "per_token_logps");
  const c10::cuda::CUDAGuard guard(logps.device());
  const LossInputs in = prepare_loss_inputs(logps, old_logps, ref_logps, advantages, mask, is_level, beta,
                                            loss_type, max_len);
  const int64_t B = in.lp.size(0), T = in.lp.size(1);
  at::Tensor loss = at::empty({}, in.lp.options());
  at::Tensor grad = at::empty_like(in.lp);
  at::Tensor metrics = at::empty({kNumMetrics}, in.lp.options());
  at::Tensor row_stats = at::empty({2 * std::max<int64_t>(B, 1)}, in.lp.options());
  AT_DISPATCH_FLOATING_TYPES(in.lp.scalar_type(), "gcpo_loss_fwd_cuda", [&] {
    const LossParams<scalar_t> p{int(is_level), int(loss_type), scalar_t(eps_low), scalar_t(eps_high),
                                 scalar_t(beta), max_len, B, T};
    cuda::gcpo_loss_kernel<scalar_t, kLossBlock><<<1, kLossBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
        p, in.lp.const_data_ptr<scalar_t>(), in.old.const_data_ptr<scalar_t>(), in.ref.const_data_ptr<scalar_t>(),
        in.adv.const_data_ptr<scalar_t>(), in.mask.const_data_ptr<scalar_t>(), row_stats.mutable_data_ptr<scalar_t>(),
        loss.mutable_data_ptr<scalar_t>(), grad.mutable_data_ptr<scalar_t>(), metrics.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, grad, metrics};
}

}  // namespace

TORCH_LIBRARY_IMPL(gcpo_lite, CUDA, m) {
  m.impl("token_logprobs_fwd", &token_logprobs_fwd_cuda);
  m.impl("token_logprobs_bwd", &token_logprobs_bwd_cuda);
  m.impl("token_logprobs_bwd_", &token_logprobs_bwd_inplace_cuda);
  m.impl("logprobs_from_hidden_fwd", &logprobs_from_hidden_fwd_cuda);
  m.impl("logprobs_from_hidden_bwd", &logprobs_from_hidden_bwd_cuda);
  m.impl("gcpo_loss_fwd", &gcpo_loss_fwd_cuda);
}

}  // namespace gcpo_lite
