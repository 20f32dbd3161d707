// d-D optimal-score kernel for float32 inputs at small sigma: screen in float, finish in
// double (compiled once per instruction set; the entry point is in
// optimal_score_nd_flash.cpp, the building blocks in optimal_score_nd_packing.hpp).
#include "optimal_score_nd_packing.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS::nd {
namespace {

// The float GEMM-form logit l~_ij has absolute error at most E_i (logit_error_bound).
// Every j with exact logit l_ij >= max_j l_ij - kDrop satisfies l~_ij >= M~_i - kDrop -
// 2 E_i (M~_i the float running max), so one float GEMM pass collects those j as
// candidates; their logits are then recomputed in double from the inputs in difference
// form, -||y - mu x_j||^2 / (2 sigma^2), and the softmax is taken over them.  The
// points left out carry relative weight below n exp(-kDrop) (< 1e-13 for n < 1e4,
// 4e-9 at n = 1e9).  At small sigma the softmax is nearly one-hot, so a query has a
// handful of candidates; a query with more than kCap after pruning falls back to the
// float64 flash kernel.  Cost: one float GEMM (the flash kernel does two GEMMs and an
// exp per pair).
constexpr double kDrop = 40.0;
constexpr int kCap = 32;

// Rigorous bound on |l~ - l| for the float GEMM form: the length-d dot product
// (gamma_d |y| |x|), the rounding of a and c, of ||x||^2 and of the final a G - c N.
inline double logit_error_bound(double a, double c, double ynorm, double xmax, index_t d) {
  const double u = 5.9604644775390625e-8;
  return 1.01 * u * ((double(d) + 3.0) * a * ynorm * xmax + 4.0 * c * xmax * xmax);
}

template <class T>
struct Screen {
  std::vector<std::int32_t> idx;  // [QB, kCap] candidate data indices
  std::vector<float> val;         // [QB, kCap] their float logits
  int count[QB] = {};
  float top[QB] = {};     // running max of the float logits
  float margin[QB] = {};  // kDrop + 2 E_i
  bool full[QB] = {};     // overflowed: recompute the query with the float64 kernel
  Screen() : idx(QB * kCap), val(QB * kCap) {}

  // Adds j with float logit v to query i's list (v >= top - margin at call time).
  void add(index_t i, std::int32_t j, float v) {
    if (full[i]) return;
    int c = count[i];
    if (c == kCap) {  // prune the entries that fell below the current threshold
      const float thr = top[i] - margin[i];
      int k = 0;
      for (int e = 0; e < c; ++e)
        if (val[i * kCap + e] >= thr) {
          idx[i * kCap + k] = idx[i * kCap + e];
          val[i * kCap + k] = val[i * kCap + e];
          ++k;
        }
      c = k;
      if (c == kCap) {
        full[i] = true;
        return;
      }
    }
    idx[i * kCap + c] = j;
    val[i * kCap + c] = v;
    count[i] = c + 1;
  }
};

// One query tile, screened.  Marks the rows it could not finish in `fallback`.
template <class T>
void query_tile_screened(Tile<float>& t, Screen<T>& sc, const Packed<float>& px, const T* x, double xmax,
                         const T* y, index_t q0, index_t qn, const T* mu, index_t mu_stride, const T* sigma,
                         index_t sigma_stride, T* score, T* log_density, T* mean, unsigned char* fallback) {
  constexpr index_t W = simd::width<float>;
  const index_t d = px.d, n = px.n;
  const index_t qpad = (qn + MR - 1) / MR * MR;
  float a[QB], c[QB];
  bool bad[QB];
  std::fill(t.y.begin(), t.y.end(), 0.0f);
  for (index_t i = 0; i < qn; ++i) {
    const double mui = mu[(q0 + i) * mu_stride], si = sigma[(q0 + i) * sigma_stride];
    const double ad = mui / (si * si), cd = mui * mui / (2.0 * si * si);
    a[i] = static_cast<float>(ad);
    c[i] = static_cast<float>(cd);
    double yn = 0;
    for (index_t k = 0; k < d; ++k) {
      const double v = y[(q0 + i) * d + k];
      t.y[packed_y(i, k, d)] = static_cast<float>(v);
      yn += v * v;
    }
    bad[i] = !std::isfinite(yn);
    sc.count[i] = 0;
    sc.top[i] = -std::numeric_limits<float>::infinity();
    sc.margin[i] = static_cast<float>(kDrop + 2.0 * logit_error_bound(ad, cd, std::sqrt(yn), xmax, d));
    sc.full[i] = bad[i] || !std::isfinite(sc.margin[i]);
  }
  for (index_t j0 = 0; j0 < n; j0 += NB) {
    const index_t jn = std::min(NB, n - j0);
    const index_t tile = j0 / NB;
    const float* xt = px.xt_tile(tile);
    const float* xnorm = &px.norm2[j0];
    const index_t jpad = (jn + 2 * W - 1) / (2 * W) * (2 * W);
    NextTile next_xt = px.next_xt(tile, jpad / (2 * W) * qpad / MR);
    for (index_t j = 0; j < jpad; j += 2 * W)
      for (index_t i = 0; i < qpad; i += MR) {
        gemm_yxt<float>(&t.y[i * d], d, xt + j * d, &t.g[i * NB + j]);
        next_xt.step();
      }
    for (index_t i = 0; i < qn; ++i) {
      if (sc.full[i]) continue;
      float* gi = &t.g[i * NB];
      const float tile_max = logits_and_max<float>(gi, xnorm, jn, a[i], c[i]);
      sc.top[i] = std::max(sc.top[i], tile_max);
      const float thr = sc.top[i] - sc.margin[i];
      if (!(tile_max >= thr)) continue;  // nothing in this tile is a candidate
      for (index_t j = 0; j < jn; ++j)
        if (gi[j] >= thr) sc.add(i, static_cast<std::int32_t>(j0 + j), gi[j]);
    }
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (index_t i = 0; i < qn; ++i) {
    const index_t row = q0 + i;
    if (bad[i]) {  // NaN or inf in the query: NaN out, like the flash kernel
      if (log_density) log_density[row] = static_cast<T>(nan);
      for (index_t k = 0; k < d; ++k) {
        if (mean) mean[row * d + k] = static_cast<T>(nan);
        if (score) score[row * d + k] = static_cast<T>(nan);
      }
      continue;
    }
    if (sc.full[i] || sc.count[i] == 0) {
      fallback[row] = 1;
      continue;
    }
    const double mui = mu[row * mu_stride], si = sigma[row * sigma_stride];
    const double inv2s2 = 1.0 / (2.0 * si * si);
    const float thr = sc.top[i] - sc.margin[i];
    const T* yr = y + row * d;
    double lg[kCap];
    std::int32_t js[kCap];
    int nc = 0;
    double lmax = -std::numeric_limits<double>::infinity();
    for (int e = 0; e < sc.count[i]; ++e) {
      if (sc.val[i * kCap + e] < thr) continue;
      const std::int32_t jj = sc.idx[i * kCap + e];
      double r2 = 0;
      for (index_t k = 0; k < d; ++k) {
        const double diff = double(yr[k]) - mui * double(x[jj * d + k]);
        r2 += diff * diff;
      }
      js[nc] = jj;
      lg[nc] = -r2 * inv2s2;
      lmax = std::max(lmax, lg[nc]);
      ++nc;
    }
    double s0 = 0;
    for (int e = 0; e < nc; ++e) s0 += (lg[e] = std::exp(lg[e] - lmax));
    if (log_density)
      log_density[row] = static_cast<T>(lmax + std::log(s0) - std::log(double(n)) -
                                        double(d) * (std::log(si) + 0.91893853320467274178));
    for (index_t k = 0; k < d; ++k) {
      double acc = 0;
      for (int e = 0; e < nc; ++e) acc += lg[e] * double(x[js[e] * d + k]);
      const double w = acc / s0;
      if (mean) mean[row * d + k] = static_cast<T>(w);
      if (score) score[row * d + k] = static_cast<T>((mui * w - double(yr[k])) / (si * si));
    }
  }
}

}  // namespace

// float inputs whose float GEMM-form logits are not accurate: screened float pass,
// then the float64 flash kernel for the queries the screen could not finish.
template <class T>
void run_screened(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
                  const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean) {
  const Packed<float> px(x, n, d);
  double xmax = 0;
  for (index_t j = 0; j < n; ++j) xmax = std::max(xmax, double(px.norm2[j]));
  xmax = std::sqrt(xmax) * (1 + 1e-6);  // norm2 was rounded to float once
  std::vector<unsigned char> fallback(q, 0);
  const index_t tiles = (q + QB - 1) / QB;
  const int threads = team_size(tiles);  // team.hpp
  std::vector<Tile<float>> tiles_of = per_thread(threads, [&] { return Tile<float>(px, q); });
  std::vector<Screen<T>> screens = per_thread(threads, [&] { return Screen<T>(); });
#pragma omp parallel num_threads(threads) if (parallel_worth(double(q) * double(n) * double(d)))
  {
    Tile<float>& tile = tiles_of[thread_index()];
    Screen<T>& sc = screens[thread_index()];
#pragma omp for schedule(dynamic, 1)
    for (index_t t = 0; t < tiles; ++t) {
      const index_t q0 = t * QB;
      query_tile_screened<T>(tile, sc, px, x, xmax, y, q0, std::min(QB, q - q0), mu, mu_stride, sigma,
                             sigma_stride, score, log_density, mean, fallback.data());
    }
  }
  std::vector<index_t> rows;
  for (index_t i = 0; i < q; ++i)
    if (fallback[i]) rows.push_back(i);
  if (rows.empty()) return;
  const index_t r = static_cast<index_t>(rows.size());
  std::vector<T> ys(r * d), mus(mu_stride ? r : 1), sigs(sigma_stride ? r : 1);
  std::vector<T> so(score ? r * d : 0), lo(log_density ? r : 0), me(mean ? r * d : 0);
  for (index_t e = 0; e < r; ++e) {
    std::copy(y + rows[e] * d, y + (rows[e] + 1) * d, ys.begin() + e * d);
    if (mu_stride) mus[e] = mu[rows[e]];
    if (sigma_stride) sigs[e] = sigma[rows[e]];
  }
  if (!mu_stride) mus[0] = mu[0];
  if (!sigma_stride) sigs[0] = sigma[0];
  run<T, double>(ys.data(), r, x, n, d, mus.data(), mu_stride ? 1 : 0, sigs.data(), sigma_stride ? 1 : 0,
                 score ? so.data() : nullptr, log_density ? lo.data() : nullptr, mean ? me.data() : nullptr);
  for (index_t e = 0; e < r; ++e) {
    if (score) std::copy(so.begin() + e * d, so.begin() + (e + 1) * d, score + rows[e] * d);
    if (mean) std::copy(me.begin() + e * d, me.begin() + (e + 1) * d, mean + rows[e] * d);
    if (log_density) log_density[rows[e]] = lo[e];
  }
}

template void run_screened<float>(const float*, index_t, const float*, index_t, index_t, const float*, index_t,
                                  const float*, index_t, float*, float*, float*);

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS::nd
