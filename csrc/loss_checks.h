// Validation and dtype/layout normalization of the GCPO loss inputs, shared by CPU and CUDA hosts.
// All (B, T) inputs come out contiguous in the compute dtype: float64 when logps is float64, else float32.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

#include "loss_math.h"

namespace gcpo_lite {

struct LossInputs {
  at::Tensor lp, old, ref, adv, mask;  // (B, T), (B, T), (B, T) (= lp when absent), (B,), (B, T)
};

inline LossInputs prepare_loss_inputs(const at::Tensor& logps, const at::Tensor& old_logps,
                                      const std::optional<at::Tensor>& ref_logps, const at::Tensor& advantages,
                                      const at::Tensor& mask, int64_t is_level, double beta, int64_t loss_type,
                                      int64_t max_len) {
  const char* op = "gcpo_loss_fwd";
  TORCH_CHECK(logps.dim() == 2, op, ": per_token_logps must be (B, T), got ", logps.sizes());
  TORCH_CHECK(old_logps.sizes() == logps.sizes(), op, ": old_per_token_logps ", old_logps.sizes(),
              " must match per_token_logps ", logps.sizes());
  TORCH_CHECK(mask.sizes() == logps.sizes(), op, ": completion_mask ", mask.sizes(), " must match per_token_logps ",
              logps.sizes());
  TORCH_CHECK(advantages.dim() == 1 && advantages.size(0) == logps.size(0), op, ": advantages must be (B,) = (",
              logps.size(0), ",), got ", advantages.sizes());
  TORCH_CHECK(is_level == kSequence || is_level == kToken, op, ": is_level must be 0 (sequence) or 1 (token)");
  TORCH_CHECK(loss_type >= kSeqMeanTokenMean && loss_type <= kDrGrpo, op, ": loss_type must be 0, 1 or 2");
  TORCH_CHECK(loss_type != kDrGrpo || max_len > 0, op, ": loss_type='dr_grpo' needs max_completion_length > 0");
  const bool has_ref = ref_logps.has_value() && ref_logps->defined();
  TORCH_CHECK(beta == 0.0 || has_ref, op, ": beta > 0 needs ref_per_token_logps");
  const auto dt = logps.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  LossInputs in;
  in.lp = logps.to(dt).contiguous();
  in.old = old_logps.to(logps.device(), dt).contiguous();
  in.adv = advantages.to(logps.device(), dt).contiguous();
  in.mask = mask.to(logps.device(), dt).contiguous();
  if (has_ref) {
    TORCH_CHECK(ref_logps->sizes() == logps.sizes(), op, ": ref_per_token_logps ", ref_logps->sizes(),
                " must match per_token_logps ", logps.sizes());
    in.ref = ref_logps->to(logps.device(), dt).contiguous();
  } else {
    in.ref = in.lp;  // read only when beta != 0, which needs a real ref
  }
  return in;
}

}  // namespace gcpo_lite
