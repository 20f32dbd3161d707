// Vector-Jacobian products of the optimal-score family on the GPU (the backward pass of
// autograd; the CPU launcher: csrc/cpu/optimal_score_vjp_kernels.cpp; the math:
// bigstep/optimal_score.hpp, vjp section).  float64, weights from the forward pass's
// log-normaliser in the distance form, no q x n buffer:
//   optimal_score_vjp_y: out_q = sum_i w_qi (g_q . (x_i - m_q)) (x_i - m_q)        [q, d]
//                        (Cov(W|y_q) g_q about the forward pass's mean m_q, centred term
//                        by term, as the CPU kernel)
//   optimal_score_vjp_x: out_j = sum_q w_qj (a_q + t_qj u_q + (e_q + f_q t_qj) x_j),
//                        t_qj = b_q . x_j                                         [n, d]
// One warp per output row, its lanes over the coordinates: each row is written by one
// warp and its sums run in a fixed order (the other side's rows in order, the lanes
// reduced by a fixed shuffle tree), so results do not depend on the launch.
#include "common.cuh"

#include "bigstep/optimal_score.hpp"

namespace bigstep::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__global__ void __launch_bounds__(kThreads)
    vjp_y_kernel(const double* __restrict__ y, index_t q, const double* __restrict__ x, index_t n, index_t d,
                 const double* __restrict__ mu, index_t mu_stride, const double* __restrict__ sigma,
                 index_t sigma_stride, const double* __restrict__ lse, const double* __restrict__ mean,
                 const double* __restrict__ g, double* out) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const index_t p = static_cast<index_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (p >= q) return;  // the whole warp
  const double m = mu[p * mu_stride], neg_h = vjp::neg_inv_2s2(sigma[p * sigma_stride]), l = lse[p];
  const double* yp = y + p * d;
  const double* gp = g + p * d;
  const double* mp = mean + p * d;
  double* op = out + p * d;
  for (index_t k = lane; k < d; k += 32) op[k] = 0.0;
  for (index_t i = 0; i < n; ++i) {
    const double* xi = x + i * d;
    double r2 = 0.0, gx = 0.0;
    for (index_t k = lane; k < d; k += 32) {
      const double r = yp[k] - m * xi[k];
      r2 = std::fma(r, r, r2);
      gx = std::fma(gp[k], xi[k] - mp[k], gx);
    }
    r2 = warp_sum(r2);
    gx = warp_sum(gx);
    const double w = vjp::weight(r2, neg_h, l);
    if (w == 0.0) continue;
    const double coef = w * gx;
    for (index_t k = lane; k < d; k += 32) op[k] = std::fma(coef, xi[k] - mp[k], op[k]);
  }
}

__global__ void __launch_bounds__(kThreads)
    vjp_x_kernel(const double* __restrict__ y, index_t q, const double* __restrict__ x, index_t n, index_t d,
                 const double* __restrict__ mu, index_t mu_stride, const double* __restrict__ sigma,
                 index_t sigma_stride, const double* __restrict__ lse, const double* __restrict__ a,
                 const double* __restrict__ b, const double* __restrict__ u, const double* __restrict__ e,
                 const double* __restrict__ f, double* out) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const index_t j = static_cast<index_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (j >= n) return;  // the whole warp
  const double* xj = x + j * d;
  double* op = out + j * d;
  for (index_t k = lane; k < d; k += 32) op[k] = 0.0;
  double cx = 0.0;  // coefficient of x_j, summed over the queries
  for (index_t p = 0; p < q; ++p) {
    const double* yp = y + p * d;
    const double* bp = b + p * d;
    const double m = mu[p * mu_stride];
    double r2 = 0.0, t = 0.0;
    for (index_t k = lane; k < d; k += 32) {
      const double r = yp[k] - m * xj[k];
      r2 = std::fma(r, r, r2);
      t = std::fma(bp[k], xj[k], t);
    }
    r2 = warp_sum(r2);
    t = warp_sum(t);
    const double w = vjp::weight(r2, vjp::neg_inv_2s2(sigma[p * sigma_stride]), lse[p]);
    if (w == 0.0) continue;
    const double* ap = a + p * d;
    const double* up = u + p * d;
    const double wt = w * t;
    for (index_t k = lane; k < d; k += 32) op[k] = std::fma(wt, up[k], std::fma(w, ap[k], op[k]));
    cx += w * (e[p] + f[p] * t);
  }
  for (index_t k = lane; k < d; k += 32) op[k] = std::fma(cx, xj[k], op[k]);
}

}  // namespace

void optimal_score_vjp_y(const double* y, index_t q, const double* x, index_t n, index_t d, const double* mu,
                         index_t mu_stride, const double* sigma, index_t sigma_stride, const double* lse,
                         const double* mean, const double* g, double* out, Stream stream) {
  launch("optimal_score_vjp_y", vjp_y_kernel, dim3(static_cast<unsigned>(ceil_div(q, kWarps))), dim3(kThreads), 0,
         stream, y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, lse, mean, g, out);
}

void optimal_score_vjp_x(const double* y, index_t q, const double* x, index_t n, index_t d, const double* mu,
                         index_t mu_stride, const double* sigma, index_t sigma_stride, const double* lse,
                         const double* a, const double* b, const double* u, const double* e, const double* f,
                         double* out, Stream stream) {
  launch("optimal_score_vjp_x", vjp_x_kernel, dim3(static_cast<unsigned>(ceil_div(n, kWarps))), dim3(kThreads), 0,
         stream, y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, lse, a, b, u, e, f, out);
}

}  // namespace bigstep::cuda
