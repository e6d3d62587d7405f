// Compile check for the header-only CUDA kernels (csrc/cuda/*.cuh) without torch: includes every
// header and instantiates every kernel template for every dtype the host code launches.
// Built by .ci/check_cuda_compile.sh, which also fails if a .cuh under csrc/ is not included here.
#include "../csrc/cuda/logprobs.cuh"
#include "../csrc/cuda/loss.cuh"

namespace gc = gcpo_lite::cuda;

template <typename T>
void instantiate_logprobs() {
  using acc_t = typename gc::AccOf<T>::type;
  gc::logprobs_fwd_kernel<T, 512><<<1, 512>>>(nullptr, 0, nullptr, nullptr, acc_t(1), 0, 0, nullptr, nullptr);
  gc::logprobs_bwd_kernel<T, 256, 8><<<1, 256>>>(nullptr, nullptr, 0, nullptr, nullptr, nullptr, acc_t(1), 0, 0,
                                                  nullptr, 0);
}

template <typename acc_t>
void instantiate_loss() {
  gcpo_lite::LossParams<acc_t> p{};
  gc::gcpo_loss_kernel<acc_t, 1024><<<1, 1024>>>(p, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                                 nullptr, nullptr);
}

void instantiate_all() {
  instantiate_logprobs<float>();
  instantiate_logprobs<double>();
  instantiate_logprobs<__half>();
  instantiate_logprobs<__nv_bfloat16>();
  instantiate_loss<float>();
  instantiate_loss<double>();
  gc::suppress_mask_kernel<<<1, 256>>>(nullptr, 0, 0, nullptr);
}
