// d-D optimal-score kernel, flash-attention scheme (compiled once per instruction set,
// see kernels.hpp).
//
// Queries in tiles of QB rows, data in tiles of NB points.  For each pair of tiles:
//   G = Y X^T                      (register-blocked micro-kernel, MR x 2W outputs)
//   l = a_i G - c_i ||x_j||^2      (GEMM-form logits, bigstep/optimal_score.hpp)
//   online softmax per query: running max m_i, S_i = sum exp(l - m_i), rescaled when
//   m_i grows
//   Acc += P X                     (register-blocked micro-kernel, MR x 2W outputs)
// Memory: O(QB (NB + d)) per thread and O(n d) for the packed data; nothing q x n.
// Packing and micro-kernels: optimal_score_nd_packing.hpp.
//
// Precision: A is the type the products and sums are formed in.  double inputs use
// double.  float inputs use float when the GEMM-form logits are accurate enough (see
// float_logits_accurate), else the screened kernel (optimal_score_nd_screened.cpp): the
// GEMM form cancels two terms of size mu^2 ||x||^2 / sigma^2, so at small sigma float
// sums would give O(1) errors in the weights.
#include "optimal_score_nd_packing.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace nd {

// One query tile [q0, q0 + qn) against all data, in accumulation type A.
template <class T, class A>
void query_tile(Tile<A>& t, const Packed<A>& px, const T* y, index_t q0, index_t qn, const T* mu, index_t mu_stride, const T* sigma, index_t sigma_stride, T* score, T* log_density,
                T* mean) {
  using V = simd::vec<A>;
  constexpr index_t W = simd::width<A>;
  const index_t d = px.d, dp = px.dp, n = px.n;
  const index_t qpad = (qn + MR - 1) / MR * MR;
  double m[QB], s0[QB];
  A a[QB], c[QB];
  bool bad[QB];
  std::fill(t.y.begin(), t.y.end(), A(0));
  std::fill(t.acc.begin(), t.acc.end(), A(0));
  for (index_t i = 0; i < qn; ++i) {
    const double mui = mu[(q0 + i) * mu_stride], si = sigma[(q0 + i) * sigma_stride];
    a[i] = static_cast<A>(mui / (si * si));
    c[i] = static_cast<A>(mui * mui / (2.0 * si * si));
    m[i] = -std::numeric_limits<double>::infinity();
    s0[i] = 0;
    bad[i] = false;
    for (index_t k = 0; k < d; ++k) {
      const double v = y[(q0 + i) * d + k];
      t.y[packed_y(i, k, d)] = static_cast<A>(v);
      bad[i] = bad[i] || !std::isfinite(v);
    }
  }
  for (index_t j0 = 0; j0 < n; j0 += NB) {
    const index_t jn = std::min(NB, n - j0);
    const index_t tile = j0 / NB;
    const A* xt = px.xt_tile(tile);
    const A* xrows = px.rows_tile(tile);
    const A* xnorm = &px.norm2[j0];
    const index_t jpad = (jn + 2 * W - 1) / (2 * W) * (2 * W);
    NextTile next_xt = px.next_xt(tile, jpad / (2 * W) * qpad / MR);
    NextTile next_rows = px.next_rows(tile, dp / (2 * W) * qpad / MR);
    // j outer, i inner: the panel of xt a j block needs stays in L1 across row blocks
    for (index_t j = 0; j < jpad; j += 2 * W)
      for (index_t i = 0; i < qpad; i += MR) {
        gemm_yxt<A>(&t.y[i * d], d, xt + j * d, &t.g[i * NB + j]);
        next_xt.step();
      }
    // logits, online softmax
    for (index_t i = 0; i < qn; ++i) {
      A* gi = &t.g[i * NB];
      A tile_max = logits_and_max<A>(gi, xnorm, jn, a[i], c[i]);
      if (!(tile_max > -std::numeric_limits<A>::infinity())) tile_max = 0;  // NaN/inf rows: kept NaN later
      const double new_m = std::max(m[i], double(tile_max));
      const A shift = static_cast<A>(new_m);
      const V vshift = simd::broadcast(shift);
      V vs = V{};
      index_t j = 0;
      for (; j + W <= jn; j += W) {
        const V p = simd::Traits<A>::exp_nonpos(simd::load(gi + j) - vshift);
        std::memcpy(gi + j, &p, sizeof p);
        vs += p;
      }
      A sum = simd::hsum<A>(vs);
      for (; j < jn; ++j) {
        gi[j] = exp_nonpos(gi[j] - shift);
        sum += gi[j];
      }
      for (; j < NB; ++j) gi[j] = 0;
      if (new_m > m[i]) {
        const double scale = std::exp(m[i] - new_m);
        s0[i] *= scale;
        for (index_t k = 0; k < d; ++k) t.acc[i * dp + k] = static_cast<A>(t.acc[i * dp + k] * scale);
        m[i] = new_m;
      }
      s0[i] += sum;
    }
    for (index_t k = 0; k < dp; k += 2 * W)  // k outer: the panel of the tile stays in L1
      for (index_t i = 0; i < qpad; i += MR) {
        gemm_px<A>(&t.g[i * NB], jn, xrows + k * jpad, &t.acc[i * dp + k], dp);
        next_rows.step();
      }
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (index_t i = 0; i < qn; ++i) {
    const index_t row = q0 + i;
    const double mui = mu[row * mu_stride], si = sigma[row * sigma_stride];
    double ynorm2 = 0;
    for (index_t k = 0; k < d; ++k) ynorm2 += double(y[row * d + k]) * double(y[row * d + k]);
    if (log_density) {
      const double lse = m[i] + std::log(s0[i]) - ynorm2 / (2.0 * si * si);
      log_density[row] = static_cast<T>(
          bad[i] ? nan : lse - std::log(double(n)) - double(d) * (std::log(si) + 0.91893853320467274178));
    }
    for (index_t k = 0; k < d; ++k) {
      const double w = bad[i] ? nan : double(t.acc[i * dp + k]) / s0[i];
      if (mean) mean[row * d + k] = static_cast<T>(w);
      if (score) score[row * d + k] = static_cast<T>((mui * w - double(y[row * d + k])) / (si * si));
    }
  }
}

template <class T, class A>
void run(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
         const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean) {
  const Packed<A> px(x, n, d);
  const index_t tiles = (q + QB - 1) / QB;
  const int threads = team_size(tiles);  // team.hpp
  std::vector<Tile<A>> tiles_of = per_thread(threads, [&] { return Tile<A>(px, q); });
#pragma omp parallel num_threads(threads) if (parallel_worth(double(q) * double(n) * double(d)))
  {
    Tile<A>& tile = tiles_of[thread_index()];
#pragma omp for schedule(dynamic, 1)
    for (index_t t = 0; t < tiles; ++t) {
      const index_t q0 = t * QB;
      query_tile<T, A>(tile, px, y, q0, std::min(QB, q - q0), mu, mu_stride, sigma, sigma_stride, score,
                       log_density, mean);
    }
  }
}

template void run<float, float>(const float*, index_t, const float*, index_t, index_t, const float*, index_t,
                                const float*, index_t, float*, float*, float*);
template void run<float, double>(const float*, index_t, const float*, index_t, index_t, const float*, index_t,
                                 const float*, index_t, float*, float*, float*);
template void run<double, double>(const double*, index_t, const double*, index_t, index_t, const double*,
                                  index_t, const double*, index_t, double*, double*, double*);

namespace {

// Whether float sums give accurate enough GEMM-form logits for every query.  Error
// model (Higham's rule of thumb for a length-d sum of rounded products): about
// sqrt(d) u a |y| |x| for the dot product, plus 2 u c ||x||^2 for the norm term
// (formed in double, rounded once), u = 2^-24.  The weights' relative error is the
// logits' absolute error; float is used when the bound is below 1e-4 (measured
// errors are ~15x below the bound: 2.7e-6 relative in s* at d = 64, sigma = 1).
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
  const double u = 5.9604644775390625e-8;
  for (index_t i = 0; i < q; ++i) {
    double s = 0;
    for (index_t k = 0; k < d; ++k) s += double(y[i * d + k]) * double(y[i * d + k]);
    const double mui = mu[i * mu_stride], si = sigma[i * sigma_stride];
    const double bound = u * (std::sqrt(double(d)) * (mui / (si * si)) * std::sqrt(s) * xmax +
                              2.0 * mui * mui / (2 * si * si) * xmax * xmax);
    if (std::isfinite(s) && !(bound < 1e-4)) return false;
  }
  return true;
}

}  // namespace
}  // namespace nd

template <class T>
void optimal_score_nd(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
                      const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean) {
  if constexpr (sizeof(T) == 4) {
    if (nd::float_logits_accurate(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride)) {
      nd::run<T, float>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean);
    } else {
      nd::run_screened<T>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean);
    }
    return;
  }
  nd::run<T, double>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean);
}


BIGSTEP_EXPORT_TYPED(optimal_score_nd)

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
