// Per-element math of the empirical optimal score family (paper eq. 6 and 9).
//
// Data x_1..x_n, query y, noise level (mu, sigma).  Weights
//   w_i(y) = softmax_i( -||y - mu x_i||^2 / (2 sigma^2) ),
//   s*(y) = (mu sum_i w_i x_i - y) / sigma^2,   E[W|y] = sum_i w_i x_i,
//   log p(y) = log( (1/n) sum_i N(y; mu x_i, sigma^2 I) ).
//
// 1-D: the logits are shifted by the largest one, which belongs to the data point
// x_s nearest to y/mu (found by binary search in the sorted data).  With
// u_i = x_i - x_s, e = y - mu x_s and the scaled a_i = (mu/sigma) u_i, e' = e/sigma,
//   l_i = -((e - mu u_i)^2 - e^2) / (2 sigma^2) = a_i (e' - a_i / 2),
// which avoids the cancellation of two 1/sigma^2-sized terms of the expanded form:
// its absolute error is a few ulps of |a_i| max(|e'|, |a_i|), the same as the effect
// of rounding y and x_i themselves, at any sigma; and l_i <= 0 without a running
// maximum.  Terms with l_i below the exp underflow threshold are skipped by
// a window found by binary search: |y - mu x_i| <= sqrt(2 sigma^2 L + e^2); this
// drops only terms that round to 0 in the compute type, and makes small sigma fast.
// Moments are taken about x_s:
//   E[W] = x_s + S1/S0,  s* = (mu S1/S0 - e) / sigma^2   (no cancellation of y and mu x_s),
//   Var W = S2/S0 - (S1/S0)^2,  third central moment from S1..S3 (eq. 9):
//   s*'  = (-1 + mu^2 Var W / sigma^2) / sigma^2,  s*'' = mu^3 M3 / sigma^6.
#pragma once
#include <cmath>

#include "bigstep/config.hpp"

namespace bigstep {

// Which outputs a call wants (bit mask).
enum Output : int {
  kScore = 1,
  kLogDensity = 2,
  kPosteriorMean = 4,
  kDerivatives = 8,  // 1-D only: s*, s*', s*''
};

// Shifted 1-D logit l_i <= 0 (see above): r = mu/sigma, es = e/sigma, all in the
// compute type T.
template <class T>
BIGSTEP_HD T shifted_logit_1d(T x, T xs, T r, T es) {
  const T a = r * (x - xs);
  return a * (es - T(0.5) * a);
}

// Logit below which exp underflows to 0 in T (the 1-D window half-width uses it).
template <class T>
BIGSTEP_HD double underflow_logit() {
  return sizeof(T) == 4 ? 104.0 : 745.5;
}

// First index i in [first, last) of ascending x with x[i] >= v (lower) or x[i] > v
// (upper); last if none (std::lower_bound / std::upper_bound, for device code too).
template <class T>
BIGSTEP_HD index_t lower_bound_index(const T* x, index_t first, index_t last, T v) {
  while (first < last) {
    const index_t mid = first + (last - first) / 2;
    if (x[mid] < v)
      first = mid + 1;
    else
      last = mid;
  }
  return first;
}
template <class T>
BIGSTEP_HD index_t upper_bound_index(const T* x, index_t first, index_t last, T v) {
  while (first < last) {
    const index_t mid = first + (last - first) / 2;
    if (!(v < x[mid]))
      first = mid + 1;
    else
      last = mid;
  }
  return first;
}

// Everything one 1-D query needs before its sums (the CPU and CUDA kernels share it):
// x_s, the sorted data point nearest to y / mu, e = y - mu x_s, the window [lo, hi) of
// the data whose terms do not underflow in T (|y - mu x_i| <= sqrt(2 sigma^2 L + e^2)),
// and the scalars of shifted_logit_1d in T.  Non-finite y: finite = false, empty window.
template <class T>
struct Window1D {
  bool finite;
  double xs, e;
  index_t lo, hi;
  T xs_t, r, es;
};

template <class T>
BIGSTEP_HD Window1D<T> window_1d(double y, const T* x, index_t n, double mu, double sigma) {
  Window1D<T> w{};
  w.finite = std::isfinite(y);
  w.lo = w.hi = 0;
  if (!w.finite) return w;
  const double z = y / mu;  // nearest data point to y / mu
  index_t s = lower_bound_index<T>(x, 0, n, static_cast<T>(z));
  if (s == n || (s > 0 && std::fabs(z - double(x[s - 1])) <= std::fabs(double(x[s]) - z))) --s;
  w.xs = x[s];
  w.e = std::fma(-mu, w.xs, y);
  const double R = std::sqrt(2.0 * sigma * sigma * underflow_logit<T>() + w.e * w.e);
  const T lo_key = static_cast<T>((y - R) / mu), hi_key = static_cast<T>((y + R) / mu);
  const index_t lo = lower_bound_index<T>(x, 0, s, lo_key);
  const index_t hi = upper_bound_index<T>(x, s, n, hi_key);
  w.lo = lo < s ? lo : s;
  w.hi = hi > s + 1 ? hi : s + 1;
  w.xs_t = static_cast<T>(w.xs);
  w.r = static_cast<T>(mu / sigma);
  w.es = static_cast<T>(w.e / sigma);
  return w;
}

// Sums of the shifted weights p_i = exp(l_i) and their moments about x_s.
struct Sums1D {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
};

struct Result1D {
  double score, log_density, mean, d1, d2;
};

// Turns the sums of one query into every output.  log_norm = log(n) + log(sigma)
// + log(2 pi)/2 is passed in so callers compute it once.
BIGSTEP_HD Result1D finish_1d(const Sums1D& s, double xs, double e, double mu, double sigma) {
  const double inv_s2 = 1.0 / (sigma * sigma);
  const double m1 = s.s1 / s.s0;
  Result1D r;
  r.mean = xs + m1;
  r.score = (mu * m1 - e) * inv_s2;
  r.log_density = std::log(s.s0) - 0.5 * e * e * inv_s2 - std::log(sigma) - 0.91893853320467274178;
  const double m2 = s.s2 / s.s0, m3 = s.s3 / s.s0;
  const double var = m2 - m1 * m1;
  const double third = m3 - 3.0 * m1 * m2 + 2.0 * m1 * m1 * m1;
  r.d1 = (-1.0 + mu * mu * var * inv_s2) * inv_s2;
  r.d2 = mu * mu * mu * third * inv_s2 * inv_s2 * inv_s2;
  return r;
}

// d-D logit in GEMM form, up to the query's constant -||y||^2/(2 sigma^2):
//   l_ij = a_i <y_i, x_j> - c_i ||x_j||^2,  a_i = mu_i / sigma_i^2, c_i = mu_i^2 / (2 sigma_i^2).
template <class T>
BIGSTEP_HD T gemm_logit(T dot, T xnorm2, T a, T c) {
  return a * dot - c * xnorm2;
}

// Backward pass (vector-Jacobian products; csrc/cpu/optimal_score_vjp_kernels.cpp).
// The weights come from the forward pass's log-normaliser lse = log sum_i exp(l_i) in the
// distance form l_i = -||y - mu x_i||^2 / (2 sigma^2), which has no cancellation:
//   w_i = exp(l_i - lse).
// With m = E[W|y], c = mu / sigma^2 and a cotangent g:
//   d(E[W|y])/dy = c Cov(W|y)            (symmetric), so  g^T dE/dy = c E[(g.(W - m)) (W - m)]
//     (summed in this centred form: E[(g.W) W] - (g.m) m cancels where the weights are sharp);
//   d(E[W|y])/dx_j = w_j (I + c (x_j - m)(y - mu x_j)^T),
//   s* = (mu m - y)/sigma^2:  ds*/dy = c^2 Cov(W|y) - I/sigma^2,  ds*/dx_j = c dm/dx_j;
//   log p: d/dy = s*(y),  d/dx_j = w_j c (y - mu x_j).
namespace vjp {

BIGSTEP_HD double neg_inv_2s2(double sigma) { return -0.5 / (sigma * sigma); }

// exp(-r2 / (2 sigma^2) - lse), r2 = ||y - mu x_i||^2, neg_h = -1 / (2 sigma^2).
BIGSTEP_HD double weight(double r2, double neg_h, double lse) { return std::exp(r2 * neg_h - lse); }

}  // namespace vjp

}  // namespace bigstep
