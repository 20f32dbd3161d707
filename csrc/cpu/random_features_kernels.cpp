// Random-features DSM: streamed feature Gram matrix (compiled once per instruction
// set, entry points listed in kernels.hpp; per-element math in bigstep/random_features.hpp).
//
// The n m noisy samples are processed in blocks of S.  For one block:
//   1. noise xi [S, dp] from Philox and inputs y = mu x_nu + sigma xi [S, d];
//   2. features, packed by panels of NP = 3W features: F[q][s][0..NP) =
//      rho(<w_{q NP + r}, y_s> / sqrt(d)) (a register-blocked GEMM against the
//      transposed, panel-packed weights Wt[q][k][0..NP));
//   3. K[panel qi, panel qj >= qi] += sum_s F[qi][s] F[qj][s]^T and
//      R[panel q, :] += sum_s F[q][s] xi_s^T, register-blocked, MR rows x 3W columns.
// Memory: the packed weights O(p d), K and R O(p^2 + p d), one block O(S (p + d)) per
// thread; nothing of size n m p.  Every output element is a sum over samples in sample
// order formed by one thread, so the result does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bigstep/philox.hpp"
#include "bigstep/random_features.hpp"
#include "kernels.hpp"
#include "simd.hpp"
#include "team.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

using V = simd::vec<double>;
constexpr index_t W = simd::width<double>;
constexpr int NR = 3;                         // vectors per micro-kernel row
constexpr index_t NP = NR * W;                // features per panel
constexpr int MR = NP % 4 == 0 ? 4 : 3;       // rows per micro-kernel call (divides NP)
// MR x NR accumulators: 12 (AVX2, AVX-512) or 9 (SSE2) of the 16 or 32 vector registers
constexpr index_t S = 128;     // samples per block

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
    V c[MR][NR] = {};
    for (index_t k = 0; k < d; ++k) {
      V b[NR];
      for (int h = 0; h < NR; ++h) b[h] = simd::load(wt_q + k * NP + h * W);
#pragma GCC unroll 4
      for (int r = 0; r < MR; ++r) {
        if (r >= R) break;
        const V a = simd::broadcast(y[(s + r) * ys + k]);
        for (int h = 0; h < NR; ++h) c[r][h] += a * b[h];
      }
    }
    for (int r = 0; r < R; ++r) {
      double* out = f + (s + r) * NP;
      for (int h = 0; h < NR; ++h)
        for (index_t e = 0; e < W; ++e) out[h * W + e] = rf_activation(rho, c[r][h][e]);
    }
  }
}

// acc[r][j..j+NP) (r < MR) += sum_{s < rows} a[s][r0 + r] * b[s][j..j+NP), rows a [., NP], b stride bs.
inline void outer_block(const double* a, index_t r0, const double* b, index_t bs, index_t j, index_t rows,
                        double* acc, index_t acc_stride) {
  V c[MR][NR] = {};
  for (index_t s = 0; s < rows; ++s) {
    V bv[NR];
    for (int h = 0; h < NR; ++h) bv[h] = simd::load(b + s * bs + j + h * W);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const V ar = simd::broadcast(a[s * NP + r0 + r]);
      for (int h = 0; h < NR; ++h) c[r][h] += ar * bv[h];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int h = 0; h < NR; ++h)
      for (index_t e = 0; e < W; ++e) acc[r * acc_stride + j + h * W + e] += c[r][h][e];
}

}  // namespace

void rf_gram(const double* x, index_t n, index_t d, const double* w, index_t p, double mu, double sigma,
             index_t m, std::uint64_t seed, std::uint64_t stream, int rho, double* K, double* R, double* xi2) {
  const index_t pp = round_up(p, NP), dp = round_up(d, NP), nq = pp / NP;
  const std::vector<double> wt = pack_weights(w, p, d, pp);
  std::vector<double> Kp(pp * pp, 0.0), Rp(pp * dp, 0.0);
  const PhiloxStream st = make_stream(seed, stream);
  const index_t total = n * m;
  double xi2_sum = 0.0;
  // Each thread owns a fixed set of row panels of K and R for the whole call (panels dealt
  // in a snake order so the triangular work is balanced) and makes the noise and the
  // features it needs itself: no synchronisation until the end, which keeps 2 threads
  // efficient on a loaded machine, at the price of recomputing the features (N p d
  // multiply-adds per thread, small next to N p^2 / 2 when p >> d T).
  const int threads = num_threads();
  struct Scratch {
    std::vector<index_t> mine;
    std::vector<double> xi, y, f;
  };
  std::vector<Scratch> scratch = per_thread(threads, [&] {  // team.hpp
    return Scratch{std::vector<index_t>(nq), std::vector<double>(S * dp, 0.0), std::vector<double>(S * d),
                   std::vector<double>(nq * S * NP)};
  });
#pragma omp parallel num_threads(threads) reduction(+ : xi2_sum) if (parallel_worth(double(total) * double(pp) * double(pp + d)))
  {
    int tid = thread_index(), nt = 1;
#ifdef _OPENMP
    nt = omp_get_num_threads();
#endif
    Scratch& sc = scratch[tid];
    std::vector<double>&xi = sc.xi, &y = sc.y, &f = sc.f;
    index_t count = 0;  // this thread's panels: sc.mine[0, count)
    for (index_t q = 0; q < nq; ++q) {
      const index_t round = q / nt, pos = q % nt;
      if ((round % 2 == 0 ? pos : nt - 1 - pos) == tid) sc.mine[count++] = q;
    }
    if (count > 0) {
      const index_t q0 = sc.mine[0];
      for (index_t s0 = 0; s0 < total; s0 += S) {
        const index_t rows = std::min(S, total - s0);
        for (index_t s = 0; s < rows; ++s) {
          const index_t g = s0 + s, nu = g / m;
          double acc = 0.0;
          for (index_t k = 0; k < d; ++k) {
            const double z = normal_at(st, static_cast<std::uint64_t>(g) * d + k);
            xi[s * dp + k] = z;
            y[s * d + k] = mu * x[nu * d + k] + sigma * z;
            acc += z * z;
          }
          if (tid == 0) xi2_sum += acc;
        }
        for (index_t q = q0; q < nq; ++q) feature_panel(y.data(), d, rows, d, &wt[q * d * NP], rho, &f[q * S * NP]);
        for (index_t e = 0; e < count; ++e) {
          const index_t qi = sc.mine[e];
          const double* fi = &f[qi * S * NP];
          // panel pairs (qi, qj): both panels (2 S NP doubles = 24 KB with AVX2) stay in L1
          // while the NP / MR row groups of qi run over them
          for (index_t qj = qi; qj < nq; ++qj)
            for (index_t r0 = 0; r0 < NP; r0 += MR)
              outer_block(fi, r0, &f[qj * S * NP], NP, 0, rows, &Kp[(qi * NP + r0) * pp] + qj * NP, pp);
          for (index_t r0 = 0; r0 < NP; r0 += MR)
            for (index_t j = 0; j < dp; j += NP)
              outer_block(fi, r0, xi.data(), dp, j, rows, &Rp[(qi * NP + r0) * dp], dp);
        }
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
  const int threads = team_size(nb * nq);  // team.hpp
  std::vector<std::vector<double>> scratch = per_thread(threads, [&] { return std::vector<double>(S * NP); });
#pragma omp parallel num_threads(threads) if (parallel_worth(double(q) * double(pp) * double(d)))
  {
    std::vector<double>& f = scratch[thread_index()];
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
