// Sample-quality metrics: Gaussian-kernel sums (MMD) and k nearest neighbours
// (compiled once per instruction set, entry points listed in kernels.hpp; per-element math in
// bigstep/metrics.hpp).
//
// Both stream over tiles of row points (QB) against tiles of column points (NB): the
// column tile is packed transposed [d, NB] in double, and a register-blocked
// micro-kernel forms R x 2W squared distances sum_k (a_ik - b_jk)^2 (difference form,
// vectorised over columns), then either adds their Gaussian kernel values to a vector
// accumulator (MMD) or hands them to each row's sorted top-k list (neighbours).
// Memory: the packed columns, O(M d), and O(QB (NB + k)) per thread; nothing N x M.
//
// Accuracy: everything in double (float32 inputs are widened exactly), the kernel sum
// of one pair of tiles (QB x NB terms) in vector lanes, then added in double to its row
// tile's sum; row tiles are summed in order at the end, so the result does not depend
// on the thread count or the schedule.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "bigstep/fast_exp.hpp"
#include "bigstep/metrics.hpp"
#include "kernels.hpp"
#include "simd.hpp"
#include "team.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

using V = simd::vec<double>;
constexpr index_t W = simd::width<double>;
constexpr index_t NB = 128;  // column points per tile (multiple of 2W)
constexpr index_t QB = NB;   // row points per task: equal to NB, so that symmetric sums skip whole tiles
constexpr int MR = 4;        // rows per micro-kernel call

// Column points in double, per tile of NB points transposed: [tiles, d, NB], pad
// entries 0; mask [tiles * NB]: 1 for real points, 0 for padding.
struct PackedColumns {
  index_t m, d, tiles;
  std::vector<double> xt, mask;
  template <class T>
  PackedColumns(const T* x, index_t m_, index_t d_) : m(m_), d(d_), tiles((m_ + NB - 1) / NB) {
    xt.assign(tiles * d * NB, 0.0);
    mask.assign(tiles * NB, 0.0);
    for (index_t j = 0; j < m; ++j) {
      const index_t t = j / NB, jj = j % NB;
      for (index_t k = 0; k < d; ++k) xt[(t * d + k) * NB + jj] = static_cast<double>(x[j * d + k]);
      mask[j] = 1.0;
    }
  }
};

// c[r][0..1] = squared distances of rows a[r] (r < R, row-major [R, d]) to the 2W
// columns j..j+2W of the transposed tile bt [d, NB].  D > 0 fixes d at compile time.
template <int R, int D>
inline void sq_dist_block(const double* __restrict a, index_t d, const double* __restrict bt, index_t j,
                          V (&c)[MR][2]) {
  const index_t dd = D > 0 ? D : d;
  for (int r = 0; r < R; ++r) c[r][0] = c[r][1] = V{};
  for (index_t k = 0; k < dd; ++k) {
    const V b0 = simd::load(bt + k * NB + j), b1 = simd::load(bt + k * NB + j + W);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const V ar = simd::broadcast(a[r * dd + k]);
      const V e0 = ar - b0, e1 = ar - b1;
      c[r][0] += e0 * e0;
      c[r][1] += e1 * e1;
    }
  }
}

// Sum of k(a_r, b_j) over R rows and the 2W columns at j, times the column mask when
// MASK (the tile's last, partial block).
template <int R, int D, bool MASK>
inline V kernel_block(const double* __restrict a, index_t d, const double* __restrict bt,
                      const double* __restrict mask, index_t j, V neg) {
  V c[MR][2];
  sq_dist_block<R, D>(a, d, bt, j, c);
  V s0 = V{}, s1 = V{};
  for (int r = 0; r < R; ++r) {
    V e0 = gaussian_kernel(c[r][0], neg, simd::Traits<double>::exp_nonpos);
    V e1 = gaussian_kernel(c[r][1], neg, simd::Traits<double>::exp_nonpos);
    if (MASK) {
      e0 *= simd::load(mask + j);
      e1 *= simd::load(mask + j + W);
    }
    s0 += e0;
    s1 += e1;
  }
  return s0 + s1;
}

// Sum of k over rows a [rn, d] (rn <= QB) and the columns of one tile (jn real points).
template <int D>
double tile_kernel_sum(const double* a, index_t rn, index_t d, const double* bt, const double* mask, index_t jn,
                       V neg) {
  const index_t full = jn / (2 * W) * (2 * W);
  const index_t rfull = rn / MR * MR;
  V acc = V{};
  for (index_t j = 0; j < full; j += 2 * W) {
    for (index_t i = 0; i < rfull; i += MR) acc += kernel_block<MR, D, false>(a + i * d, d, bt, mask, j, neg);
    switch (rn - rfull) {
      case 1: acc += kernel_block<1, D, false>(a + rfull * d, d, bt, mask, j, neg); break;
      case 2: acc += kernel_block<2, D, false>(a + rfull * d, d, bt, mask, j, neg); break;
      case 3: acc += kernel_block<3, D, false>(a + rfull * d, d, bt, mask, j, neg); break;
      default: break;
    }
  }
  if (full < jn) {
    const index_t j = full;
    for (index_t i = 0; i < rfull; i += MR) acc += kernel_block<MR, D, true>(a + i * d, d, bt, mask, j, neg);
    switch (rn - rfull) {
      case 1: acc += kernel_block<1, D, true>(a + rfull * d, d, bt, mask, j, neg); break;
      case 2: acc += kernel_block<2, D, true>(a + rfull * d, d, bt, mask, j, neg); break;
      case 3: acc += kernel_block<3, D, true>(a + rfull * d, d, bt, mask, j, neg); break;
      default: break;
    }
  }
  return simd::hsum<double>(acc);
}

template <int D, class T>
double kernel_sum_impl(const T* x, index_t n, const T* y, index_t m, index_t d, double neg_inv_2h2,
                       bool symmetric) {
  const PackedColumns cols(y, m, d);
  const index_t row_tiles = (n + QB - 1) / QB;
  std::vector<double> sums(row_tiles, 0.0);
  const V neg = simd::broadcast(neg_inv_2h2);
  const index_t rows = std::min(QB, (n + MR - 1) / MR * MR);  // O(n d) memory for small n
  const int threads = team_size(row_tiles);  // team.hpp
  std::vector<std::vector<double>> scratch =  // team.hpp
      per_thread(threads, [&] { return std::vector<double>(rows * d); });
#pragma omp parallel num_threads(threads) if (parallel_worth(double(n) * double(m) * double(d)))
  {
    std::vector<double>& a = scratch[thread_index()];
#pragma omp for schedule(dynamic, 1)
    for (index_t t = 0; t < row_tiles; ++t) {
      const index_t i0 = t * QB, rn = std::min(QB, n - i0);
      for (index_t i = 0; i < rn * d; ++i) a[i] = static_cast<double>(x[i0 * d + i]);
      double s = 0;
      // symmetric: tiles below the diagonal mirror those above it (QB == NB)
      for (index_t u = symmetric ? t : 0; u < cols.tiles; ++u) {
        const index_t jn = std::min(NB, m - u * NB);
        const double tile = tile_kernel_sum<D>(a.data(), rn, d, &cols.xt[u * d * NB], &cols.mask[u * NB], jn, neg);
        s += (symmetric && u > t) ? 2.0 * tile : tile;
      }
      sums[t] = s;
    }
  }
  double total = 0;
  for (double s : sums) total += s;
  return total;
}

// The k nearest columns of rows a [rn, d] in one tile, merged into the rows' lists.
template <int D>
void tile_neighbours(const double* a, index_t rn, index_t d, const double* bt, index_t j0, index_t jn, int k,
                     double* best_d, index_t* best_i, int* count, double* g /* [QB, NB] */) {
  const index_t jpad = (jn + 2 * W - 1) / (2 * W) * (2 * W);
  V c[MR][2];
  for (index_t j = 0; j < jpad; j += 2 * W) {
    index_t i = 0;
    for (; i + MR <= rn; i += MR) {
      sq_dist_block<MR, D>(a + i * d, d, bt, j, c);
      for (int r = 0; r < MR; ++r) {
        std::memcpy(g + (i + r) * NB + j, &c[r][0], sizeof(V));
        std::memcpy(g + (i + r) * NB + j + W, &c[r][1], sizeof(V));
      }
    }
    for (; i < rn; ++i) {
      sq_dist_block<1, D>(a + i * d, d, bt, j, c);
      std::memcpy(g + i * NB + j, &c[0][0], sizeof(V));
      std::memcpy(g + i * NB + j + W, &c[0][1], sizeof(V));
    }
  }
  for (index_t i = 0; i < rn; ++i) {
    double* bd = best_d + i * k;
    index_t* bi = best_i + i * k;
    const double* gi = g + i * NB;
    int cnt = count[i];
    for (index_t j = 0; j < jn; ++j)
      if (cnt < k || gi[j] < bd[k - 1]) cnt = topk_insert(bd, bi, cnt, k, gi[j], j0 + j);
    count[i] = cnt;
  }
}

template <int D, class T>
void nearest_neighbors_impl(const T* x, index_t n, const T* y, index_t m, index_t d, int k, T* dist,
                            index_t* idx) {
  const PackedColumns cols(y, m, d);
  const index_t row_tiles = (n + QB - 1) / QB;
  const index_t rows = std::min(QB, (n + MR - 1) / MR * MR);  // O(n (d + k)) memory for small n
  struct Scratch {
    std::vector<double> a, g, best_d;
    std::vector<index_t> best_i;
    std::vector<int> count;
  };
  const int threads = team_size(row_tiles);  // team.hpp
  std::vector<Scratch> scratch = per_thread(threads, [&] {  // team.hpp
    return Scratch{std::vector<double>(rows * d), std::vector<double>(rows * NB),
                   std::vector<double>(rows * static_cast<index_t>(k)),
                   std::vector<index_t>(rows * static_cast<index_t>(k)), std::vector<int>(rows)};
  });
#pragma omp parallel num_threads(threads) if (parallel_worth(double(n) * double(m) * double(d)))
  {
    Scratch& sc = scratch[thread_index()];
    std::vector<double>&a = sc.a, &g = sc.g, &best_d = sc.best_d;
    std::vector<index_t>& best_i = sc.best_i;
    std::vector<int>& count = sc.count;
#pragma omp for schedule(dynamic, 1)
    for (index_t t = 0; t < row_tiles; ++t) {
      const index_t i0 = t * QB, rn = std::min(QB, n - i0);
      for (index_t i = 0; i < rn * d; ++i) a[i] = static_cast<double>(x[i0 * d + i]);
      std::fill(count.begin(), count.end(), 0);
      for (index_t u = 0; u < cols.tiles; ++u)
        tile_neighbours<D>(a.data(), rn, d, &cols.xt[u * d * NB], u * NB, std::min(NB, m - u * NB), k,
                           best_d.data(), best_i.data(), count.data(), g.data());
      for (index_t i = 0; i < rn; ++i)
        for (int e = 0; e < k; ++e) {
          dist[(i0 + i) * k + e] = static_cast<T>(std::sqrt(best_d[i * k + e]));
          idx[(i0 + i) * k + e] = best_i[i * k + e];
        }
    }
  }
}

}  // namespace

template <class T>
double gaussian_kernel_sum(const T* x, index_t n, const T* y, index_t m, index_t d, double bandwidth,
                           bool symmetric) {
  const double neg = -1.0 / (2.0 * bandwidth * bandwidth);
  if (n == 0 || m == 0) return 0.0;
  switch (d) {
    case 1: return kernel_sum_impl<1>(x, n, y, m, d, neg, symmetric);
    case 2: return kernel_sum_impl<2>(x, n, y, m, d, neg, symmetric);
    case 3: return kernel_sum_impl<3>(x, n, y, m, d, neg, symmetric);
    default: return kernel_sum_impl<0>(x, n, y, m, d, neg, symmetric);
  }
}

template <class T>
void nearest_neighbors(const T* x, index_t n, const T* y, index_t m, index_t d, int k, T* dist, index_t* idx) {
  if (n == 0) return;
  switch (d) {
    case 1: nearest_neighbors_impl<1>(x, n, y, m, d, k, dist, idx); return;
    case 2: nearest_neighbors_impl<2>(x, n, y, m, d, k, dist, idx); return;
    case 3: nearest_neighbors_impl<3>(x, n, y, m, d, k, dist, idx); return;
    default: nearest_neighbors_impl<0>(x, n, y, m, d, k, dist, idx); return;
  }
}


BIGSTEP_EXPORT_TYPED(gaussian_kernel_sum)
BIGSTEP_EXPORT_TYPED(nearest_neighbors)

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
