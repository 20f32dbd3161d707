// A CPU emulation of the subset of CUDA that the kernels of csrc/cuda/ use, so that they
// can be compiled by a host C++ compiler (BIGSTEP_CUDA_EMU, the bigstep._cuda_emu test
// module) and run here, without a GPU: indexing, tiling, barriers, warp shuffles and the
// launchers' host code are then tested against the CPU kernels (tests/test_cuda.py).
//
// Model.  Blocks run one after another.  The threads of a block are fibers (ucontext) on
// the calling OS thread: a fiber runs until it reaches a barrier (__syncthreads, a warp
// collective) or returns, then the scheduler resumes the next one.  A block barrier opens
// when every thread of the block waits at it; a warp collective when the 32 lanes of the
// warp wait at one.  The order in which waiting fibers resume is a seeded shuffle, so a
// missing barrier shows as a wrong result or a race rather than staying hidden behind
// program order.  What is checked (a std::logic_error names it):
//   - a barrier that some threads of the block never reach (divergent __syncthreads,
//     a thread that returned early, a collective with an exited lane);
//   - shared memory read before any thread wrote it is filled with a NaN/0xCD pattern
//     at the start of every block (dynamic shared memory), so such reads poison results.
// Not modelled: memory-model subtleties beyond barriers, occupancy, timing, streams
// (work runs at launch, in order), several devices (one emulated device, index 0).
//
// Tensor cores: nvcuda::wmma fragments of double (m8n8k4) hold the whole tile; lane 0's
// copy is the warp's (loads and products are computed in lane 0 only, the others' copies
// are never read), and store_matrix_sync writes it between two warp barriers.  Code that reads fragment elements directly (frag.x[i]) is not
// supported: the kernels only load, multiply, fill and store fragments.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

typedef struct CUstream_emu* cudaStream_t;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorInsufficientDriver = 35,
  cudaErrorLaunchFailure = 719,
};

enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr {
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4 };

namespace bigstep::emu {

constexpr std::size_t kStackBytes = 256 * 1024;
constexpr std::size_t kMaxDynamicShared = 227 * 1024;  // what an H100 block may opt into

enum class Status { kRunnable, kBlockBarrier, kWarpBarrier, kDone };

struct Fiber {
  ucontext_t ctx;
  uint3 idx;
  unsigned linear = 0;
  Status status = Status::kRunnable;
  std::vector<char> stack;
};

struct State {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  Fiber* cur = nullptr;
  uint3 block_idx{0, 0, 0};
  dim3 block_dim, grid_dim;
  std::function<void()> body;
  std::vector<std::uint64_t> exchange;  // per warp, 32 slots of 8 bytes
  std::vector<unsigned char> dynamic_shared;
  std::mt19937 rng{12345};
  cudaError_t last_error = cudaSuccess;
  std::string failure;  // set when a kernel broke a rule; reported at the end of the launch
  bool inside = false;
};

inline State& state() {
  static State s;
  return s;
}

inline Fiber& current() {
  State& s = state();
  if (!s.inside || s.cur == nullptr) throw std::logic_error("emu: a device function was called outside a kernel");
  return *s.cur;
}

inline void wait(Status why) {
  State& s = state();
  s.cur->status = why;
  swapcontext(&s.cur->ctx, &s.scheduler);
}

inline void fiber_entry() {
  State& s = state();
  s.body();
  s.cur->status = Status::kDone;
  swapcontext(&s.cur->ctx, &s.scheduler);
}

// Runs one block to completion.
inline void run_block() {
  State& s = state();
  const unsigned nt = s.block_dim.x * s.block_dim.y * s.block_dim.z;
  for (unsigned t = 0; t < nt; ++t) {
    Fiber& f = s.fibers[t];
    f.linear = t;
    f.idx = uint3{t % s.block_dim.x, (t / s.block_dim.x) % s.block_dim.y, t / (s.block_dim.x * s.block_dim.y)};
    f.status = Status::kRunnable;
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  // shared memory is undefined at the start of a block: poison the dynamic part
  for (std::size_t i = 0; i < s.dynamic_shared.size(); ++i) s.dynamic_shared[i] = (i % 8 == 7) ? 0x7F : 0xF8;
  std::vector<unsigned> order(nt);
  for (unsigned t = 0; t < nt; ++t) order[t] = t;
  const unsigned warps = (nt + 31) / 32;
  while (true) {
    std::shuffle(order.begin(), order.end(), s.rng);
    bool ran = false;
    for (unsigned t : order) {
      Fiber& f = s.fibers[t];
      if (f.status != Status::kRunnable) continue;
      s.cur = &f;
      swapcontext(&s.scheduler, &f.ctx);
      s.cur = nullptr;
      ran = true;
      if (!s.failure.empty()) return;
    }
    unsigned done = 0, at_block = 0;
    for (unsigned t = 0; t < nt; ++t) {
      done += s.fibers[t].status == Status::kDone;
      at_block += s.fibers[t].status == Status::kBlockBarrier;
    }
    if (done == nt) return;
    bool released = false;
    for (unsigned w = 0; w < warps; ++w) {  // warp collectives
      const unsigned t0 = w * 32, t1 = std::min(nt, t0 + 32);
      unsigned waiting = 0;
      for (unsigned t = t0; t < t1; ++t) waiting += s.fibers[t].status == Status::kWarpBarrier;
      if (waiting == 0) continue;
      if (waiting == t1 - t0) {
        for (unsigned t = t0; t < t1; ++t) s.fibers[t].status = Status::kRunnable;
        released = true;
      }
    }
    if (at_block == nt) {
      for (unsigned t = 0; t < nt; ++t) s.fibers[t].status = Status::kRunnable;
      released = true;
    }
    if (!released && !ran) {
      std::string why = "emu: deadlock in block (" + std::to_string(s.block_idx.x) + ", " +
                        std::to_string(s.block_idx.y) + "): " + std::to_string(done) + " threads returned, " +
                        std::to_string(at_block) + " wait at __syncthreads, the others at a warp collective "
                        "that some lanes never reach";
      s.failure = why;
      return;
    }
  }
}

// Launch: every block in order (x fastest), the kernel bound to its arguments.
// One launch at a time in the process (Python threads may call kernels concurrently: the
// bindings release the GIL); the launching thread runs all of its fibers.
inline std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}

template <class... P, class... A>
cudaError_t launch(void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem, A&&... args) {
  std::lock_guard<std::mutex> lock(launch_mutex());
  State& s = state();
  const unsigned nt = block.x * block.y * block.z;
  if (nt == 0 || nt > 1024 || nt % 32 != 0 || smem > kMaxDynamicShared) return cudaErrorInvalidConfiguration;
  if (s.inside) throw std::logic_error("emu: kernel launched from a kernel");
  std::tuple<std::decay_t<P>...> bound(std::forward<A>(args)...);
  s.body = [&]() { std::apply(kernel, bound); };
  s.block_dim = block;
  s.grid_dim = grid;
  if (s.fibers.size() < nt) {
    s.fibers.resize(nt);
    for (Fiber& f : s.fibers) f.stack.resize(kStackBytes);
  }
  s.exchange.assign(std::size_t(nt), 0);
  s.dynamic_shared.assign(smem, 0);
  s.inside = true;
  s.failure.clear();
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        s.block_idx = uint3{x, y, z};
        run_block();
        if (!s.failure.empty()) {
          s.inside = false;
          throw std::logic_error(s.failure);
        }
      }
  s.inside = false;
  return cudaSuccess;
}

inline void syncthreads() { wait(Status::kBlockBarrier); }
inline void syncwarp() { wait(Status::kWarpBarrier); }

// Exchange of one value per lane through the warp's slots; returns lane src's value.
template <class T>
T exchange(T v, unsigned src) {
  static_assert(sizeof(T) <= 8, "emu: shuffles of at most 8 bytes");
  State& s = state();
  Fiber& f = current();
  const unsigned base = f.linear / 32 * 32;
  std::memcpy(&s.exchange[f.linear], &v, sizeof v);
  syncwarp();
  T out;
  std::memcpy(&out, &s.exchange[base + src], sizeof out);
  syncwarp();
  return out;
}

inline unsigned lane() { return current().linear % 32; }

}  // namespace bigstep::emu

#define threadIdx (::bigstep::emu::current().idx)
#define blockIdx (::bigstep::emu::state().block_idx)
#define blockDim (::bigstep::emu::state().block_dim)
#define gridDim (::bigstep::emu::state().grid_dim)
#define warpSize 32

inline void __syncthreads() { bigstep::emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { bigstep::emu::syncwarp(); }

template <class T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  const unsigned l = bigstep::emu::lane();
  const unsigned seg = l / width * width;
  return bigstep::emu::exchange(v, seg + ((l - seg) ^ unsigned(mask)) % width);
}
template <class T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const unsigned l = bigstep::emu::lane();
  return bigstep::emu::exchange(v, l / width * width + unsigned(src) % width);
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const unsigned l = bigstep::emu::lane();
  const unsigned seg = l / width * width;
  const unsigned src = l - seg + delta < unsigned(width) ? l + delta : l;
  return bigstep::emu::exchange(v, src);
}
inline unsigned __ballot_sync(unsigned, int pred) {
  bigstep::emu::State& s = bigstep::emu::state();
  const unsigned me = bigstep::emu::current().linear, base = me / 32 * 32;
  s.exchange[me] = pred != 0;
  __syncwarp();
  unsigned bits = 0;
  for (unsigned k = 0; k < 32 && base + k < s.exchange.size(); ++k)
    if (s.exchange[base + k]) bits |= 1u << k;
  __syncwarp();
  return bits;
}
inline int __any_sync(unsigned m, int pred) { return __ballot_sync(m, pred) != 0; }
inline int __all_sync(unsigned m, int pred) { return __ballot_sync(m, pred) == 0xffffffffu; }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(unsigned v) { return __builtin_ffs(static_cast<int>(v)); }

// Atomics: one OS thread runs every fiber, so plain read-modify-writes are atomic.
template <class T>
T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
template <class T>
T atomicMax(T* p, T v) {
  const T old = *p;
  *p = std::max(old, v);
  return old;
}
template <class T>
T atomicOr(T* p, T v) {
  const T old = *p;
  *p = old | v;
  return old;
}

inline long long __double_as_longlong(double v) {
  long long r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}
inline double __longlong_as_double(long long v) {
  double r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}

// Runtime API (what the launchers call).
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return "unspecified launch failure";
  }
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = bigstep::emu::state().last_error;
  bigstep::emu::state().last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return bigstep::emu::state().last_error; }
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  switch (a) {
    case cudaDevAttrMultiProcessorCount: *v = 4; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = 48 * 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = int(bigstep::emu::kMaxDynamicShared); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}
template <class F>
cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int v) {
  return v <= int(bigstep::emu::kMaxDynamicShared) ? cudaSuccess : cudaErrorInvalidValue;
}
inline cudaError_t cudaMemsetAsync(void* p, int v, std::size_t n, cudaStream_t = nullptr) {
  if (n) std::memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, std::size_t n, cudaMemcpyKind, cudaStream_t = nullptr) {
  if (n) std::memmove(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

// Dynamic shared memory of the running block.
#define BIGSTEP_DYNAMIC_SHARED(name) unsigned char* name = ::bigstep::emu::state().dynamic_shared.data()

// ---------------------------------------------------------------------- wmma (double)
namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment;
template <class Layout>
struct fragment<matrix_a, 8, 8, 4, double, Layout> {
  double v[8 * 4];  // [row][k]
};
template <class Layout>
struct fragment<matrix_b, 8, 8, 4, double, Layout> {
  double v[4 * 8];  // [k][col]
};
template <>
struct fragment<accumulator, 8, 8, 4, double, void> {
  double v[8 * 8];  // [row][col]
};

inline void load_matrix_sync(fragment<matrix_a, 8, 8, 4, double, row_major>& a, const double* p, unsigned ldm) {
  if (bigstep::emu::lane() != 0) return;
  for (int r = 0; r < 8; ++r)
    for (int k = 0; k < 4; ++k) a.v[r * 4 + k] = p[r * ldm + k];
}
inline void load_matrix_sync(fragment<matrix_a, 8, 8, 4, double, col_major>& a, const double* p, unsigned ldm) {
  if (bigstep::emu::lane() != 0) return;
  for (int r = 0; r < 8; ++r)
    for (int k = 0; k < 4; ++k) a.v[r * 4 + k] = p[k * ldm + r];
}
inline void load_matrix_sync(fragment<matrix_b, 8, 8, 4, double, row_major>& b, const double* p, unsigned ldm) {
  if (bigstep::emu::lane() != 0) return;
  for (int k = 0; k < 4; ++k)
    for (int c = 0; c < 8; ++c) b.v[k * 8 + c] = p[k * ldm + c];
}
inline void load_matrix_sync(fragment<matrix_b, 8, 8, 4, double, col_major>& b, const double* p, unsigned ldm) {
  if (bigstep::emu::lane() != 0) return;
  for (int k = 0; k < 4; ++k)
    for (int c = 0; c < 8; ++c) b.v[k * 8 + c] = p[c * ldm + k];
}
inline void load_matrix_sync(fragment<accumulator, 8, 8, 4, double>& c, const double* p, unsigned ldm, layout_t l) {
  if (bigstep::emu::lane() != 0) return;
  for (int r = 0; r < 8; ++r)
    for (int j = 0; j < 8; ++j) c.v[r * 8 + j] = l == mem_row_major ? p[r * ldm + j] : p[j * ldm + r];
}
inline void fill_fragment(fragment<accumulator, 8, 8, 4, double>& c, double v) {
  for (double& e : c.v) e = v;
}
template <class LA, class LB>
void mma_sync(fragment<accumulator, 8, 8, 4, double>& d, const fragment<matrix_a, 8, 8, 4, double, LA>& a,
              const fragment<matrix_b, 8, 8, 4, double, LB>& b, const fragment<accumulator, 8, 8, 4, double>& c) {
  if (bigstep::emu::lane() != 0) return;
  double out[64];
  for (int r = 0; r < 8; ++r)
    for (int j = 0; j < 8; ++j) {
      double acc = c.v[r * 8 + j];
      for (int k = 0; k < 4; ++k) acc = std::fma(a.v[r * 4 + k], b.v[k * 8 + j], acc);
      out[r * 8 + j] = acc;
    }
  std::memcpy(d.v, out, sizeof out);
}
inline void store_matrix_sync(double* p, const fragment<accumulator, 8, 8, 4, double>& c, unsigned ldm, layout_t l) {
  __syncwarp();
  if (bigstep::emu::lane() == 0)
    for (int r = 0; r < 8; ++r)
      for (int j = 0; j < 8; ++j) (l == mem_row_major ? p[r * ldm + j] : p[j * ldm + r]) = c.v[r * 8 + j];
  __syncwarp();
}
}  // namespace nvcuda::wmma
