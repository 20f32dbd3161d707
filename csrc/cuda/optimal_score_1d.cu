// 1-D optimal-score kernel on the GPU (the CPU launcher: csrc/cpu/optimal_score_1d_kernels.cpp;
// the math: bigstep/optimal_score.hpp).
//
// One thread per query.  The queries come in order of y / mu (the caller's argsort), so
// the kThreads queries of a block have neighbouring data windows; the block walks the
// union of its windows in chunks of kChunk sorted data points staged in shared memory,
// and each thread sums the terms of its own window: shifted logits
// l_i = a_i (e' - a_i / 2) <= 0 (no running maximum), p_i = exp_nonpos(l_i) and p_i u_i^j,
// u_i = x_i - x_s.  Terms are summed in T and added to double sums every kFlush data
// points, at multiples of kFlush of the data index, so a query's sums are split at the
// same places whatever block it falls in (results do not depend on the grouping).
// Bound by exp throughput: exp_ceiling below is the same exp on register values alone.
#include "common.cuh"

#include "bigstep/fast_exp.hpp"
#include "bigstep/optimal_score.hpp"

namespace bigstep::cuda {
namespace {

constexpr int kThreads = 128;
constexpr index_t kChunk = 2048;
constexpr index_t kFlush = 128;

template <class T, bool kMoments>
__global__ void __launch_bounds__(kThreads)
    os1d_kernel(const T* __restrict__ y, index_t q, const std::int64_t* __restrict__ order,
                const T* __restrict__ x, index_t n, const T* __restrict__ mu, index_t mu_stride,
                const T* __restrict__ sigma, index_t sigma_stride, T* score, T* log_density, T* mean, T* d1, T* d2) {
  __shared__ T xs[kChunk];
  __shared__ index_t warp_lo[kThreads / 32], warp_hi[kThreads / 32];
  const index_t slot = static_cast<index_t>(blockIdx.x) * kThreads + threadIdx.x;
  const bool active = slot < q;
  const index_t i = active ? order[slot] : 0;
  double yi = 0, mui = 1, si = 1;
  Window1D<T> w{};
  if (active) {
    yi = y[i];
    mui = mu[i * mu_stride];
    si = sigma[i * sigma_stride];
    w = window_1d<T>(yi, x, n, mui, si);
  }
  const index_t lo = active && w.finite ? w.lo : n;
  const index_t hi = active && w.finite ? w.hi : 0;
  // the block's union of windows
  index_t ulo = lo, uhi = hi;
  for (int o = 16; o > 0; o >>= 1) {
    ulo = vmin(ulo, __shfl_xor_sync(kFullMask, ulo, o));
    uhi = vmax(uhi, __shfl_xor_sync(kFullMask, uhi, o));
  }
  if (threadIdx.x % 32 == 0) {
    warp_lo[threadIdx.x / 32] = ulo;
    warp_hi[threadIdx.x / 32] = uhi;
  }
  __syncthreads();
  ulo = warp_lo[0];
  uhi = warp_hi[0];
  for (int k = 1; k < kThreads / 32; ++k) {
    ulo = vmin(ulo, warp_lo[k]);
    uhi = vmax(uhi, warp_hi[k]);
  }
  Sums1D sums;
  for (index_t c = ulo / kChunk * kChunk; c < uhi; c += kChunk) {
    const index_t cn = vmin(kChunk, n - c);
    __syncthreads();  // the previous chunk is consumed
    for (index_t t = threadIdx.x; t < cn; t += kThreads) xs[t] = x[c + t];
    __syncthreads();
    const index_t a = vmax(c, lo), b = vmin(c + cn, hi);
    index_t j = a;
    while (j < b) {
      const index_t stop = vmin(b, (j / kFlush + 1) * kFlush);
      T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (; j < stop; ++j) {
        const T xv = xs[j - c];
        const T u = xv - w.xs_t;
        const T p = exp_nonpos(shifted_logit_1d<T>(xv, w.xs_t, w.r, w.es));
        const T pu = p * u;
        s0 += p;
        s1 += pu;
        if (kMoments) {
          s2 += pu * u;
          s3 += pu * u * u;
        }
      }
      sums.s0 += s0;
      sums.s1 += s1;
      if (kMoments) {
        sums.s2 += s2;
        sums.s3 += s3;
      }
    }
  }
  if (!active) return;
  Result1D res;
  if (w.finite) {
    res = finish_1d(sums, w.xs, w.e, mui, si);
    res.log_density -= std::log(static_cast<double>(n));
  } else {
    const double nan = static_cast<double>(NAN);
    res = Result1D{nan, nan, nan, nan, nan};
  }
  if (score) score[i] = static_cast<T>(res.score);
  if (log_density) log_density[i] = static_cast<T>(res.log_density);
  if (mean) mean[i] = static_cast<T>(res.mean);
  if (d1) d1[i] = static_cast<T>(res.d1);
  if (d2) d2[i] = static_cast<T>(res.d2);
}

// The ceiling: exp_nonpos of values in registers, a chain of kInter independent values per
// thread so that the exps overlap as they do in the kernel's unrolled loop.
template <class T>
__global__ void __launch_bounds__(256) exp_ceiling_kernel(index_t threads, index_t iters, T* out) {
  const index_t t = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= threads) return;
  constexpr int kInter = 4;
  T v[kInter], acc[kInter];
  for (int k = 0; k < kInter; ++k) {
    v[k] = -static_cast<T>((t * kInter + k) % 1000) * static_cast<T>(0.01);
    acc[k] = 0;
  }
  const T step = static_cast<T>(-1e-4);
  for (index_t it = 0; it < iters; it += kInter)
    for (int k = 0; k < kInter; ++k) {
      acc[k] += exp_nonpos(v[k]);
      v[k] += step;
    }
  T s = 0;
  for (int k = 0; k < kInter; ++k) s += acc[k];
  out[t] = s;
}

}  // namespace

template <class T>
void optimal_score_1d(const T* y, index_t q, const std::int64_t* order, const T* x_sorted, index_t n, const T* mu,
                      index_t mu_stride, const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean,
                      T* d1, T* d2, Stream stream) {
  if (q <= 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(q, kThreads)));
  if (d1 != nullptr || d2 != nullptr)
    launch("optimal_score_1d", os1d_kernel<T, true>, grid, dim3(kThreads), 0, stream, y, q, order, x_sorted, n, mu,
           mu_stride, sigma, sigma_stride, score, log_density, mean, d1, d2);
  else
    launch("optimal_score_1d", os1d_kernel<T, false>, grid, dim3(kThreads), 0, stream, y, q, order, x_sorted, n, mu,
           mu_stride, sigma, sigma_stride, score, log_density, mean, d1, d2);
}

template <class T>
void exp_ceiling(index_t threads, index_t iters, T* out, Stream stream) {
  if (threads <= 0) return;
  launch("exp_ceiling", exp_ceiling_kernel<T>, dim3(static_cast<unsigned>(ceil_div(threads, 256))), dim3(256), 0,
         stream, threads, iters, out);
}

#define BIGSTEP_INSTANTIATE(T)                                                                                   \
  template void optimal_score_1d<T>(const T*, index_t, const std::int64_t*, const T*, index_t, const T*, index_t, \
                                    const T*, index_t, T*, T*, T*, T*, T*, Stream);                               \
  template void exp_ceiling<T>(index_t, index_t, T*, Stream);
BIGSTEP_INSTANTIATE(float)
BIGSTEP_INSTANTIATE(double)
#undef BIGSTEP_INSTANTIATE

}  // namespace bigstep::cuda
