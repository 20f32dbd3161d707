// The CUDA launchers, declared once (one .cu per family defines them; src/register_cuda_*.cpp
// binds them).  Host-only declarations without CUDA types, so the bindings compile with
// the host compiler alone.
//
// Conventions (as csrc/cpu/kernels.hpp): row-major contiguous device arrays (shapes in
// the comments); per-query noise levels as a device pointer and a stride (stride 0
// broadcasts one value); null outputs are not written.  Every launcher enqueues its
// kernels on `stream` (a cudaStream_t; the caller's current stream) of the current
// device and returns without waiting.  Scratch memory comes from the caller as a
// Workspace of at least the bytes the family's *_workspace function returns (the Python
// launchers allocate it with torch, so it lives in torch's caching allocator).  A launch
// error or an out-of-memory condition throws Error / OutOfMemory with the CUDA error
// text; nothing aborts the process.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "bigstep/config.hpp"

namespace bigstep::cuda {

// A CUDA runtime error (the message holds cudaGetErrorString's text and the call).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// cudaErrorMemoryAllocation.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

using Stream = void*;  // cudaStream_t

struct Workspace {
  void* ptr;
  std::size_t bytes;
};

// --- optimal-score family (optimal_score_1d.cu, optimal_score_nd.cu, optimal_score_vjp.cu) ---
// 1-D: x_sorted ascending [n], y [q], order [q] (a permutation of the queries sorted by
//   y / mu, NaN last: queries next to each other share data windows); outputs [q].
template <class T>
void optimal_score_1d(const T* y, index_t q, const std::int64_t* order, const T* x_sorted, index_t n, const T* mu,
                      index_t mu_stride, const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean,
                      T* d1, T* d2, Stream stream);

// d-D: y [q, d], x [n, d]; score [q, d], log_density [q], mean [q, d].  path: 0 picks
// (flash kernel for d <= kFlashMaxDim, blocked matrix products above), 1 forces the
// flash kernel (d <= kFlashMaxDim), 2 the blocked path; q_chunk / n_chunk (0: automatic)
// set the blocked path's chunk sizes (tests use small ones to cover several chunks).
constexpr index_t kFlashMaxDim = 256;
constexpr index_t kMaxDim = 16384;  // the blocked path's tested range; larger d still runs
struct NdPlan {
  int path;                  // 1 flash, 2 blocked
  index_t q_chunk, n_chunk;  // blocked path
  std::size_t workspace;     // bytes
};
NdPlan optimal_score_nd_plan(index_t q, index_t n, index_t d, int path, index_t q_chunk, index_t n_chunk);
template <class T>
void optimal_score_nd(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
                      const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean, const NdPlan& plan,
                      Workspace ws, Stream stream);

// Backward pass (optimal_score_vjp.cu), float64, as cpu::optimal_score_vjp_y / _x:
// w_qi = exp(-||y_q - mu_q x_i||^2 / (2 sigma_q^2) - lse_q), y [q, d], x [n, d], lse [q];
//   vjp_y: out [q, d], out_q = sum_i w_qi (g_q . (x_i - m_q)) (x_i - m_q)  (mean m, g [q, d]);
//   vjp_x: out [n, d], out_j = sum_q w_qj (a_q + t u_q + (e_q + f_q t) x_j), t = b_q . x_j
//          (a, b, u [q, d]; e, f [q]).
void optimal_score_vjp_y(const double* y, index_t q, const double* x, index_t n, index_t d, const double* mu,
                         index_t mu_stride, const double* sigma, index_t sigma_stride, const double* lse,
                         const double* mean, const double* g, double* out, Stream stream);
void optimal_score_vjp_x(const double* y, index_t q, const double* x, index_t n, index_t d, const double* mu,
                         index_t mu_stride, const double* sigma, index_t sigma_stride, const double* lse,
                         const double* a, const double* b, const double* u, const double* e, const double* f,
                         double* out, Stream stream);

// The exp-throughput ceiling of the 1-D kernel: `threads` threads each evaluate
// exp_nonpos (fast_exp.hpp) `iters` times on register values (no memory traffic) and
// write their sums to out [threads].
template <class T>
void exp_ceiling(index_t threads, index_t iters, T* out, Stream stream);

// --- metrics family (metrics.cu) ---------------------------------------------------------
// gaussian_kernel_sum: *out (one double on the device) = sum_{i,j} exp(-||x_i - y_j||^2 /
//   (2 bandwidth^2)), x [n, d], y [m, d]; symmetric: y is x (one triangle of tiles).
std::size_t kernel_sum_workspace(index_t n, index_t m);
template <class T>
void gaussian_kernel_sum(const T* x, index_t n, const T* y, index_t m, index_t d, double bandwidth, bool symmetric,
                         double* out, Workspace ws, Stream stream);
// nearest_neighbors: the k nearest rows of y [m, d] for each row of x [n, d], ascending,
//   ties to the lower index: dist [n, k], idx [n, k].
std::size_t nearest_neighbors_workspace(index_t n, int k);
template <class T>
void nearest_neighbors(const T* x, index_t n, const T* y, index_t m, index_t d, int k, T* dist, std::int64_t* idx,
                       Workspace ws, Stream stream);

// --- sampler family (sampler.cu, math in bigstep/sampler.hpp) ------------------------------
// Steps k0 .. k1 - 1 of the fused loop (one thread per particle), state x [n, d] float64
// updated in place; tables h, r, mu, sigma, tau [n_steps] on the device; path [n_steps + 1,
// n, d] or null (row k + 1 written after step k).
struct SamplerArgs {
  double* x;
  index_t n, d, k0, k1;
  const double *h, *r, *mu, *sigma, *tau;
  double c;
  std::uint64_t seed;
  double* path;
};
// s* of data [n_data, d] by direct sums (d <= 3; 1-D data: d = 1).
void sampler_empirical(const SamplerArgs& a, const double* data, index_t n_data, Stream stream);
std::size_t sampler_workspace(index_t n, index_t d);  // scratch of the generic-d score kernels
void sampler_gaussian(const SamplerArgs& a, const double* mean, const double* vecs, const double* lam, Workspace ws,
                      Stream stream);
void sampler_relu(const SamplerArgs& a, const double* w1, const double* b1, const double* w2t, const double* b2,
                  index_t width, Workspace ws, Stream stream);
// One step k with a given score s [n, d] (the per-step path of s* in many dimensions):
// noise and update of x, path row k + 1.
void sampler_update(const SamplerArgs& a, index_t k, const double* score, Stream stream);
constexpr index_t kSamplerDirectMaxDim = 3;

// --- SGD family (sgd.cu, math in bigstep/sgd.hpp) -------------------------------------------
// Steps [k0, k1) of R 1-D networks of width m, one thread block per network; parameters
// w1, w2, b [R, m], diverged_step, loss_sum, loss_count [R] updated in place, as
// cpu::SgdChunk.
struct SgdArgs {
  const double* x;
  index_t n;
  double mu, sigma;
  index_t networks, m, batch;
  const double* lr;            // [R]
  const std::uint64_t* seed;   // [R]
  double *w1, *w2, *b;         // [R, m]
  bool train_inner;
  double clip;
  index_t k0, k1;
  std::int64_t* diverged_step;  // [R]
  double* loss_sum;             // [R]
  std::int64_t* loss_count;     // [R]
};
std::size_t sgd_workspace(index_t networks, index_t m, index_t batch);
void sgd_train(const SgdArgs& a, Workspace ws, Stream stream);

// --- device queries (device.cu) --------------------------------------------------------------
int pointer_device(const void* p);  // device index of a device pointer, -1 for host memory
// Launches an empty kernel with 2048 threads per block (more than any device allows): a
// launch error on purpose, for the tests of error reporting (throws Error).
void launch_error_selftest(Stream stream);

}  // namespace bigstep::cuda
