// d-D optimal-score kernel (compiled once per instruction set, see isa.hpp).
//
// Flash-attention scheme.  Queries in tiles of QB rows, data in tiles of NB points.
// For each pair of tiles:
//   G = Y X^T                      (register-blocked micro-kernel, MR x 2W outputs)
//   l = a_i G - c_i ||x_j||^2      (GEMM-form logits, bigstep/optimal_score.hpp)
//   online softmax per query: running max m_i, S_i = sum exp(l - m_i), rescaled when
//   m_i grows
//   Acc += P X                     (register-blocked micro-kernel, MR x 2W outputs)
// Memory: O(QB (NB + d)) per thread and O(n d) for the packed data; nothing q x n.
//
// Layout (BLIS-style packing): every operand a micro-kernel streams is contiguous in the
// order it is read -- the query rows of a tile interleaved MR at a time, the data in
// panels of L = 2W columns -- and the next data tile's panels are prefetched into L2
// while the current one is processed.  With the data read in place (strided rows from
// L3) the micro-kernels ran at ~75% of their in-cache speed.
//
// Precision: A is the type the products and sums are formed in.  double inputs use
// double.  float inputs use float when the GEMM-form logits are accurate enough (see
// float_logits_accurate), double otherwise: the GEMM form cancels two terms of size
// mu^2 ||x||^2 / sigma^2, so at small sigma float sums would give O(1) errors in the
// weights.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "bigstep/fast_exp.hpp"
#include "bigstep/optimal_score.hpp"
#include "kernels.hpp"
#include "simd.hpp"
#include "team.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

constexpr index_t QB = 132;  // queries per tile (multiple of MR)
constexpr index_t NB = 128;  // data points per tile
constexpr index_t MR = 6;    // rows per micro-kernel call

// Prefetches `bytes` from p (nothing if p is null) into L2, spread over `calls` calls of
// step(): the next data tile's panels, over the micro-kernel calls of the current tile,
// so that they arrive while it is processed.
class NextTile {
 public:
  NextTile(const void* p, index_t bytes, index_t calls)
      : p_(static_cast<const char*>(p)), lines_(p ? bytes / 64 : 0), per_call_((lines_ + calls - 1) / calls) {}
  void step() {
    for (index_t e = 0; e < per_call_ && line_ < lines_; ++e, ++line_) __builtin_prefetch(p_ + line_ * 64, 0, 2);
  }

 private:
  const char* p_;
  index_t lines_, per_call_, line_ = 0;
};

// The data in type A, packed once per call (O(n d) extra memory) and shared by the
// threads.  Per tile of NB points (the last one: its points rounded up to L), in panels
// of L = 2W columns: its transpose as width(t) / L panels [d, L] (the B operand of
// Y X^T) and its rows, padded to dp = a multiple of L coordinates, as dp / L panels
// [width(t), L] (the B operand of P X); pad entries are 0.  Also ||x_j||^2.
template <class A>
struct Packed {
  static constexpr index_t L = 2 * simd::width<A>;
  index_t n, d, dp, tiles;
  std::vector<A> xt;     // per tile [width / L, d, L]
  std::vector<A> rows;   // per tile [dp / L, width, L]
  std::vector<A> norm2;  // [tiles * NB]
  template <class T>
  Packed(const T* x, index_t n_, index_t d_) : n(n_), d(d_) {
    dp = (d + L - 1) / L * L;
    tiles = (n + NB - 1) / NB;
    const index_t points = (tiles - 1) * NB + width(tiles - 1);
    xt.assign(points * d, A(0));
    rows.assign(points * dp, A(0));
    norm2.assign(tiles * NB, A(0));
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel_worth(double(n) * double(d)))
    for (index_t t = 0; t < tiles; ++t) {
      for (index_t j = t * NB; j < std::min(n, (t + 1) * NB); ++j) {
        double s = 0;  // in double, rounded once: the norm term is the larger one
        for (index_t k = 0; k < d; ++k) {
          const A v = static_cast<A>(x[j * d + k]);
          const index_t jl = j - t * NB;
          rows[t * NB * dp + (k / L) * width(t) * L + jl * L + k % L] = v;
          xt[t * d * NB + (jl / L) * d * L + k * L + jl % L] = v;
          s += double(v) * double(v);
        }
        norm2[j] = static_cast<A>(s);
      }
    }
  }

  // The panels of data tile t.
  const A* xt_tile(index_t t) const { return &xt[t * d * NB]; }
  const A* rows_tile(index_t t) const { return &rows[t * NB * dp]; }
  // Points of tile t, rounded up to whole panels (NB but for the last tile).
  index_t width(index_t t) const { return (std::min(NB, n - t * NB) + L - 1) / L * L; }
  // Prefetchers of tile t + 1's panels (none after the last tile), over `calls` steps.
  NextTile next_xt(index_t t, index_t calls) const {
    return t + 1 < tiles ? NextTile(xt_tile(t + 1), index_t(sizeof(A)) * width(t + 1) * d, calls)
                         : NextTile(nullptr, 0, calls);
  }
  NextTile next_rows(index_t t, index_t calls) const {
    return t + 1 < tiles ? NextTile(rows_tile(t + 1), index_t(sizeof(A)) * width(t + 1) * dp, calls)
                         : NextTile(nullptr, 0, calls);
  }
};

// The query rows of a tile, MR at a time, interleaved: row i, coordinate k at
// (i - i % MR) d + k MR + i % MR.
inline index_t packed_y(index_t i, index_t k, index_t d) { return (i - i % MR) * d + k * MR + i % MR; }

// Buffers of one thread, for query tiles of up to `rows` rows (QB, or fewer when q is
// small: memory stays O(q d), not O(QB d), for one query in a huge dimension).
template <class A>
struct Tile {
  std::vector<A> y;    // [rows, d]   query rows, packed_y
  std::vector<A> g;    // [rows, NB]  logits, then weights
  std::vector<A> acc;  // [rows, dp]  sum_j p_ij x_j
  Tile(const Packed<A>& px, index_t q) : Tile(px.d, px.dp, std::min(QB, (q + MR - 1) / MR * MR)) {}

 private:
  Tile(index_t d, index_t dp, index_t rows) : y(rows * d), g(rows * NB), acc(rows * dp) {}
};

// G[0..MR) x [0..2W) = Y X^T over k < d; y: MR packed rows, xt: one panel [d, 2W],
// g: row stride NB.
template <class A>
inline void gemm_yxt(const A* __restrict y, index_t d, const A* __restrict xt, A* __restrict g) {
  using V = simd::vec<A>;
  constexpr index_t W = simd::width<A>;
  V c[MR][2];
#pragma GCC unroll 8
  for (index_t r = 0; r < MR; ++r) c[r][0] = c[r][1] = V{};
#pragma GCC unroll 4
  for (index_t k = 0; k < d; ++k) {
    const V b0 = simd::load(xt + k * 2 * W), b1 = simd::load(xt + k * 2 * W + W);
#pragma GCC unroll 8
    for (index_t r = 0; r < MR; ++r) {
      const V a = simd::broadcast(y[k * MR + r]);
      c[r][0] += a * b0;
      c[r][1] += a * b1;
    }
  }
#pragma GCC unroll 8
  for (index_t r = 0; r < MR; ++r) {
    simd::store(g + r * NB, c[r][0]);
    simd::store(g + r * NB + W, c[r][1]);
  }
}

// Acc[0..MR) x [0..2W) += P X over j < jn; p: row stride NB, x: one panel [NB, 2W],
// acc: row stride dp.
template <class A>
inline void gemm_px(const A* __restrict p, index_t jn, const A* __restrict x, A* __restrict acc, index_t dp) {
  using V = simd::vec<A>;
  constexpr index_t W = simd::width<A>;
  V c[MR][2];
#pragma GCC unroll 8
  for (index_t r = 0; r < MR; ++r) {
    c[r][0] = simd::load(acc + r * dp);
    c[r][1] = simd::load(acc + r * dp + W);
  }
#pragma GCC unroll 4
  for (index_t j = 0; j < jn; ++j) {
    const V b0 = simd::load(x + j * 2 * W), b1 = simd::load(x + j * 2 * W + W);
#pragma GCC unroll 8
    for (index_t r = 0; r < MR; ++r) {
      const V a = simd::broadcast(p[r * NB + j]);
      c[r][0] += a * b0;
      c[r][1] += a * b1;
    }
  }
#pragma GCC unroll 8
  for (index_t r = 0; r < MR; ++r) {
    simd::store(acc + r * dp, c[r][0]);
    simd::store(acc + r * dp + W, c[r][1]);
  }
}

// Row of a tile: G = Y X^T entries in gi[0, jn) become the GEMM-form logits
// a G - c ||x_j||^2 in place; returns their maximum.
template <class A>
inline A logits_and_max(A* __restrict gi, const A* __restrict xnorm, index_t jn, A a, A c) {
  using V = simd::vec<A>;
  constexpr index_t W = simd::width<A>;
  const V va = simd::broadcast(a), vc = simd::broadcast(c);
  V vmax = simd::broadcast(-std::numeric_limits<A>::infinity());
  index_t j = 0;
  for (; j + W <= jn; j += W) {
    const V l = gemm_logit<V>(simd::load(gi + j), simd::load(xnorm + j), va, vc);
    std::memcpy(gi + j, &l, sizeof l);
    vmax = l > vmax ? l : vmax;
  }
  A tile_max = -std::numeric_limits<A>::infinity();
  for (int lane = 0; lane < W; ++lane) tile_max = std::max(tile_max, A(vmax[lane]));
  for (; j < jn; ++j) {
    gi[j] = gemm_logit<A>(gi[j], xnorm[j], a, c);
    tile_max = std::max(tile_max, gi[j]);
  }
  return tile_max;
}

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

// ---------------------------------------------------------------------------------
// float32 inputs at small sigma: screen in float, finish in double.
//
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

template <class T, class A>
void run(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
         const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean);

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

template <class T>
void optimal_score_nd(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
                      const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean) {
  if constexpr (sizeof(T) == 4) {
    if (float_logits_accurate(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride)) {
      run<T, float>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean);
    } else {
      run_screened<T>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean);
    }
    return;
  }
  run<T, double>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean);
}


BIGSTEP_EXPORT_TYPED(optimal_score_nd)

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
