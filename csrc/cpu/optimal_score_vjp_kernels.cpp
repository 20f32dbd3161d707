// Vector-Jacobian products of the optimal-score family (the backward pass of autograd),
// compiled once per instruction set.  Math in bigstep/optimal_score.hpp (vjp section).
//
// With w_qi = exp(l_qi - lse_q), l_qi = -||y_q - mu_q x_i||^2 / (2 sigma_q^2) (the distance
// form: no cancellation at small sigma) and lse_q = log sum_i exp(l_qi) from the forward
// pass, both kernels stream over the pairs with no q x n buffer:
//   optimal_score_vjp_y: out_q = sum_i w_qi (g_q . (x_i - m_q)) (x_i - m_q)        [q, d]
//                        (Cov(W|y_q) g_q about the forward pass's mean m_q, centred term
//                        by term: no cancellation where the weights are sharp)
//   optimal_score_vjp_x: out_j = sum_q w_qj (a_q + t_qj u_q + (e_q + f_q t_qj) x_j),
//                        t_qj = b_q . x_j                                         [n, d]
// vjp_y splits the queries over threads, vjp_x the data points, so each output row is
// written by one thread and sums run in a fixed order: results do not depend on the
// thread count.  Tiles of kTile rows share each streamed row of the other side.
#include <algorithm>
#include <cmath>

#include "bigstep/optimal_score.hpp"
#include "kernels.hpp"
#include "team.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

constexpr index_t kTile = 8;

inline double dot(const double* a, const double* b, index_t d) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (index_t k = 0; k < d; ++k) s += a[k] * b[k];
  return s;
}

// ||y - m x||^2
inline double dist2(const double* y, double m, const double* x, index_t d) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (index_t k = 0; k < d; ++k) {
    const double r = y[k] - m * x[k];
    s += r * r;
  }
  return s;
}

inline void axpy(double a, const double* x, double* out, index_t d) {
#pragma omp simd
  for (index_t k = 0; k < d; ++k) out[k] += a * x[k];
}

// g . (x - m)
inline double dot_centred(const double* g, const double* x, const double* m, index_t d) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (index_t k = 0; k < d; ++k) s += g[k] * (x[k] - m[k]);
  return s;
}

// out += a (x - m)
inline void axpy_centred(double a, const double* x, const double* m, double* out, index_t d) {
#pragma omp simd
  for (index_t k = 0; k < d; ++k) out[k] += a * (x[k] - m[k]);
}

}  // namespace

void optimal_score_vjp_y(const double* y, index_t q, const double* x, index_t n, index_t d, const double* mu,
                         index_t mu_stride, const double* sigma, index_t sigma_stride, const double* lse,
                         const double* mean, const double* g, double* out) {
  const index_t tiles = (q + kTile - 1) / kTile;
  const int threads = team_size(tiles);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (parallel_worth(3.0 * q * n * d))
  for (index_t t = 0; t < tiles; ++t) {
    const index_t q0 = t * kTile, q1 = std::min(q, q0 + kTile);
    double neg_h[kTile];
    for (index_t p = q0; p < q1; ++p) {
      std::fill(out + p * d, out + (p + 1) * d, 0.0);
      neg_h[p - q0] = vjp::neg_inv_2s2(sigma[p * sigma_stride]);
    }
    for (index_t i = 0; i < n; ++i) {
      const double* xi = x + i * d;
      for (index_t p = q0; p < q1; ++p) {
        const double w = vjp::weight(dist2(y + p * d, mu[p * mu_stride], xi, d), neg_h[p - q0], lse[p]);
        if (w == 0.0) continue;
        const double* mp = mean + p * d;
        axpy_centred(w * dot_centred(g + p * d, xi, mp, d), xi, mp, out + p * d, d);
      }
    }
  }
}

void optimal_score_vjp_x(const double* y, index_t q, const double* x, index_t n, index_t d, const double* mu,
                         index_t mu_stride, const double* sigma, index_t sigma_stride, const double* lse,
                         const double* a, const double* b, const double* u, const double* e, const double* f,
                         double* out) {
  const index_t tiles = (n + kTile - 1) / kTile;
  const int threads = team_size(tiles);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (parallel_worth(4.0 * q * n * d))
  for (index_t t = 0; t < tiles; ++t) {
    const index_t j0 = t * kTile, j1 = std::min(n, j0 + kTile);
    double cx[kTile];  // coefficient of x_j, summed over the queries
    for (index_t j = j0; j < j1; ++j) {
      std::fill(out + j * d, out + (j + 1) * d, 0.0);
      cx[j - j0] = 0.0;
    }
    for (index_t p = 0; p < q; ++p) {
      const double* yp = y + p * d;
      const double m = mu[p * mu_stride], neg_h = vjp::neg_inv_2s2(sigma[p * sigma_stride]);
      for (index_t j = j0; j < j1; ++j) {
        const double* xj = x + j * d;
        const double w = vjp::weight(dist2(yp, m, xj, d), neg_h, lse[p]);
        if (w == 0.0) continue;
        const double tq = dot(b + p * d, xj, d);
        axpy(w, a + p * d, out + j * d, d);
        axpy(w * tq, u + p * d, out + j * d, d);
        cx[j - j0] += w * (e[p] + f[p] * tq);
      }
    }
    for (index_t j = j0; j < j1; ++j) axpy(cx[j - j0], x + j * d, out + j * d, d);
  }
}

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
