// The online log-sum-exp arithmetic of the CUDA log-prob kernels, as plain inline functions that compile
// for the device (nvcc, __host__ __device__) and for the host (any C++17 compiler). The CUDA kernels use them;
// tests/kernels/test_lse_math_host.py compiles tests/kernels/lse_math_host.cpp with the system C++ compiler and checks them
// exhaustively against a float64 log-sum-exp, so their maths is tested on machines without a GPU.
//
// State (m, s) of a set of values x: m = max x, s = sum of exp(x - m); lse = m + log(s). The identity is
// (-inf, 0). Edge values follow torch.logsumexp: -inf entries add nothing (all -inf -> -inf), any +inf gives
// +inf, any NaN gives NaN. Infinities are never subtracted from each other: equal maxima add their sums.
#pragma once

#include <math.h>

#include <cstdint>

#include "hd.h"

namespace gcpo_lite {
namespace lse {

GCPO_HD float exp_of(float x) { return expf(x); }
GCPO_HD double exp_of(double x) { return exp(x); }
GCPO_HD float log_of(float x) { return logf(x); }
GCPO_HD double log_of(double x) { return log(x); }
GCPO_HD float expm1_of(float x) { return expm1f(x); }
GCPO_HD double expm1_of(double x) { return expm1(x); }

template <typename acc_t> struct MaxSum { acc_t m, s; };

template <typename acc_t> GCPO_HD MaxSum<acc_t> empty() { return {acc_t(-INFINITY), acc_t(0)}; }

// The state with one more value x.
template <typename acc_t> GCPO_HD MaxSum<acc_t> push(MaxSum<acc_t> a, acc_t x) {
  if (x == acc_t(-INFINITY)) return a;               // exp(-inf) = 0: nothing to add (no -inf - -inf)
  if (x > a.m) return {x, a.s * exp_of(a.m - x) + acc_t(1)};  // a.m may be -inf: exp(-inf) = 0
  if (x == a.m) return {a.m, a.s + acc_t(1)};        // equal maxima, +inf included (no inf - inf)
  return {a.m, a.s + exp_of(x - a.m)};               // x < a.m; a NaN x lands here and makes s NaN
}

// The state of the union of two sets; associative and commutative, identity empty().
template <typename acc_t> GCPO_HD MaxSum<acc_t> merge(MaxSum<acc_t> a, MaxSum<acc_t> b) {
  if (a.m < b.m) { const MaxSum<acc_t> t = a; a = b; b = t; }  // a has the larger max
  if (b.s == acc_t(0)) return a;                               // b is empty (b.m = -inf)
  if (b.m == a.m) return {a.m, a.s + b.s};                     // equal maxima: no inf - inf, no -inf - -inf
  return {a.m, a.s + b.s * exp_of(b.m - a.m)};
}

template <typename acc_t> GCPO_HD acc_t value(MaxSum<acc_t> a) { return a.m + log_of(a.s); }

// A token id a kernel may read: in [0, V). -100 (the usual ignore index) and V are not.
GCPO_HD bool id_in_range(int64_t id, int64_t V) { return id >= 0 && id < V; }

// d logp(id) / d x(id) for one row, times g: g * (1 - p) written as -g * expm1(logp), which keeps its digits
// when p -> 1 (1 - p cancels). Every native path (CPU and CUDA) uses this form.
template <typename acc_t> GCPO_HD acc_t target_grad(acc_t g, acc_t logp) { return -g * expm1_of(logp); }

}  // namespace lse
}  // namespace gcpo_lite
