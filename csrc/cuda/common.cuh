// What every kernel file of csrc/cuda/ shares: the CUDA headers (or the CPU emulation of
// emu.hpp when BIGSTEP_CUDA_EMU is defined), error checks that throw (never abort),
// one launch helper, warp reductions and small device helpers.
#pragma once
#if defined(BIGSTEP_CUDA_EMU)
#include "emu.hpp"
#else
#include <cuda_runtime.h>
#include <mma.h>
// Dynamic shared memory of a kernel, as bytes (128-byte aligned: wmma tiles need 32).
#define BIGSTEP_DYNAMIC_SHARED(name) extern __shared__ __align__(128) unsigned char name[]
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "bigstep/config.hpp"
#include "kernels.cuh"

// Full unrolling of loops over compile-time bounds (register arrays stay in registers).
#if defined(__CUDACC__)
#define BIGSTEP_UNROLL _Pragma("unroll")
#else
#define BIGSTEP_UNROLL
#endif

namespace bigstep::cuda {

// Throws Error (OutOfMemory for cudaErrorMemoryAllocation) with the CUDA text.
[[noreturn]] inline void throw_cuda(cudaError_t err, const char* what) {
  std::string msg = std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err);
  if (err == cudaErrorMemoryAllocation) throw OutOfMemory(msg);
  throw Error(msg);
}

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw_cuda(err, what);
}

inline cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

// Launches kernel<<<grid, block, smem, stream>>>(args...) and checks the launch.  Dynamic
// shared memory above the default 48 KB is opted into first (per call: cheap, and right
// for whichever device is current).  An empty grid launches nothing.
template <class... P, class... A>
void launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem, Stream stream,
            A&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), name);
#if defined(BIGSTEP_CUDA_EMU)
  (void)stream;
  check(emu::launch(kernel, grid, block, smem, std::forward<A>(args)...), name);
#else
  kernel<<<grid, block, smem, as_stream(stream)>>>(std::forward<A>(args)...);
  check(cudaGetLastError(), name);
#endif
}

// Multiprocessors of the current device (for grid sizes).
inline int sm_count() {
  int dev = 0, v = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  return v;
}

BIGSTEP_HD index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// Carves aligned pieces out of a Workspace, in order; throws if it is too small.
class Carver {
 public:
  explicit Carver(Workspace ws) : base_(static_cast<unsigned char*>(ws.ptr)), bytes_(ws.bytes) {}
  Carver() : base_(nullptr), bytes_(0), counting_(true) {}  // counts bytes only
  template <class U>
  U* take(index_t count) {
    used_ = (used_ + 255) / 256 * 256;
    const std::size_t need = sizeof(U) * static_cast<std::size_t>(count < 0 ? 0 : count);
    U* p = counting_ ? nullptr : reinterpret_cast<U*>(base_ + used_);
    used_ += need;
    if (!counting_ && used_ > bytes_)
      throw Error("workspace too small: " + std::to_string(bytes_) + " bytes, need at least " +
                  std::to_string(used_));
    return p;
  }
  std::size_t used() const { return used_; }

 private:
  unsigned char* base_;
  std::size_t bytes_;
  std::size_t used_ = 0;
  bool counting_ = false;
};

// ------------------------------------------------------------------ device helpers
constexpr unsigned kFullMask = 0xffffffffu;

template <class V>
__device__ __forceinline__ V warp_sum(V v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

template <class V>
__device__ __forceinline__ V warp_max(V v) {
  for (int o = 16; o > 0; o >>= 1) {
    const V w = __shfl_xor_sync(kFullMask, v, o);
    v = w > v ? w : v;
  }
  return v;
}

template <class V>
BIGSTEP_HD V vmin(V a, V b) {
  return b < a ? b : a;
}
template <class V>
BIGSTEP_HD V vmax(V a, V b) {
  return a < b ? b : a;
}

// 0.5 log(2 pi): the Gaussian normaliser per dimension (as the CPU kernels).
constexpr double kHalfLog2Pi = 0.91893853320467274178;

}  // namespace bigstep::cuda
