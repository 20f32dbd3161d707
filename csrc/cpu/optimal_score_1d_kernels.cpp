// 1-D optimal-score kernel (compiled once per instruction set, see isa.hpp).
//
// Per query: binary search for the nearest data point x_s and the window of data
// whose terms do not underflow, then one vectorised pass over the window summing
// p_i = exp(l_i) and p_i u_i^j (j = 1..3) with the shifted logits of
// bigstep/optimal_score.hpp.  No running maximum, no rescaling, no temporaries.
// float inputs: logits and exp in float, sums of blocks of 512 terms in float then
// added in double; per-query scalars and the final formulas in double.
#include <algorithm>
#include <cmath>
#include <limits>

#include "bigstep/fast_exp.hpp"
#include "bigstep/isa.hpp"
#include "bigstep/optimal_score.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

template <class T, bool kMoments>
void window_sums(const T* __restrict x, index_t n, T xs, T r, T es, Sums1D& out) {
  constexpr index_t kBlock = sizeof(T) == 4 ? 512 : 1 << 30;
  for (index_t start = 0; start < n; start += kBlock) {
    const index_t stop = std::min(n, start + kBlock);
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (index_t i = start; i < stop; ++i) {
      const T u = x[i] - xs;
      const T p = exp_nonpos(shifted_logit_1d<T>(x[i], xs, r, es));
      const T pu = p * u;
      s0 += p;
      s1 += pu;
      if constexpr (kMoments) {
        s2 += pu * u;
        s3 += pu * u * u;
      }
    }
    out.s0 += s0;
    out.s1 += s1;
    out.s2 += s2;
    out.s3 += s3;
  }
}

template <class T>
void one_query(T yT, const T* x, index_t n, double mu, double sigma, bool moments, Result1D& res) {
  const double y = yT;
  if (!std::isfinite(y)) {  // NaN (or infinite) queries give NaN in their row only
    const double nan = std::numeric_limits<double>::quiet_NaN();
    res = Result1D{nan, nan, nan, nan, nan};
    return;
  }
  // nearest data point to y / mu
  const double z = y / mu;
  const T* it = std::lower_bound(x, x + n, static_cast<T>(z));
  index_t s = it - x;
  if (s == n || (s > 0 && std::abs(z - double(x[s - 1])) <= std::abs(double(x[s]) - z))) --s;
  const double xs = x[s];
  const double e = std::fma(-mu, xs, y);
  // window of non-underflowing terms: |y - mu x_i| <= R
  const double R = std::sqrt(2.0 * sigma * sigma * underflow_logit<T>() + e * e);
  const T lo_key = static_cast<T>((y - R) / mu), hi_key = static_cast<T>((y + R) / mu);
  const index_t lo = std::min<index_t>(std::lower_bound(x, x + s, lo_key) - x, s);
  const index_t hi = std::max<index_t>(std::upper_bound(x + s, x + n, hi_key) - x, s + 1);
  Sums1D sums;
  const T r = static_cast<T>(mu / sigma), es = static_cast<T>(e / sigma);
  if (moments)
    window_sums<T, true>(x + lo, hi - lo, static_cast<T>(xs), r, es, sums);
  else
    window_sums<T, false>(x + lo, hi - lo, static_cast<T>(xs), r, es, sums);
  res = finish_1d(sums, xs, e, mu, sigma);
}

}  // namespace

template <class T>
void optimal_score_1d(const T* y, index_t q, const T* x_sorted, index_t n, const T* mu, index_t mu_stride,
                      const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean, T* d1, T* d2) {
  const bool moments = d1 != nullptr || d2 != nullptr;
#pragma omp parallel for schedule(dynamic, 64)
  for (index_t i = 0; i < q; ++i) {
    Result1D r;
    one_query<T>(y[i], x_sorted, n, mu[i * mu_stride], sigma[i * sigma_stride], moments, r);
    if (score) score[i] = static_cast<T>(r.score);
    if (log_density) log_density[i] = static_cast<T>(r.log_density - std::log(double(n)));
    if (mean) mean[i] = static_cast<T>(r.mean);
    if (d1) d1[i] = static_cast<T>(r.d1);
    if (d2) d2[i] = static_cast<T>(r.d2);
  }
}

template void optimal_score_1d<float>(const float*, index_t, const float*, index_t, const float*, index_t,
                                      const float*, index_t, float*, float*, float*, float*, float*);
template void optimal_score_1d<double>(const double*, index_t, const double*, index_t, const double*, index_t,
                                       const double*, index_t, double*, double*, double*, double*, double*);

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
