// d-D optimal-score kernel (compiled once per instruction set, see isa.hpp).
//
// Flash-attention scheme: queries in tiles of QB, data in tiles of NB.  For each
// pair of tiles the logits come from a small matrix product G = Y X^T (GEMM form,
// bigstep/optimal_score.hpp), each query keeps a running maximum m, the sum of
// exp(l - m) and the weighted sum of data rows, rescaled when m grows.  Memory:
// O(QB (NB + d)) per thread, nothing of size q x n.
//
// Precision: Acc is the type products and sums are formed in.  double inputs use
// double.  float inputs use float when the GEMM-form logits are accurate enough
// (error bound below 2e-6 in logit units), and double otherwise: the GEMM form
// cancels two terms of size ||x||^2 mu^2 / sigma^2, so at small sigma float sums
// would give O(1) errors in the weights.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "bigstep/fast_exp.hpp"
#include "bigstep/isa.hpp"
#include "bigstep/optimal_score.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

constexpr index_t QB = 32;
constexpr index_t NB = 128;

// One query tile against all data, in accumulation type A.
template <class T, class A>
void query_tile(const T* y, index_t q0, index_t qn, const T* x, const A* xnorm, index_t n, index_t d,
                const T* mu, index_t mu_stride, const T* sigma, index_t sigma_stride, T* score,
                T* log_density, T* mean) {
  std::vector<A> yt(QB * d), xt(NB * d), g(QB * NB), acc(QB * d, A(0));
  std::vector<double> m(QB, -std::numeric_limits<double>::infinity()), s0(QB, 0.0);
  A a[QB], c[QB];
  bool bad[QB];
  for (index_t i = 0; i < qn; ++i) {
    const double mui = mu[(q0 + i) * mu_stride], si = sigma[(q0 + i) * sigma_stride];
    a[i] = static_cast<A>(mui / (si * si));
    c[i] = static_cast<A>(mui * mui / (2.0 * si * si));
    bad[i] = false;
    for (index_t k = 0; k < d; ++k) {
      const A v = static_cast<A>(y[(q0 + i) * d + k]);
      yt[i * d + k] = v;
      bad[i] = bad[i] || !std::isfinite(double(v));
    }
  }
  for (index_t j0 = 0; j0 < n; j0 += NB) {
    const index_t jn = std::min(NB, n - j0);
    for (index_t j = 0; j < jn; ++j)
      for (index_t k = 0; k < d; ++k) xt[j * d + k] = static_cast<A>(x[(j0 + j) * d + k]);
    // G = Y X^T
    for (index_t i = 0; i < qn; ++i) {
      const A* yi = &yt[i * d];
      for (index_t j = 0; j < jn; ++j) {
        const A* xj = &xt[j * d];
        A dot = 0;
#pragma omp simd reduction(+ : dot)
        for (index_t k = 0; k < d; ++k) dot += yi[k] * xj[k];
        g[i * NB + j] = gemm_logit<A>(dot, xnorm[j0 + j], a[i], c[i]);
      }
    }
    // online softmax and Acc += P X
    for (index_t i = 0; i < qn; ++i) {
      A* gi = &g[i * NB];
      A tile_max = gi[0];
      for (index_t j = 1; j < jn; ++j) tile_max = std::max(tile_max, gi[j]);
      const double new_m = std::max(m[i], double(tile_max));
      const A shift = static_cast<A>(new_m);
      A sum = 0;
#pragma omp simd reduction(+ : sum)
      for (index_t j = 0; j < jn; ++j) {
        gi[j] = exp_nonpos(gi[j] - shift);
        sum += gi[j];
      }
      A* acci = &acc[i * d];
      if (new_m > m[i]) {
        const double scale = std::exp(m[i] - new_m);
        s0[i] *= scale;
        for (index_t k = 0; k < d; ++k) acci[k] = static_cast<A>(acci[k] * scale);
        m[i] = new_m;
      }
      s0[i] += sum;
      for (index_t j = 0; j < jn; ++j) {
        const A p = gi[j];
        const A* xj = &xt[j * d];
#pragma omp simd
        for (index_t k = 0; k < d; ++k) acci[k] += p * xj[k];
      }
    }
  }
  for (index_t i = 0; i < qn; ++i) {
    const index_t row = q0 + i;
    const double mui = mu[row * mu_stride], si = sigma[row * sigma_stride];
    const double nan = std::numeric_limits<double>::quiet_NaN();
    double ynorm2 = 0;
    for (index_t k = 0; k < d; ++k) ynorm2 += double(yt[i * d + k]) * double(yt[i * d + k]);
    if (log_density) {
      const double lse = m[i] + std::log(s0[i]) - ynorm2 / (2.0 * si * si);
      log_density[row] = static_cast<T>(bad[i] ? nan
                                               : lse - std::log(double(n)) -
                                                     double(d) * (std::log(si) + 0.91893853320467274178));
    }
    for (index_t k = 0; k < d; ++k) {
      const double w = bad[i] ? nan : double(acc[i * d + k]) / s0[i];
      if (mean) mean[row * d + k] = static_cast<T>(w);
      if (score) score[row * d + k] = static_cast<T>((mui * w - double(y[row * d + k])) / (si * si));
    }
  }
}

template <class T, class A>
void run(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
         const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean) {
  std::vector<A> xnorm(n);
  for (index_t j = 0; j < n; ++j) {
    A s = 0;
    for (index_t k = 0; k < d; ++k) s += static_cast<A>(x[j * d + k]) * static_cast<A>(x[j * d + k]);
    xnorm[j] = s;
  }
  const index_t tiles = (q + QB - 1) / QB;
#pragma omp parallel for schedule(dynamic, 1)
  for (index_t t = 0; t < tiles; ++t) {
    const index_t q0 = t * QB;
    query_tile<T, A>(y, q0, std::min(QB, q - q0), x, xnorm.data(), n, d, mu, mu_stride, sigma, sigma_stride,
                     score, log_density, mean);
  }
}

// Bound on the float error of the GEMM-form logits over all queries, in logit
// units: |a| |y| |x| + |c| ||x||^2, times d float ulps.
template <class T>
bool float_logits_accurate(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu,
                           index_t mu_stride, const T* sigma, index_t sigma_stride) {
  double xmax = 0;
  for (index_t j = 0; j < n; ++j) {
    double s = 0;
    for (index_t k = 0; k < d; ++k) s += double(x[j * d + k]) * double(x[j * d + k]);
    xmax = std::max(xmax, s);
  }
  xmax = std::sqrt(xmax);
  double worst = 0;
  for (index_t i = 0; i < q; ++i) {
    double s = 0;
    for (index_t k = 0; k < d; ++k) s += double(y[i * d + k]) * double(y[i * d + k]);
    const double mui = mu[i * mu_stride], si = sigma[i * sigma_stride];
    const double bound = (mui / (si * si)) * std::sqrt(s) * xmax + mui * mui / (2 * si * si) * xmax * xmax;
    if (std::isfinite(bound)) worst = std::max(worst, bound);
  }
  return worst * double(d) * 5.96e-8 < 2e-6;
}

}  // namespace

template <class T>
void optimal_score_nd(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
                      const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean) {
  if constexpr (sizeof(T) == 4) {
    if (float_logits_accurate(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride)) {
      run<T, float>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean);
      return;
    }
  }
  run<T, double>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean);
}

template void optimal_score_nd<float>(const float*, index_t, const float*, index_t, index_t, const float*,
                                      index_t, const float*, index_t, float*, float*, float*);
template void optimal_score_nd<double>(const double*, index_t, const double*, index_t, index_t, const double*,
                                       index_t, const double*, index_t, double*, double*, double*);

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
