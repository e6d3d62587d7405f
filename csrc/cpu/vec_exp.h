// exp() written so that GCC/Clang auto-vectorize the vocab loops that call it (no libm call, no
// branches): Cephes-style range reduction x = n*ln2 + r, degree-6 polynomial for e^r, 2^n built in
// the exponent bits. Max relative error ~2 ulp on fp32. Inputs below -87.3 (including -inf, used for
// suppressed vocab ids) return exactly 0; we only call it with x - max <= 0.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

// Must inline into the vocab loops or they cannot vectorize (GCC 12 otherwise emits a call per element).
#if defined(__GNUC__)
#define GCPO_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define GCPO_ALWAYS_INLINE inline
#endif

namespace gcpo_lite {

GCPO_ALWAYS_INLINE float exp_vec(float x) {
  const float lo = -87.3365448f, hi = 88.3762626f;
  const float xc = x < lo ? lo : (x > hi ? hi : x);
  // n = round(x / ln2) with the 1.5*2^23 trick: the rounded integer lands in t's low mantissa bits.
  const float t = xc * 1.44269504088896341f + 12582912.0f;
  const float n = t - 12582912.0f;
  float r = xc - n * 0.693359375f;  // ln2 split hi/lo for an exact reduction
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  int32_t ti;
  std::memcpy(&ti, &t, sizeof(ti));
  const int32_t bits = (ti - 0x4B400000 + 127) << 23;  // 2^n as a float
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < lo ? 0.0f : er * scale;
}

GCPO_ALWAYS_INLINE double exp_vec(double x) { return std::exp(x); }  // float64 is for gradcheck, not speed

}  // namespace gcpo_lite
