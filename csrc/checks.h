// Argument checks shared by the CPU and CUDA host code. Every message names the op and says what
// the caller passed, so a failure can be fixed without reading this file.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

namespace gcpo_lite {

// logits (N, V) float with unit stride along V (rows may be strided), ids (N,) int64, same device.
inline void check_logits(const at::Tensor& logits, const at::Tensor& ids, double temperature, const char* op) {
  TORCH_CHECK(logits.dim() == 2, op, ": logits must be (N, V), got ", logits.sizes());
  TORCH_CHECK(logits.size(1) > 0, op, ": vocab dimension is empty");
  TORCH_CHECK(logits.stride(1) == 1, op, ": logits must be contiguous along the vocab (stride 1), got strides ",
              logits.strides(), "; call .contiguous() first");
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), op, ": logits must be float32/bfloat16/float16/float64, got ",
              logits.scalar_type());
  TORCH_CHECK(ids.dim() == 1 && ids.size(0) == logits.size(0), op, ": ids must be (N,) = (", logits.size(0),
              ",), got ", ids.sizes());
  TORCH_CHECK(ids.scalar_type() == at::kLong, op, ": ids must be int64, got ", ids.scalar_type());
  TORCH_CHECK(ids.device() == logits.device(), op, ": ids on ", ids.device(), " but logits on ", logits.device());
  TORCH_CHECK(temperature > 0.0, op, ": temperature must be > 0, got ", temperature);
}

// Per-row vectors (grad of logp, saved lse) must be (N,) on the logits' device.
inline void check_rows(const at::Tensor& grad, const at::Tensor& lse, int64_t N, const char* op) {
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == N, op, ": grad must be (", N, ",), got ", grad.sizes());
  TORCH_CHECK(lse.dim() == 1 && lse.size(0) == N, op, ": lse must be (", N, ",), got ", lse.sizes());
  TORCH_CHECK(grad.device() == lse.device(), op, ": grad and lse on different devices");
}

// Suppressed vocab ids as a contiguous int64 list on the logits' device (empty when none).
inline at::Tensor suppress_list(const std::optional<at::Tensor>& suppress_ids, const at::Tensor& logits) {
  if (!suppress_ids.has_value() || !suppress_ids->defined() || suppress_ids->numel() == 0)
    return at::Tensor(logits.new_empty({0}, logits.options().dtype(at::kLong)));
  TORCH_CHECK(!at::isFloatingType(suppress_ids->scalar_type()), "suppress_ids must be an integer tensor, got ",
              suppress_ids->scalar_type());
  at::Tensor s = suppress_ids->to(at::kLong).reshape({-1}).contiguous();
  if (s.device().is_cpu()) {  // checked here, before any move to the GPU (ids already there: a device assert)
    const int64_t V = logits.size(-1);
    const int64_t* p = s.const_data_ptr<int64_t>();
    for (int64_t k = 0; k < s.numel(); ++k)
      TORCH_CHECK(p[k] >= 0 && p[k] < V, "suppress_ids: id ", p[k], " is outside the vocab [0, ", V, ")");
  }
  return s.to(logits.device()).contiguous();
}

}  // namespace gcpo_lite
