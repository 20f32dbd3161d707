// Sample-quality metrics on the GPU (the CPU launcher: csrc/cpu/metrics_kernels.cpp; the
// math: bigstep/metrics.hpp): Gaussian-kernel sums (MMD) and k nearest neighbours.
//
// Both take tiles of TR row points against tiles of TC column points; coordinates go
// through shared memory in slices of KS, and each thread forms 4 x 4 squared distances in
// difference form, sum_k (a_ik - b_jk)^2, in double, adding the coordinates in order (the
// CPU kernels' order, so the distances agree with theirs to rounding).
//   kernel sums: one block per pair of tiles (a 1-D grid: any n, m; symmetric: only pairs u >= t, the
//     off-diagonal ones counted twice) adds its kernel values in a fixed order and writes
//     one partial sum; a second kernel adds the partial sums in order (the result does not
//     depend on the schedule).
//   neighbours: a block owns TR rows and walks every column tile; after each tile, one
//     thread per row merges the tile's distances into the row's sorted list (topk_insert:
//     ascending, ties to the lower index), kept in the workspace.
// Memory: O((n + m) d) inputs, O(tiles) partial sums, O(n k) lists; nothing n x m.
#include "common.cuh"

#include "bigstep/fast_exp.hpp"
#include "bigstep/metrics.hpp"

namespace bigstep::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int TR = 64, TC = 64, KS = 32;  // rows, columns per tile; coordinates per slice
constexpr int LDS = KS + 1;

// The 4 x 4 squared distances of rows ra..ra+3 (ra = 4 (tid / 16)) and columns
// cb + 16 c (cb = tid % 16, c < 4) of tiles starting at row i0 of a and column j0 of b.
template <class T>
__device__ void tile_distances(const T* __restrict__ a, index_t n, const T* __restrict__ b, index_t m, index_t d,
                               index_t i0, index_t j0, double* As, double* Bs, double (&r2)[4][4]) {
  const int tid = static_cast<int>(threadIdx.x);
  const int ra = 4 * (tid / 16), cb = tid % 16;
  BIGSTEP_UNROLL
  for (int r = 0; r < 4; ++r)
    BIGSTEP_UNROLL
    for (int c = 0; c < 4; ++c) r2[r][c] = 0.0;
  for (index_t k0 = 0; k0 < d; k0 += KS) {
    const int kn = static_cast<int>(vmin<index_t>(KS, d - k0));
    __syncthreads();  // the previous slice is consumed
    for (int e = tid; e < TR * KS; e += kThreads) {
      const int r = e / KS, kk = e % KS;
      As[r * LDS + kk] = (i0 + r < n && kk < kn) ? double(a[(i0 + r) * d + k0 + kk]) : 0.0;
      Bs[r * LDS + kk] = (j0 + r < m && kk < kn) ? double(b[(j0 + r) * d + k0 + kk]) : 0.0;
    }
    __syncthreads();
    for (int kk = 0; kk < kn; ++kk) {
      double av[4], bv[4];
      BIGSTEP_UNROLL
      for (int r = 0; r < 4; ++r) av[r] = As[(ra + r) * LDS + kk];
      BIGSTEP_UNROLL
      for (int c = 0; c < 4; ++c) bv[c] = Bs[(cb + 16 * c) * LDS + kk];
      BIGSTEP_UNROLL
      for (int r = 0; r < 4; ++r)
        BIGSTEP_UNROLL
        for (int c = 0; c < 4; ++c) {
          const double e = av[r] - bv[c];
          r2[r][c] = std::fma(e, e, r2[r][c]);
        }
    }
  }
}

// Block sum in a fixed order: lanes by a shuffle tree, warps in order.
__device__ double block_sum(double v, double* scratch) {
  v = warp_sum(v);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < kThreads / 32; ++w) total += scratch[w];
  return total;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    kernel_sum_tiles(const T* __restrict__ a, index_t n, const T* __restrict__ b, index_t m, index_t d, double neg,
                     bool symmetric, double* partial) {
  __shared__ double As[TR * LDS], Bs[TC * LDS], scratch[kThreads / 32];
  const index_t slot = blockIdx.x;  // one block per pair of tiles (t, u), row-major
  const index_t tm = ceil_div(m, TC);
  const index_t t = slot / tm, u = slot % tm;
  if (symmetric && u < t) {  // mirrored by (u, t); the whole block leaves together
    if (threadIdx.x == 0) partial[slot] = 0.0;
    return;
  }
  const index_t i0 = t * TR, j0 = u * TC;
  double r2[4][4];
  tile_distances<T>(a, n, b, m, d, i0, j0, As, Bs, r2);
  const int tid = static_cast<int>(threadIdx.x);
  const int ra = 4 * (tid / 16), cb = tid % 16;
  double s = 0.0;
  BIGSTEP_UNROLL
  for (int r = 0; r < 4; ++r)
    BIGSTEP_UNROLL
    for (int c = 0; c < 4; ++c)
      if (i0 + ra + r < n && j0 + cb + 16 * c < m)
        s += gaussian_kernel(r2[r][c], neg, [](double v) { return exp_nonpos(v); });
  const double total = block_sum(s, scratch);
  if (threadIdx.x == 0) partial[slot] = (symmetric && u > t) ? 2.0 * total : total;
}

__global__ void __launch_bounds__(kThreads) sum_partials(const double* __restrict__ partial, index_t count, double* out) {
  __shared__ double scratch[kThreads / 32];
  double s = 0.0;
  for (index_t e = threadIdx.x; e < count; e += kThreads) s += partial[e];
  const double total = block_sum(s, scratch);
  if (threadIdx.x == 0) *out = total;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    neighbours_tiles(const T* __restrict__ a, index_t n, const T* __restrict__ b, index_t m, index_t d, int k,
                     double* best_d, std::int64_t* best_i, T* dist) {
  // the coordinate slices, and (overlaid, between barriers) the tile's distances
  static_assert(TR * (TC + 1) <= (TR + TC) * LDS, "the distance tile must fit in the slices' space");
  __shared__ double buf[(TR + TC) * LDS];
  double* As = buf;
  double* Bs = buf + TR * LDS;
  double* D = buf;
  const index_t i0 = static_cast<index_t>(blockIdx.x) * TR;
  const int tid = static_cast<int>(threadIdx.x);
  const int ra = 4 * (tid / 16), cb = tid % 16;
  int count = 0;  // of row i0 + tid (tid < TR)
  for (index_t j0 = 0; j0 < m; j0 += TC) {
    double r2[4][4];
    tile_distances<T>(a, n, b, m, d, i0, j0, As, Bs, r2);
    __syncthreads();  // every thread is done with the slices: D overlays them
    BIGSTEP_UNROLL
    for (int r = 0; r < 4; ++r)
      BIGSTEP_UNROLL
      for (int c = 0; c < 4; ++c) D[(ra + r) * (TC + 1) + cb + 16 * c] = r2[r][c];
    __syncthreads();
    if (tid < TR && i0 + tid < n) {
      double* bd = best_d + (i0 + tid) * k;
      std::int64_t* bi = best_i + (i0 + tid) * k;
      const int jn = static_cast<int>(vmin<index_t>(TC, m - j0));
      for (int j = 0; j < jn; ++j) {
        const double v = D[tid * (TC + 1) + j];
        if (count < k || v < bd[k - 1]) count = topk_insert(bd, bi, count, k, v, j0 + j);
      }
    }
    // the next tile_distances starts with a barrier before it overwrites D
  }
  if (tid < TR && i0 + tid < n)
    for (int e = 0; e < k; ++e) dist[(i0 + tid) * k + e] = static_cast<T>(std::sqrt(best_d[(i0 + tid) * k + e]));
}

}  // namespace

std::size_t kernel_sum_workspace(index_t n, index_t m) {
  return sizeof(double) * static_cast<std::size_t>(vmax<index_t>(1, ceil_div(n, TR) * ceil_div(m, TC)));
}

template <class T>
void gaussian_kernel_sum(const T* x, index_t n, const T* y, index_t m, index_t d, double bandwidth, bool symmetric,
                         double* out, Workspace ws, Stream stream) {
  if (n <= 0 || m <= 0) {
    check(cudaMemsetAsync(out, 0, sizeof(double), as_stream(stream)), "cudaMemsetAsync");
    return;
  }
  Carver cv(ws);
  const index_t tn = ceil_div(n, TR), tm = ceil_div(m, TC);
  double* partial = cv.take<double>(tn * tm);
  const double neg = -1.0 / (2.0 * bandwidth * bandwidth);
  launch("gaussian_kernel_sum", kernel_sum_tiles<T>, dim3(static_cast<unsigned>(tn * tm)), dim3(kThreads), 0, stream,
         x, n, y, m, d, neg, symmetric, partial);
  launch("gaussian_kernel_sum (total)", sum_partials, dim3(1), dim3(kThreads), 0, stream,
         static_cast<const double*>(partial), tn * tm, out);
}

std::size_t nearest_neighbors_workspace(index_t n, int k) {
  return sizeof(double) * static_cast<std::size_t>(vmax<index_t>(1, n * k));
}

template <class T>
void nearest_neighbors(const T* x, index_t n, const T* y, index_t m, index_t d, int k, T* dist, std::int64_t* idx,
                       Workspace ws, Stream stream) {
  if (n <= 0) return;
  Carver cv(ws);
  double* best_d = cv.take<double>(n * k);
  launch("nearest_neighbors", neighbours_tiles<T>, dim3(static_cast<unsigned>(ceil_div(n, TR))), dim3(kThreads), 0,
         stream, x, n, y, m, d, k, best_d, idx, dist);
}

#define BIGSTEP_INSTANTIATE(T)                                                                                    \
  template void gaussian_kernel_sum<T>(const T*, index_t, const T*, index_t, index_t, double, bool, double*,      \
                                       Workspace, Stream);                                                         \
  template void nearest_neighbors<T>(const T*, index_t, const T*, index_t, index_t, int, T*, std::int64_t*,       \
                                     Workspace, Stream);
BIGSTEP_INSTANTIATE(float)
BIGSTEP_INSTANTIATE(double)
#undef BIGSTEP_INSTANTIATE

}  // namespace bigstep::cuda
