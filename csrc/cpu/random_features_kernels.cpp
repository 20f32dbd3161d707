// Random-features DSM: streamed feature Gram matrix (compiled once per instruction
// set, see isa.hpp; per-element math in bigstep/random_features.hpp).
//
// The n m noisy samples are processed in blocks of S.  For one block:
//   1. noise xi [S, dp] from Philox and inputs y = mu x_nu + sigma xi [S, d];
//   2. features, packed by panels of NP = 2W features: F[q][s][0..NP) =
//      rho(<w_{q NP + r}, y_s> / sqrt(d)) (a register-blocked GEMM against the
//      transposed, panel-packed weights Wt[q][k][0..NP));
//   3. K[panel qi, panel qj >= qi] += sum_s F[qi][s] F[qj][s]^T and
//      R[panel q, :] += sum_s F[q][s] xi_s^T, register-blocked, MR rows x 2W columns.
// Memory: the packed weights O(p d), K and R O(p^2 + p d), one block O(S (p + d));
// nothing of size n m p.  Every output element is a sum over samples in sample order,
// so the result does not depend on the thread count or the schedule.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bigstep/isa.hpp"
#include "bigstep/philox.hpp"
#include "bigstep/random_features.hpp"
#include "simd.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

using V = simd::vec<double>;
constexpr index_t W = simd::width<double>;
constexpr index_t NP = 2 * W;  // features per panel
constexpr int MR = 4;          // rows per micro-kernel call (divides NP)
constexpr index_t S = 128;     // samples per block (multiple of MR)

inline index_t round_up(index_t a, index_t b) { return (a + b - 1) / b * b; }

// Weights [p, d] as panels Wt[q][k][r] = w_{q NP + r, k} / sqrt(d) (zero past p).
std::vector<double> pack_weights(const double* w, index_t p, index_t d, index_t pp) {
  std::vector<double> wt(pp * d, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (index_t i = 0; i < p; ++i)
    for (index_t k = 0; k < d; ++k) wt[(i / NP * d + k) * NP + i % NP] = w[i * d + k] * scale;
  return wt;
}

// Features of rows y[0..rows) (row stride ys) for panel q: f[s][r], s < rows.
void feature_panel(const double* y, index_t ys, index_t rows, index_t d, const double* wt_q, int rho,
                   double* f) {
  for (index_t s = 0; s < rows; s += MR) {
    const int R = static_cast<int>(std::min<index_t>(MR, rows - s));
    V c[MR][2] = {};
    for (index_t k = 0; k < d; ++k) {
      const V b0 = simd::load(wt_q + k * NP), b1 = simd::load(wt_q + k * NP + W);
#pragma GCC unroll 4
      for (int r = 0; r < MR; ++r) {
        if (r >= R) break;
        const V a = simd::broadcast(y[(s + r) * ys + k]);
        c[r][0] += a * b0;
        c[r][1] += a * b1;
      }
    }
    for (int r = 0; r < R; ++r) {
      double* out = f + (s + r) * NP;
      for (index_t e = 0; e < W; ++e) {
        out[e] = rf_activation(rho, c[r][0][e]);
        out[W + e] = rf_activation(rho, c[r][1][e]);
      }
    }
  }
}

// acc[r][0..2W) (r < MR) += sum_{s < rows} a[s][r0 + r] * b[s][j..j+2W), rows a [., NP], b stride bs.
inline void outer_block(const double* a, index_t r0, const double* b, index_t bs, index_t j, index_t rows,
                        double* acc, index_t acc_stride) {
  V c[MR][2] = {};
  for (index_t s = 0; s < rows; ++s) {
    const V b0 = simd::load(b + s * bs + j), b1 = simd::load(b + s * bs + j + W);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const V ar = simd::broadcast(a[s * NP + r0 + r]);
      c[r][0] += ar * b0;
      c[r][1] += ar * b1;
    }
  }
  for (int r = 0; r < MR; ++r)
    for (index_t e = 0; e < W; ++e) {
      acc[r * acc_stride + j + e] += c[r][0][e];
      acc[r * acc_stride + j + W + e] += c[r][1][e];
    }
}

}  // namespace

void rf_gram(const double* x, index_t n, index_t d, const double* w, index_t p, double mu, double sigma,
             index_t m, std::uint64_t seed, std::uint64_t stream, int rho, double* K, double* R, double* xi2) {
  const index_t pp = round_up(p, NP), dp = round_up(d, NP), nq = pp / NP;
  const std::vector<double> wt = pack_weights(w, p, d, pp);
  std::vector<double> Kp(pp * pp, 0.0), Rp(pp * dp, 0.0);
  std::vector<double> xi(S * dp, 0.0), y(S * d), f(nq * S * NP);
  std::vector<double> xi2_rows(S);
  const PhiloxStream st = make_stream(seed, stream);
  const index_t total = n * m;
  double xi2_sum = 0.0;
#pragma omp parallel num_threads(num_threads())
  for (index_t s0 = 0; s0 < total; s0 += S) {
    const index_t rows = std::min(S, total - s0);
#pragma omp for schedule(static)
    for (index_t s = 0; s < rows; ++s) {
      const index_t g = s0 + s, nu = g / m;
      double acc = 0.0;
      for (index_t k = 0; k < d; ++k) {
        const double z = normal_at(st, static_cast<std::uint64_t>(g) * d + k);
        xi[s * dp + k] = z;
        y[s * d + k] = mu * x[nu * d + k] + sigma * z;
        acc += z * z;
      }
      xi2_rows[s] = acc;
    }
#pragma omp single
    {
      for (index_t s = 0; s < rows; ++s) xi2_sum += xi2_rows[s];
      // the last block's unused rows: zero features and noise add nothing
      if (rows < S) {
        std::fill(xi.begin() + rows * dp, xi.end(), 0.0);
      }
    }
#pragma omp for schedule(static)
    for (index_t q = 0; q < nq; ++q) {
      double* fq = &f[q * S * NP];
      feature_panel(y.data(), d, rows, d, &wt[q * d * NP], rho, fq);
      std::fill(fq + rows * NP, fq + S * NP, 0.0);
    }
#pragma omp for schedule(dynamic, 1)
    for (index_t qi = 0; qi < nq; ++qi) {
      const double* fi = &f[qi * S * NP];
      for (index_t r0 = 0; r0 < NP; r0 += MR) {
        double* krow = &Kp[(qi * NP + r0) * pp];
        for (index_t qj = qi; qj < nq; ++qj)
          outer_block(fi, r0, &f[qj * S * NP], NP, 0, rows, krow + qj * NP, pp);
        double* rrow = &Rp[(qi * NP + r0) * dp];
        for (index_t j = 0; j < dp; j += 2 * W) outer_block(fi, r0, xi.data(), dp, j, rows, rrow, dp);
      }
    }
  }
  for (index_t i = 0; i < p; ++i) {
    for (index_t j = i; j < p; ++j) K[i * p + j] = K[j * p + i] = Kp[i * pp + j];
    for (index_t k = 0; k < d; ++k) R[i * d + k] = Rp[i * dp + k];
  }
  *xi2 = xi2_sum;
}

void rf_features(const double* y, index_t q, index_t d, const double* w, index_t p, int rho, double* out) {
  const index_t pp = round_up(p, NP), nq = pp / NP, nb = (q + S - 1) / S;
  const std::vector<double> wt = pack_weights(w, p, d, pp);
#pragma omp parallel num_threads(num_threads())
  {
    std::vector<double> f(S * NP);
#pragma omp for schedule(static)
    for (index_t t = 0; t < nb * nq; ++t) {
      const index_t b = t / nq, qq = t % nq, s0 = b * S, rows = std::min(S, q - s0);
      feature_panel(y + s0 * d, d, rows, d, &wt[qq * d * NP], rho, f.data());
      for (index_t s = 0; s < rows; ++s)
        for (index_t r = 0; r < NP && qq * NP + r < p; ++r) out[(s0 + s) * p + qq * NP + r] = f[s * NP + r];
    }
  }
}

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
