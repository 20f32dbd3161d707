// d-D optimal-score kernels on the GPU (the CPU launcher: csrc/cpu/optimal_score_nd_kernels.cpp;
// the math: bigstep/optimal_score.hpp).  Two paths, both in float64 arithmetic for float32
// and float64 inputs (never TF32), memory O(q + n + tile), no q x n buffer:
//
// Flash path (d <= kFlashMaxDim): one block of 8 warps owns kBQ = 32 queries; a warp owns
// 4 of them.  Data tiles of BN points (64, or 32 at d > 128) go through shared memory; each
// lane forms the squared distances of its points to the warp's queries in difference
// form, r2 = ||y/mu - x_j||^2 (no cancellation at any sigma, so no accuracy guard is
// needed), the logits l = -mu^2 r2 / (2 sigma^2), an online softmax per query (running
// max m, sum s, the accumulators rescaled when m grows), and Acc += P X with the lanes
// over coordinates.  Everything stays in registers and shared memory.
//
// Blocked path (larger d): queries in chunks of QC rows, data in chunks of NC points; per
// pair of chunks
//   K1  G = a_i Y X^T - c_i ||x_j||^2 (GEMM-form logits) on the float64 tensor cores
//       (wmma m8n8k4 double), operands converted to double as they are staged;
//   K2  per row: running max, alpha_i = exp(m_old - m_new), P = exp(G - m_new) in place,
//       s_i = alpha_i s_i + sum P, a flag per 64 x 64 block of P that holds a weight
//       above kTiny (at small sigma most blocks hold none);
//   K3  Acc = alpha_i Acc + P X (tensor cores again), skipping the flagged-empty blocks;
// then K4 turns (m, s, Acc) into the outputs.  Memory: G [QC, NC] and Acc [QC, d] (a few
// hundred MB at most) plus O(q + n).
//
// Small-sigma guard (blocked path).  The float64 GEMM-form logit has absolute error at
// most E_i = 1.01 u ((d + 3) a_i |y_i| max|x| + 4 c_i max|x|^2), u = 2^-53.  Rows with
// E_i > kGuardTol collect, in K2, every j whose float64 logit is within kDrop + 2 E_i of
// the running maximum (pruned as the maximum grows, at most kCap; a row that overflows
// keeps the GEMM-form result, as the CPU kernel falls back to it), and K5 recomputes those
// candidates' logits in difference form, -||y - mu x_j||^2 / (2 sigma^2), and the row's
// outputs from them: the points left out carry relative weight below n exp(-kDrop).  This
// is the CPU float32 kernel's screen-and-recompute (optimal_score_nd_kernels.cpp), with a
// float64 screen.
#include "common.cuh"

#include "bigstep/fast_exp.hpp"
#include "bigstep/optimal_score.hpp"

namespace bigstep::cuda {
namespace {

namespace wmma = nvcuda::wmma;

// ------------------------------------------------------------------------ flash path
constexpr int kFlashThreads = 256;  // 8 warps
constexpr int kRows = 4;            // queries per warp
constexpr int kBQ = 8 * kRows;      // queries per block

template <int DP>
struct Flash {
  static constexpr int PT = DP <= 128 ? 2 : 1;  // data points per lane
  static constexpr int BN = 32 * PT;            // data points per tile
  static constexpr int CPT = DP / 32;           // coordinates per lane (Acc)
  static constexpr int LDX = DP + 1;            // odd stride: conflict-free column reads
  static constexpr std::size_t smem = sizeof(double) * (kBQ * DP + BN * LDX + kBQ * BN);
};

template <class T, int DP>
__global__ void __launch_bounds__(kFlashThreads)
    flash_kernel(const T* __restrict__ y, index_t q, const T* __restrict__ x, index_t n, index_t d,
                 const T* __restrict__ mu, index_t mu_stride, const T* __restrict__ sigma, index_t sigma_stride,
                 T* score, T* log_density, T* mean) {
  using S = Flash<DP>;
  BIGSTEP_DYNAMIC_SHARED(smem);
  double* Z = reinterpret_cast<double*>(smem);  // [kBQ, DP]   y / mu, zero padded
  double* X = Z + kBQ * DP;                      // [BN, LDX]   data tile, zero padded
  double* P = X + S::BN * S::LDX;                // [kBQ, BN]   weights of the tile
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const index_t q0 = static_cast<index_t>(blockIdx.x) * kBQ;
  for (int e = static_cast<int>(threadIdx.x); e < kBQ * DP; e += kFlashThreads) {
    const int i = e / DP, k = e % DP;
    const index_t row = q0 + i;
    Z[e] = (row < q && k < d) ? double(y[row * d + k]) / double(mu[row * mu_stride]) : 0.0;
  }
  double c[kRows], m[kRows], s[kRows], acc[kRows][S::CPT];
  BIGSTEP_UNROLL
  for (int r = 0; r < kRows; ++r) {
    const index_t row = q0 + warp * kRows + r;
    const double mui = row < q ? double(mu[row * mu_stride]) : 1.0;
    const double si = row < q ? double(sigma[row * sigma_stride]) : 1.0;
    c[r] = mui * mui / (2.0 * si * si);
    m[r] = -static_cast<double>(INFINITY);
    s[r] = 0.0;
    BIGSTEP_UNROLL
    for (int cc = 0; cc < S::CPT; ++cc) acc[r][cc] = 0.0;
  }
  const double* Zw = Z + warp * kRows * DP;
  double* Pw = P + warp * kRows * S::BN;
  for (index_t j0 = 0; j0 < n; j0 += S::BN) {
    const int jn = static_cast<int>(vmin<index_t>(S::BN, n - j0));
    __syncthreads();  // the previous tile is consumed (and Z is written)
    for (int e = static_cast<int>(threadIdx.x); e < S::BN * DP; e += kFlashThreads) {
      const int j = e / DP, k = e % DP;
      X[j * S::LDX + k] = (j < jn && k < d) ? double(x[(j0 + j) * d + k]) : 0.0;
    }
    __syncthreads();
    double r2[kRows][S::PT];
    BIGSTEP_UNROLL
    for (int r = 0; r < kRows; ++r)
      BIGSTEP_UNROLL
      for (int p = 0; p < S::PT; ++p) r2[r][p] = 0.0;
    for (index_t k = 0; k < d; ++k) {
      double xv[S::PT];
      BIGSTEP_UNROLL
      for (int p = 0; p < S::PT; ++p) xv[p] = X[(lane + 32 * p) * S::LDX + k];
      BIGSTEP_UNROLL
      for (int r = 0; r < kRows; ++r) {
        const double zv = Zw[r * DP + k];
        BIGSTEP_UNROLL
        for (int p = 0; p < S::PT; ++p) {
          const double t = zv - xv[p];
          r2[r][p] = std::fma(t, t, r2[r][p]);
        }
      }
    }
    BIGSTEP_UNROLL
    for (int r = 0; r < kRows; ++r) {
      double l[S::PT];
      double tile_max = -static_cast<double>(INFINITY);
      BIGSTEP_UNROLL
      for (int p = 0; p < S::PT; ++p) {
        l[p] = lane + 32 * p < jn ? -c[r] * r2[r][p] : -static_cast<double>(INFINITY);
        tile_max = vmax(tile_max, l[p]);
      }
      tile_max = warp_max(tile_max);
      const double m_new = vmax(m[r], tile_max);
      const double alpha = m[r] == -static_cast<double>(INFINITY) ? 0.0 : exp_nonpos(m[r] - m_new);
      double ps = 0.0;
      BIGSTEP_UNROLL
      for (int p = 0; p < S::PT; ++p) {
        const int j = lane + 32 * p;
        const double pv = j < jn ? exp_nonpos(l[p] - m_new) : 0.0;
        Pw[r * S::BN + j] = pv;
        ps += pv;
      }
      s[r] = s[r] * alpha + ps;
      BIGSTEP_UNROLL
      for (int cc = 0; cc < S::CPT; ++cc) acc[r][cc] *= alpha;
      m[r] = m_new;
    }
    __syncwarp();  // the warp's weights are in P
    for (int j = 0; j < jn; ++j) {
      double pr[kRows];
      BIGSTEP_UNROLL
      for (int r = 0; r < kRows; ++r) pr[r] = Pw[r * S::BN + j];
      BIGSTEP_UNROLL
      for (int cc = 0; cc < S::CPT; ++cc) {
        const double xv = X[j * S::LDX + lane + 32 * cc];
        BIGSTEP_UNROLL
        for (int r = 0; r < kRows; ++r) acc[r][cc] = std::fma(pr[r], xv, acc[r][cc]);
      }
    }
  }
  const double log_n = std::log(static_cast<double>(n));
  BIGSTEP_UNROLL
  for (int r = 0; r < kRows; ++r) {
    const double total = warp_sum(s[r]);
    const index_t row = q0 + warp * kRows + r;
    if (row >= q) continue;  // the same row for the whole warp
    const double mui = mu[row * mu_stride], si = sigma[row * sigma_stride];
    const bool bad = !std::isfinite(m[r]);  // a NaN or infinite query coordinate
    const double nan = static_cast<double>(NAN);
    if (log_density && lane == 0)
      log_density[row] = static_cast<T>(
          bad ? nan : m[r] + std::log(total) - log_n - double(d) * (std::log(si) + kHalfLog2Pi));
    BIGSTEP_UNROLL
    for (int cc = 0; cc < S::CPT; ++cc) {
      const index_t k = lane + 32 * cc;
      if (k >= d) continue;
      const double w = bad ? nan : acc[r][cc] / total;
      if (mean) mean[row * d + k] = static_cast<T>(w);
      if (score) score[row * d + k] = static_cast<T>((mui * w - double(y[row * d + k])) / (si * si));
    }
  }
}

template <class T, int DP>
void launch_flash(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
                  const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean, Stream stream) {
  launch("optimal_score_nd (flash)", flash_kernel<T, DP>, dim3(static_cast<unsigned>(ceil_div(q, kBQ))),
         dim3(kFlashThreads), Flash<DP>::smem, stream, y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score,
         log_density, mean);
}

// ----------------------------------------------------------------------- blocked path
constexpr int kThreads = 256;  // 8 warps: 2 (rows) x 4 (columns) of 32 x 16 outputs
constexpr int BM = 64, BN = 64, BK = 16;
constexpr int LDA = BK + 4;   // 160-byte rows: every 8-row / 4-column fragment 32-byte aligned
constexpr int LDB = BN + 4;   // row-major k x n tiles of K3
constexpr int LDC = BN + 4;
constexpr std::size_t kGemmSmem = sizeof(double) * (BM * LDC > 2 * BM * LDA ? BM * LDC : 2 * BM * LDA);
constexpr std::size_t kPxSmem = sizeof(double) * (BM * LDC > BM * LDA + BK * LDB ? BM * LDC : BM * LDA + BK * LDB);
constexpr double kDrop = 40.0;
constexpr int kCap = 32;
constexpr double kGuardTol = 1e-9;
constexpr double kTiny = 1e-200;  // weights below this (relative to the running max) are skipped

using FragA = wmma::fragment<wmma::matrix_a, 8, 8, 4, double, wmma::row_major>;
using FragBcol = wmma::fragment<wmma::matrix_b, 8, 8, 4, double, wmma::col_major>;
using FragBrow = wmma::fragment<wmma::matrix_b, 8, 8, 4, double, wmma::row_major>;
using FragC = wmma::fragment<wmma::accumulator, 8, 8, 4, double>;

// Per-row state of a query chunk (device arrays of QC entries).
struct Rows {
  double *m, *s, *alpha, *a, *c, *ynorm2, *margin;
  int *bad, *guard, *full, *count;
  std::int32_t* idx;  // [QC, kCap]
  double* val;        // [QC, kCap]
};

// ||x_j||^2 in double and the largest ||x_j|| (as the bits of a non-negative double).
template <class T>
__global__ void __launch_bounds__(kThreads)
    data_norms(const T* __restrict__ x, index_t n, index_t d, double* xn, unsigned long long* xmax_bits) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const index_t j = static_cast<index_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (j >= n) return;
  double acc = 0.0;
  for (index_t k = lane; k < d; k += 32) {
    const double v = x[j * d + k];
    acc = std::fma(v, v, acc);
  }
  acc = warp_sum(acc);
  if (lane == 0) {
    xn[j] = acc;
    const double nrm = std::sqrt(acc);
    atomicMax(xmax_bits, static_cast<unsigned long long>(__double_as_longlong(nrm)));
  }
}

// Per-row constants and state of a query chunk: a, c, ||y||^2, the guard's margin.
template <class T>
__global__ void __launch_bounds__(kThreads)
    prepare_rows(const T* __restrict__ y, index_t qc, index_t d, const T* __restrict__ mu, index_t mu_stride,
                 const T* __restrict__ sigma, index_t sigma_stride, const unsigned long long* xmax_bits, Rows rows) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const index_t i = static_cast<index_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (i >= qc) return;
  double acc = 0.0;
  for (index_t k = lane; k < d; k += 32) {
    const double v = y[i * d + k];
    acc = std::fma(v, v, acc);
  }
  acc = warp_sum(acc);
  if (lane != 0) return;
  const double mui = mu[i * mu_stride], si = sigma[i * sigma_stride];
  const double a = mui / (si * si), c = mui * mui / (2.0 * si * si);
  const double xmax = __longlong_as_double(static_cast<long long>(*xmax_bits)) * (1.0 + 1e-15);
  const double u = 1.1102230246251565e-16;
  const double err = 1.01 * u * ((double(d) + 3.0) * a * std::sqrt(acc) * xmax + 4.0 * c * xmax * xmax);
  const bool bad = !std::isfinite(acc);
  rows.a[i] = a;
  rows.c[i] = c;
  rows.ynorm2[i] = acc;
  rows.margin[i] = kDrop + 2.0 * err;
  rows.bad[i] = bad;
  rows.guard[i] = !bad && err > kGuardTol && std::isfinite(err);
  rows.full[i] = 0;
  rows.count[i] = 0;
  rows.m[i] = -static_cast<double>(INFINITY);
  rows.s[i] = 0.0;
  rows.alpha[i] = 0.0;
}

// K1: G[i, j] = a_i <y_i, x_j> - c_i ||x_j||^2 for i < qc, j < nc (chunk-local pointers).
template <class T>
__global__ void __launch_bounds__(kThreads)
    logits_gemm(const T* __restrict__ y, const T* __restrict__ x, index_t d, index_t qc, index_t nc,
                const double* __restrict__ a, const double* __restrict__ c, const double* __restrict__ xn, double* G,
                index_t ldg) {
  BIGSTEP_DYNAMIC_SHARED(smem);
  double* As = reinterpret_cast<double*>(smem);  // [BM, LDA] query rows
  double* Bs = As + BM * LDA;                     // [BN, LDA] data rows (B column-major)
  double* Cs = As;                                // [BM, LDC] after the k loop
  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32;
  const int wm = warp / 4, wn = warp % 4;
  const index_t i0 = static_cast<index_t>(blockIdx.y) * BM, j0 = static_cast<index_t>(blockIdx.x) * BN;
  FragC acc[4][2];
  BIGSTEP_UNROLL
  for (int mi = 0; mi < 4; ++mi)
    BIGSTEP_UNROLL
    for (int ni = 0; ni < 2; ++ni) wmma::fill_fragment(acc[mi][ni], 0.0);
  for (index_t k0 = 0; k0 < d; k0 += BK) {
    for (int e = tid; e < BM * BK; e += kThreads) {
      const int r = e / BK, kk = e % BK;
      const index_t gk = k0 + kk;
      As[r * LDA + kk] = (i0 + r < qc && gk < d) ? double(y[(i0 + r) * d + gk]) : 0.0;
      Bs[r * LDA + kk] = (j0 + r < nc && gk < d) ? double(x[(j0 + r) * d + gk]) : 0.0;
    }
    __syncthreads();
    BIGSTEP_UNROLL
    for (int ks = 0; ks < BK; ks += 4) {
      FragA fa[4];
      FragBcol fb[2];
      BIGSTEP_UNROLL
      for (int mi = 0; mi < 4; ++mi) wmma::load_matrix_sync(fa[mi], As + (wm * 32 + mi * 8) * LDA + ks, LDA);
      BIGSTEP_UNROLL
      for (int ni = 0; ni < 2; ++ni) wmma::load_matrix_sync(fb[ni], Bs + (wn * 16 + ni * 8) * LDA + ks, LDA);
      BIGSTEP_UNROLL
      for (int mi = 0; mi < 4; ++mi)
        BIGSTEP_UNROLL
        for (int ni = 0; ni < 2; ++ni) wmma::mma_sync(acc[mi][ni], fa[mi], fb[ni], acc[mi][ni]);
    }
    __syncthreads();
  }
  BIGSTEP_UNROLL
  for (int mi = 0; mi < 4; ++mi)
    BIGSTEP_UNROLL
    for (int ni = 0; ni < 2; ++ni)
      wmma::store_matrix_sync(Cs + (wm * 32 + mi * 8) * LDC + wn * 16 + ni * 8, acc[mi][ni], LDC,
                              wmma::mem_row_major);
  __syncthreads();
  for (int e = tid; e < BM * BN; e += kThreads) {
    const int r = e / BN, cc = e % BN;
    const index_t gi = i0 + r, gj = j0 + cc;
    if (gi < qc && gj < nc) G[gi * ldg + gj] = gemm_logit<double>(Cs[r * LDC + cc], xn[gj], a[gi], c[gi]);
  }
}

// K2: one warp per row of the chunk (see the top of the file).  n0: the chunk's first
// data index (the guard's candidates are global indices).
__global__ void __launch_bounds__(kThreads)
    row_softmax(double* G, index_t ldg, index_t qc, index_t nc, index_t n0, Rows rows, int* flags, index_t flag_ld) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const index_t i = static_cast<index_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (i >= qc || rows.bad[i]) return;  // the whole warp
  double* g = G + i * ldg;
  double tile_max = -static_cast<double>(INFINITY);
  for (index_t j = lane; j < nc; j += 32) tile_max = vmax(tile_max, g[j]);
  tile_max = warp_max(tile_max);
  const double m_old = rows.m[i];
  const double m_new = vmax(m_old, tile_max);
  const double alpha = m_old == -static_cast<double>(INFINITY) ? 0.0 : exp_nonpos(m_old - m_new);
  bool guard = rows.guard[i] && !rows.full[i];
  bool full = rows.full[i] != 0;
  int count = rows.count[i];
  const double thr = m_new - rows.margin[i];
  std::int32_t* idx = rows.idx + i * kCap;
  double* val = rows.val + i * kCap;
  if (guard) {  // drop the candidates that fell below the new threshold
    const bool have = lane < count;
    const std::int32_t my_idx = have ? idx[lane] : 0;
    const double my_val = have ? val[lane] : 0.0;
    const bool keep = have && my_val >= thr;
    const unsigned kept = __ballot_sync(kFullMask, keep);
    __syncwarp();
    if (keep) {
      const int pos = __popc(kept & ((1u << lane) - 1u));
      idx[pos] = my_idx;
      val[pos] = my_val;
    }
    count = __popc(kept);
    __syncwarp();
  }
  double sum = 0.0;
  const index_t flag_row = (i / BM) * flag_ld;
  for (index_t jb = 0; jb < nc; jb += 32) {
    const index_t j = jb + lane;
    const bool valid = j < nc;
    const double l = valid ? g[j] : -static_cast<double>(INFINITY);
    const double p = valid ? exp_nonpos(l - m_new) : 0.0;
    if (valid) {
      g[j] = p;
      if (p > kTiny) flags[flag_row + j / BN] = 1;
    }
    sum += p;
    if (guard) {
      const bool cand = valid && l >= thr;
      const unsigned ballot = __ballot_sync(kFullMask, cand);
      const int added = __popc(ballot);
      if (count + added > kCap) {
        guard = false;  // overflow: the row keeps the GEMM-form result
        full = true;
      } else {
        if (cand) {
          const int pos = count + __popc(ballot & ((1u << lane) - 1u));
          idx[pos] = static_cast<std::int32_t>(n0 + j);
          val[pos] = l;
        }
        count += added;
      }
    }
  }
  sum = warp_sum(sum);
  if (lane == 0) {
    rows.s[i] = rows.s[i] * alpha + sum;
    rows.m[i] = m_new;
    rows.alpha[i] = alpha;
    rows.count[i] = count;
    rows.full[i] = full;
  }
}

// K3: Acc[i, :] = alpha_i Acc[i, :] + sum_j P[i, j] x_j over the chunk's data.
template <class T>
__global__ void __launch_bounds__(kThreads)
    px_gemm(const double* __restrict__ G, index_t ldg, const T* __restrict__ x, index_t d, index_t qc, index_t nc,
            const double* __restrict__ alpha, double* acc_out, const int* __restrict__ flags, index_t flag_ld) {
  BIGSTEP_DYNAMIC_SHARED(smem);
  double* As = reinterpret_cast<double*>(smem);  // [BM, LDA]  weights
  double* Bs = As + BM * LDA;                     // [BK, LDB]  data rows
  double* Cs = As;                                // [BM, LDC]  after the k loop
  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32;
  const int wm = warp / 4, wn = warp % 4;
  const index_t i0 = static_cast<index_t>(blockIdx.y) * BM, c0 = static_cast<index_t>(blockIdx.x) * BN;
  const int* flag_row = flags + (i0 / BM) * flag_ld;
  FragC acc[4][2];
  BIGSTEP_UNROLL
  for (int mi = 0; mi < 4; ++mi)
    BIGSTEP_UNROLL
    for (int ni = 0; ni < 2; ++ni) wmma::fill_fragment(acc[mi][ni], 0.0);
  for (index_t kb = 0; kb < nc; kb += BN) {
    if (flag_row[kb / BN] == 0) continue;  // every weight of this 64 x 64 block is below kTiny
    const index_t k_end = vmin<index_t>(kb + BN, nc);
    for (index_t k0 = kb; k0 < k_end; k0 += BK) {
      for (int e = tid; e < BM * BK; e += kThreads) {
        const int r = e / BK, kk = e % BK;
        const index_t gj = k0 + kk;
        As[r * LDA + kk] = (i0 + r < qc && gj < k_end) ? G[(i0 + r) * ldg + gj] : 0.0;
      }
      for (int e = tid; e < BK * BN; e += kThreads) {
        const int kk = e / BN, cc = e % BN;
        const index_t gj = k0 + kk, gc = c0 + cc;
        Bs[kk * LDB + cc] = (gj < k_end && gc < d) ? double(x[gj * d + gc]) : 0.0;
      }
      __syncthreads();
      BIGSTEP_UNROLL
      for (int ks = 0; ks < BK; ks += 4) {
        FragA fa[4];
        FragBrow fb[2];
        BIGSTEP_UNROLL
        for (int mi = 0; mi < 4; ++mi) wmma::load_matrix_sync(fa[mi], As + (wm * 32 + mi * 8) * LDA + ks, LDA);
        BIGSTEP_UNROLL
        for (int ni = 0; ni < 2; ++ni) wmma::load_matrix_sync(fb[ni], Bs + ks * LDB + wn * 16 + ni * 8, LDB);
        BIGSTEP_UNROLL
        for (int mi = 0; mi < 4; ++mi)
          BIGSTEP_UNROLL
          for (int ni = 0; ni < 2; ++ni) wmma::mma_sync(acc[mi][ni], fa[mi], fb[ni], acc[mi][ni]);
      }
      __syncthreads();
    }
  }
  BIGSTEP_UNROLL
  for (int mi = 0; mi < 4; ++mi)
    BIGSTEP_UNROLL
    for (int ni = 0; ni < 2; ++ni)
      wmma::store_matrix_sync(Cs + (wm * 32 + mi * 8) * LDC + wn * 16 + ni * 8, acc[mi][ni], LDC,
                              wmma::mem_row_major);
  __syncthreads();
  for (int e = tid; e < BM * BN; e += kThreads) {
    const int r = e / BN, cc = e % BN;
    const index_t gi = i0 + r, gc = c0 + cc;
    if (gi < qc && gc < d) {
      const double al = alpha[gi];
      double* p = acc_out + gi * d + gc;
      *p = (al == 0.0 ? 0.0 : al * *p) + Cs[r * LDC + cc];
    }
  }
}

// K4: outputs of the chunk's rows (one warp per row).  Rows whose guard list is complete
// are rewritten by K5 afterwards.
template <class T>
__global__ void __launch_bounds__(kThreads)
    finish_rows(const T* __restrict__ y, index_t qc, index_t n, index_t d, const T* __restrict__ mu,
                index_t mu_stride, const T* __restrict__ sigma, index_t sigma_stride, Rows rows,
                const double* __restrict__ acc, T* score, T* log_density, T* mean) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const index_t i = static_cast<index_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (i >= qc) return;
  const double mui = mu[i * mu_stride], si = sigma[i * sigma_stride];
  const bool bad = rows.bad[i] != 0;
  const double total = rows.s[i];
  const double nan = static_cast<double>(NAN);
  if (log_density && lane == 0) {
    const double lse = rows.m[i] + std::log(total) - rows.ynorm2[i] / (2.0 * si * si);
    log_density[i] = static_cast<T>(bad ? nan
                                        : lse - std::log(static_cast<double>(n)) -
                                              double(d) * (std::log(si) + kHalfLog2Pi));
  }
  for (index_t k = lane; k < d; k += 32) {
    const double w = bad ? nan : acc[i * d + k] / total;
    if (mean) mean[i * d + k] = static_cast<T>(w);
    if (score) score[i * d + k] = static_cast<T>((mui * w - double(y[i * d + k])) / (si * si));
  }
}

// K5: the guarded rows with a complete candidate list, recomputed in difference form.
template <class T>
__global__ void __launch_bounds__(kThreads)
    guard_rows(const T* __restrict__ y, index_t qc, const T* __restrict__ x, index_t n, index_t d,
               const T* __restrict__ mu, index_t mu_stride, const T* __restrict__ sigma, index_t sigma_stride,
               Rows rows, T* score, T* log_density, T* mean) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const index_t i = static_cast<index_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (i >= qc || !rows.guard[i] || rows.full[i] || rows.count[i] == 0) return;
  const int count = rows.count[i];
  const double mui = mu[i * mu_stride], si = sigma[i * sigma_stride];
  const double neg_inv2s2 = -1.0 / (2.0 * si * si);
  const std::int32_t my_j = lane < count ? rows.idx[i * kCap + lane] : 0;
  double my_l = -static_cast<double>(INFINITY);
  for (int e = 0; e < count; ++e) {
    const index_t j = __shfl_sync(kFullMask, my_j, e);
    double r2 = 0.0;
    for (index_t k = lane; k < d; k += 32) {
      const double diff = double(y[i * d + k]) - mui * double(x[j * d + k]);
      r2 = std::fma(diff, diff, r2);
    }
    r2 = warp_sum(r2);
    if (lane == e) my_l = r2 * neg_inv2s2;
  }
  const double lmax = warp_max(my_l);
  const double my_w = lane < count ? std::exp(my_l - lmax) : 0.0;
  const double total = warp_sum(my_w);
  if (log_density && lane == 0)
    log_density[i] = static_cast<T>(lmax + std::log(total) - std::log(static_cast<double>(n)) -
                                    double(d) * (std::log(si) + kHalfLog2Pi));
  for (index_t k0 = 0; k0 < d; k0 += 32) {
    const index_t k = k0 + lane;
    double accv = 0.0;
    for (int e = 0; e < count; ++e) {
      const double we = __shfl_sync(kFullMask, my_w, e);
      const index_t j = __shfl_sync(kFullMask, my_j, e);
      if (k < d) accv = std::fma(we, double(x[j * d + k]), accv);
    }
    if (k >= d) continue;
    const double w = accv / total;
    if (mean) mean[i * d + k] = static_cast<T>(w);
    if (score) score[i * d + k] = static_cast<T>((mui * w - double(y[i * d + k])) / (si * si));
  }
}

// The workspace of the blocked path, in one order for sizing and carving.
struct Blocked {
  double* xn;
  unsigned long long* xmax;
  double* G;
  double* acc;
  Rows rows;
  int* flags;
  index_t flag_ld;
  Blocked(Carver& cv, index_t n, index_t d, index_t qc, index_t nc) {
    xn = cv.take<double>(n);
    xmax = cv.take<unsigned long long>(1);
    G = cv.take<double>(qc * nc);
    acc = cv.take<double>(qc * d);
    rows.m = cv.take<double>(qc);
    rows.s = cv.take<double>(qc);
    rows.alpha = cv.take<double>(qc);
    rows.a = cv.take<double>(qc);
    rows.c = cv.take<double>(qc);
    rows.ynorm2 = cv.take<double>(qc);
    rows.margin = cv.take<double>(qc);
    rows.bad = cv.take<int>(qc);
    rows.guard = cv.take<int>(qc);
    rows.full = cv.take<int>(qc);
    rows.count = cv.take<int>(qc);
    rows.idx = cv.take<std::int32_t>(qc * kCap);
    rows.val = cv.take<double>(qc * kCap);
    flag_ld = ceil_div(nc, BN);
    flags = cv.take<int>(ceil_div(qc, BM) * flag_ld);
  }
};

template <class T>
void run_blocked(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
                 const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean, const NdPlan& plan,
                 Workspace ws, Stream stream) {
  const index_t QC = plan.q_chunk, NC = plan.n_chunk;
  Carver cv(ws);
  Blocked b(cv, n, d, QC, NC);
  const unsigned warps_per_block = kThreads / 32;
  check(cudaMemsetAsync(b.xmax, 0, sizeof(unsigned long long), as_stream(stream)), "cudaMemsetAsync");
  launch("optimal_score_nd (norms)", data_norms<T>, dim3(static_cast<unsigned>(ceil_div(n, warps_per_block))),
         dim3(kThreads), 0, stream, x, n, d, b.xn, b.xmax);
  for (index_t q0 = 0; q0 < q; q0 += QC) {
    const index_t qc = vmin(QC, q - q0);
    const T* yc = y + q0 * d;
    const T* muc = mu + q0 * mu_stride;
    const T* sigc = sigma + q0 * sigma_stride;
    const dim3 row_grid(static_cast<unsigned>(ceil_div(qc, warps_per_block)));
    launch("optimal_score_nd (rows)", prepare_rows<T>, row_grid, dim3(kThreads), 0, stream, yc, qc, d, muc,
           mu_stride, sigc, sigma_stride, static_cast<const unsigned long long*>(b.xmax), b.rows);
    for (index_t n0 = 0; n0 < n; n0 += NC) {
      const index_t nc = vmin(NC, n - n0);
      check(cudaMemsetAsync(b.flags, 0, sizeof(int) * static_cast<std::size_t>(ceil_div(qc, BM) * b.flag_ld),
                            as_stream(stream)),
            "cudaMemsetAsync");
      launch("optimal_score_nd (logits)", logits_gemm<T>,
             dim3(static_cast<unsigned>(ceil_div(nc, BN)), static_cast<unsigned>(ceil_div(qc, BM))), dim3(kThreads),
             kGemmSmem, stream, yc, x + n0 * d, d, qc, nc, static_cast<const double*>(b.rows.a),
             static_cast<const double*>(b.rows.c), static_cast<const double*>(b.xn + n0), b.G, NC);
      launch("optimal_score_nd (softmax)", row_softmax, row_grid, dim3(kThreads), 0, stream, b.G, NC, qc, nc, n0,
             b.rows, b.flags, b.flag_ld);
      launch("optimal_score_nd (weighted sum)", px_gemm<T>,
             dim3(static_cast<unsigned>(ceil_div(d, BN)), static_cast<unsigned>(ceil_div(qc, BM))), dim3(kThreads),
             kPxSmem, stream, static_cast<const double*>(b.G), NC, x + n0 * d, d, qc, nc,
             static_cast<const double*>(b.rows.alpha), b.acc, static_cast<const int*>(b.flags), b.flag_ld);
    }
    T* so = score ? score + q0 * d : nullptr;
    T* lo = log_density ? log_density + q0 : nullptr;
    T* me = mean ? mean + q0 * d : nullptr;
    launch("optimal_score_nd (finish)", finish_rows<T>, row_grid, dim3(kThreads), 0, stream, yc, qc, n, d, muc,
           mu_stride, sigc, sigma_stride, b.rows, static_cast<const double*>(b.acc), so, lo, me);
    launch("optimal_score_nd (guard)", guard_rows<T>, row_grid, dim3(kThreads), 0, stream, yc, qc, x, n, d, muc,
           mu_stride, sigc, sigma_stride, b.rows, so, lo, me);
  }
}

index_t round_down(index_t v, index_t m) { return v / m * m; }

}  // namespace

NdPlan optimal_score_nd_plan(index_t q, index_t n, index_t d, int path, index_t q_chunk, index_t n_chunk) {
  NdPlan plan{path, 0, 0, 0};
  if (path == 0) {
    // the flash kernel runs one block per 32 queries over all the data: it needs enough
    // query blocks to fill the device, or little data per block
    const bool many_queries = ceil_div(q, kBQ) >= 2 * static_cast<index_t>(sm_count());
    plan.path = d <= kFlashMaxDim && (many_queries || n * d <= (index_t(1) << 20)) ? 1 : 2;
  }
  if (plan.path == 1) {
    if (d > kFlashMaxDim) throw Error("the flash path takes d <= " + std::to_string(kFlashMaxDim));
    return plan;
  }
  const index_t kAccElems = index_t(1) << 25;  // Acc and G: at most 256 MB each
  index_t NC = n_chunk > 0 ? n_chunk : vmin<index_t>(n, 8192);
  index_t QC = q_chunk > 0 ? q_chunk : vmax<index_t>(BM, round_down(kAccElems / vmax<index_t>(d, 1), BM));
  if (q_chunk <= 0) QC = vmin(QC, vmax<index_t>(BM, round_down(kAccElems / NC, BM)));
  QC = vmax<index_t>(1, vmin(QC, q));
  NC = vmax<index_t>(1, vmin(NC, n));
  plan.q_chunk = QC;
  plan.n_chunk = NC;
  Carver counter;
  Blocked sizes(counter, n, d, QC, NC);
  plan.workspace = counter.used();
  return plan;
}

template <class T>
void optimal_score_nd(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
                      const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean, const NdPlan& plan,
                      Workspace ws, Stream stream) {
  if (q <= 0) return;
  if (plan.path == 2) {
    run_blocked<T>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean, plan, ws, stream);
    return;
  }
  if (d <= 32)
    launch_flash<T, 32>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean, stream);
  else if (d <= 64)
    launch_flash<T, 64>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean, stream);
  else if (d <= 128)
    launch_flash<T, 128>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean, stream);
  else if (d <= 256)
    launch_flash<T, 256>(y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density, mean, stream);
  else
    throw Error("the flash path takes d <= " + std::to_string(kFlashMaxDim));
}

#define BIGSTEP_INSTANTIATE(T)                                                                                  \
  template void optimal_score_nd<T>(const T*, index_t, const T*, index_t, index_t, const T*, index_t, const T*, \
                                    index_t, T*, T*, T*, const NdPlan&, Workspace, Stream);
BIGSTEP_INSTANTIATE(float)
BIGSTEP_INSTANTIATE(double)
#undef BIGSTEP_INSTANTIATE

}  // namespace bigstep::cuda
