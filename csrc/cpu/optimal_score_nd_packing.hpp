// Building blocks of the d-D optimal-score kernel (optimal_score_nd_flash.cpp and
// optimal_score_nd_screened.cpp, compiled once per instruction set): tile sizes, the
// BLIS-style packing of the data, the register-blocked micro-kernels and the logits.
//
// Layout: every operand a micro-kernel streams is contiguous in the order it is read --
// the query rows of a tile interleaved MR at a time, the data in panels of L = 2W
// columns -- and the next data tile's panels are prefetched into L2 while the current
// one is processed.  With the data read in place (strided rows from L3) the
// micro-kernels ran at ~75% of their in-cache speed.
#pragma once
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

namespace bigstep::cpu::BIGSTEP_ISA_NS::nd {

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

// The flash kernel over all queries in accumulation type A (optimal_score_nd_flash.cpp).
template <class T, class A>
void run(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
         const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean);

// float inputs at small sigma: screened float pass, float64 for the queries the screen
// could not finish (optimal_score_nd_screened.cpp).
template <class T>
void run_screened(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
                  const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean);

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS::nd
