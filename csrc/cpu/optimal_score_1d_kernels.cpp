// 1-D optimal-score kernel (compiled once per instruction set; entry points listed in kernels.hpp).
//
// Per query: binary search for the nearest data point x_s and for the window of data
// whose terms do not underflow, then vectorised sums of p_i = exp(l_i) and
// p_i u_i^j (j = 1..3) with the shifted logits of bigstep/optimal_score.hpp.  No
// running maximum, no rescaling, no temporaries of size q x n.
//
// Cache blocking: queries are processed in order of y/mu (an argsort, O(q) memory),
// in groups of kGroup; a group walks the union of its windows in chunks of kChunk
// data points, aligned to multiples of kChunk, that stay in L1 while every query of
// the group uses them.  A query's sums are split at the same places whatever its
// group, so its result does not depend on the other queries or the thread count.
//
// Lane sums are in T and flushed into double every kBlock terms (both dtypes);
// per-query scalars and the final formulas are in double.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "bigstep/fast_exp.hpp"
#include "bigstep/optimal_score.hpp"
#include "kernels.hpp"
#include "simd.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

constexpr index_t kGroup = 8;
constexpr index_t kChunk = 2048;

// Adds the sums over x[0..n) to `out`: p_i = exp(l_i) and p_i u_i^j, u_i = x_i - x_s.
// Vector lanes accumulate in T; blocks of at most kBlock terms are flushed into the
// double sums, so the rounding error does not grow with the window (float32 keeps
// ~1e-6 relative accuracy at any n).
template <class T, bool kMoments>
void window_sums(const T* __restrict x, index_t n, T xs, T r, T es, Sums1D& out) {
  using V = simd::vec<T>;
  constexpr index_t W = simd::width<T>;
  constexpr int U = 4;  // independent vectors per step, to overlap the exp's latency
  constexpr index_t kBlock = 512;  // a multiple of U * W on every ISA
  const V vxs = simd::broadcast(xs), vr = simd::broadcast(r), ves = simd::broadcast(es);
  auto term = [&](const V& xv, V& s0, V& s1, V& s2, V& s3) {
    const V u = xv - vxs;
    const V a = vr * u;
    const V p = simd::Traits<T>::exp_nonpos(a * (ves - T(0.5) * a));
    const V pu = p * u;
    s0 += p;
    s1 += pu;
    if constexpr (kMoments) {
      s2 += pu * u;
      s3 += pu * u * u;
    }
  };
  index_t i = 0;
  while (i + W <= n) {
    const index_t stop = std::min(n, i + kBlock);
    V s0[U] = {}, s1[U] = {}, s2[U] = {}, s3[U] = {};
    for (; i + U * W <= stop; i += U * W) {
#pragma GCC unroll 4
      for (int j = 0; j < U; ++j) term(simd::load(x + i + j * W), s0[j], s1[j], s2[j], s3[j]);
    }
    for (; i + W <= stop; i += W) term(simd::load(x + i), s0[0], s1[0], s2[0], s3[0]);
    for (int j = 1; j < U; ++j) {
      s0[0] += s0[j];
      s1[0] += s1[j];
      s2[0] += s2[j];
      s3[0] += s3[j];
    }
    out.s0 += simd::hsum<T>(s0[0]);
    out.s1 += simd::hsum<T>(s1[0]);
    if constexpr (kMoments) {
      out.s2 += simd::hsum<T>(s2[0]);
      out.s3 += simd::hsum<T>(s3[0]);
    }
  }
  for (; i < n; ++i) {  // tail: the same math on scalars
    const T u = x[i] - xs;
    const T p = exp_nonpos(shifted_logit_1d<T>(x[i], xs, r, es));
    out.s0 += p;
    out.s1 += p * u;
    if constexpr (kMoments) {
      out.s2 += double(p) * u * u;
      out.s3 += double(p) * u * u * u;
    }
  }
}

// Everything one query needs before the sums: nearest point, window, scaled scalars.
template <class T>
struct Query {
  bool finite;
  double y, mu, sigma, xs, e;
  index_t lo, hi;  // window [lo, hi) of the sorted data
  T xs_t, r, es;
  Sums1D sums;
};

template <class T>
void setup(Query<T>& qr, double y, const T* x, index_t n, double mu, double sigma) {
  qr.y = y;
  qr.mu = mu;
  qr.sigma = sigma;
  const Window1D<T> w = window_1d<T>(y, x, n, mu, sigma);  // bigstep/optimal_score.hpp
  qr.finite = w.finite;
  qr.lo = w.lo;
  qr.hi = w.hi;
  if (!qr.finite) return;
  qr.xs = w.xs;
  qr.e = w.e;
  qr.xs_t = w.xs_t;
  qr.r = w.r;
  qr.es = w.es;
}

}  // namespace

template <class T>
void optimal_score_1d(const T* y, index_t q, const T* x_sorted, index_t n, const T* mu, index_t mu_stride,
                      const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean, T* d1, T* d2) {
  const bool moments = d1 != nullptr || d2 != nullptr;
  const double log_n = std::log(double(n));
  // queries in order of y / mu (NaN last) so that a group's windows overlap
  std::vector<index_t> order(q);
  std::iota(order.begin(), order.end(), index_t(0));
  auto key = [&](index_t i) {
    const double k = double(y[i]) / double(mu[i * mu_stride]);
    return std::isnan(k) ? std::numeric_limits<double>::infinity() : k;
  };
  std::sort(order.begin(), order.end(), [&](index_t a, index_t b) { return key(a) < key(b); });
  const index_t groups = (q + kGroup - 1) / kGroup;
#pragma omp parallel for schedule(dynamic, 4) num_threads(num_threads()) if (parallel_worth(double(q) * double(n)))
  for (index_t g = 0; g < groups; ++g) {
    const index_t g0 = g * kGroup, gn = std::min(kGroup, q - g0);
    Query<T> qs[kGroup];
    index_t lo = n, hi = 0;
    for (index_t k = 0; k < gn; ++k) {
      const index_t i = order[g0 + k];
      setup<T>(qs[k], y[i], x_sorted, n, mu[i * mu_stride], sigma[i * sigma_stride]);
      if (qs[k].finite) {
        lo = std::min(lo, qs[k].lo);
        hi = std::max(hi, qs[k].hi);
      }
    }
    for (index_t c = lo / kChunk * kChunk; c < hi; c += kChunk) {
      const index_t c_end = std::min(hi, c + kChunk);
      for (index_t k = 0; k < gn; ++k) {
        Query<T>& qr = qs[k];
        const index_t a = std::max(c, qr.lo), b = std::min(c_end, qr.hi);
        if (!qr.finite || a >= b) continue;
        if (moments)
          window_sums<T, true>(x_sorted + a, b - a, qr.xs_t, qr.r, qr.es, qr.sums);
        else
          window_sums<T, false>(x_sorted + a, b - a, qr.xs_t, qr.r, qr.es, qr.sums);
      }
    }
    for (index_t k = 0; k < gn; ++k) {
      const index_t i = order[g0 + k];
      const Query<T>& qr = qs[k];
      Result1D res;
      if (qr.finite) {
        res = finish_1d(qr.sums, qr.xs, qr.e, qr.mu, qr.sigma);
        res.log_density -= log_n;
      } else {  // NaN (or infinite) queries give NaN in their row only
        const double nan = std::numeric_limits<double>::quiet_NaN();
        res = Result1D{nan, nan, nan, nan, nan};
      }
      if (score) score[i] = static_cast<T>(res.score);
      if (log_density) log_density[i] = static_cast<T>(res.log_density);
      if (mean) mean[i] = static_cast<T>(res.mean);
      if (d1) d1[i] = static_cast<T>(res.d1);
      if (d2) d2[i] = static_cast<T>(res.d2);
    }
  }
}

template <class T>
void exp_nonpos_array(const T* x, T* out, index_t n) {
  using V = simd::vec<T>;
  constexpr index_t W = simd::width<T>;
  const index_t nv = n / W * W;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel_worth(double(n)))
  for (index_t i = 0; i < nv; i += W) {
    const V r = simd::Traits<T>::exp_nonpos(simd::load(x + i));
    std::memcpy(out + i, &r, sizeof r);
  }
  for (index_t i = nv; i < n; ++i) out[i] = exp_nonpos(x[i]);
}


BIGSTEP_EXPORT_TYPED(optimal_score_1d)
BIGSTEP_EXPORT_TYPED(exp_nonpos_array)

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
