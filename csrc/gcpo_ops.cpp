// Op schemas, declared once for every device. CPU kernels register in cpu/*.cpp, CUDA kernels in
// cuda/*.cu; autograd and fake (meta) kernels register from Python in gcpo_lite/kernels/ops.py.
//
// Shapes: N tokens, V vocab, H hidden, (B, T) completions x tokens. Log-prob outputs are float32
// (float64 for float64 inputs, so gradcheck can run). `lse` is logsumexp(logits / temperature) over
// the non-suppressed vocab; backward recomputes the softmax from it instead of saving (N, V).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import gcpo_lite._C` loads this library, which runs the registrations below. No Python API.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(gcpo_lite, m) {
  // logits (N, V), ids (N,) -> logp (N,), lse (N,)
  m.def("token_logprobs_fwd(Tensor logits, Tensor ids, float temperature, Tensor? suppress_ids) -> (Tensor, Tensor)");
  // -> grad_logits (N, V) = grad_logp * (onehot - softmax) / temperature, in a new tensor
  m.def("token_logprobs_bwd(Tensor grad_logp, Tensor logits, Tensor ids, Tensor lse, float temperature, "
        "Tensor? suppress_ids) -> Tensor");
  // same gradient written over `logits` (the caller no longer needs them): no (N, V) allocation
  m.def("token_logprobs_bwd_(Tensor grad_logp, Tensor(a!) logits, Tensor ids, Tensor lse, float temperature, "
        "Tensor? suppress_ids) -> ()");
  // hidden (N, H), weight (V, H), ids (N,) -> logp (N,), lse (N,); at most chunk_size x V logits at a time
  m.def("logprobs_from_hidden_fwd(Tensor hidden, Tensor weight, Tensor ids, float temperature, int chunk_size, "
        "Tensor? suppress_ids) -> (Tensor, Tensor)");
  // -> grad_hidden (N, H), grad_weight (V, H) when weight_grad else an empty tensor
  m.def("logprobs_from_hidden_bwd(Tensor grad_logp, Tensor hidden, Tensor weight, Tensor ids, Tensor lse, "
        "float temperature, int chunk_size, Tensor? suppress_ids, bool weight_grad) -> (Tensor, Tensor)");
  // per-token logps (B, T), old (B, T), ref (B, T)?, advantages (B,), mask (B, T)
  //   -> loss (), d loss / d logps (B, T), metrics (5,) [clip_low, clip_high, clip, ratio_mean, kl]
  // is_level: 0 sequence, 1 token; loss_type: 0 seq_mean_token_mean, 1 token_mean, 2 dr_grpo
  m.def("gcpo_loss_fwd(Tensor logps, Tensor old_logps, Tensor? ref_logps, Tensor advantages, Tensor mask, "
        "int is_level, float epsilon_low, float epsilon_high, float beta, int loss_type, "
        "int max_completion_length) -> (Tensor, Tensor, Tensor)");
}
