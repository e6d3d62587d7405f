// GCPO_HD: a function compiled for both sides, __host__ __device__ under nvcc and plain inline elsewhere, so the
// maths headers (loss_math.h, lse_math.h) serve the CUDA kernels, the CPU kernels and host-side tests alike.
#pragma once

#if defined(__CUDACC__)
#define GCPO_HD __host__ __device__ __forceinline__
#else
#define GCPO_HD inline
#endif
