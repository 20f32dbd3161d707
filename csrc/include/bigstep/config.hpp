// Portability macros shared by the CPU and CUDA builds: BIGSTEP_HD marks functions
// callable from host and device code (a no-op on the CPU build).
#pragma once

#if defined(__CUDACC__)
#define BIGSTEP_HD __host__ __device__ __forceinline__
#else
#define BIGSTEP_HD inline
#endif

#include <cstdint>

namespace bigstep {
using index_t = std::int64_t;
}  // namespace bigstep
