// Host-side driver for csrc/lse_math.h (tests/kernels/test_lse_math_host.py compiles and runs it with the system C++
// compiler). stdin: one case per line, "n x1 ... xn" (inf, -inf, nan allowed). stdout, per case, one line:
//   float64 sequential push, float32 sequential push, then for each split k = 0..n of the values into two
//   partial states A = x[0:k], B = x[k:n]: merge(A, B) and merge(B, A) in float64, then the same in float32.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "lse_math.h"

using gcpo_lite::lse::MaxSum;
namespace L = gcpo_lite::lse;

template <typename T> MaxSum<T> push_all(const std::vector<double>& x, size_t a, size_t b) {
  MaxSum<T> s = L::empty<T>();
  for (size_t i = a; i < b; ++i) s = L::push(s, T(x[i]));
  return s;
}

template <typename T> void emit_splits(const std::vector<double>& x) {
  for (size_t k = 0; k <= x.size(); ++k) {
    const MaxSum<T> A = push_all<T>(x, 0, k), B = push_all<T>(x, k, x.size());
    std::printf(" %.17g %.17g", double(L::value(L::merge(A, B))), double(L::value(L::merge(B, A))));
  }
}

int main() {
  char tok[64];
  int n;
  while (std::scanf("%d", &n) == 1) {
    std::vector<double> x(n);
    for (int i = 0; i < n; ++i) {
      if (std::scanf("%63s", tok) != 1) return 2;
      x[i] = std::strtod(tok, nullptr);  // parses inf, -inf, nan
    }
    std::printf("%.17g %.17g", L::value(push_all<double>(x, 0, x.size())), double(L::value(push_all<float>(x, 0, x.size()))));
    emit_splits<double>(x);
    emit_splits<float>(x);
    std::printf("\n");
  }
  // the id check and the target gradient, on fixed inputs
  const long long ids[] = {-100, -1, 0, 5, 9, 10, 1LL << 40};
  for (long long id : ids) std::printf("id %lld %d\n", id, int(L::id_in_range(id, 10)));
  const double logps[] = {-1e-12, -1e-6, -0.5, -30.0};
  for (double lp : logps) std::printf("tg %.17g %.17g %.17g\n", lp, L::target_grad(2.0, lp), double(L::target_grad(2.0f, float(lp))));
  return 0;
}
