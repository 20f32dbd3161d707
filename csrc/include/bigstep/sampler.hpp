// Reverse-diffusion sampler family: the per-step math of the fused loops.
//
// Euler-Maruyama (docs/design.md section 2) for dX = (X + c s(X, tau)) dt + sqrt(2) dB:
//
//   X_{k+1} = X_k + h_k (X_k + c s(X_k, tau_k)) + r_k Z_k,   c = 2, r_k = sqrt(2 h_k)  (EM)
//                                                          c = 1, r_k = 0            (ODE)
//
// Z_k[p, j] = element k n d + p d + j of the Philox normal stream (seed, 1)
// (docs/design.md section 3).  The step tables (tau_k, h_k, r_k, mu(tau_k), sigma(tau_k)) come
// from Python (bigstep.sampler), the same numbers the generic callable path uses.
//
// The scores below work on one particle or on a vector of particles (V = double or a
// GCC vector of double, one particle per lane), coordinates as d separate values
// y[0..d-1]; each lane's arithmetic depends only on that lane, so results do not depend
// on how particles are grouped or on the thread count.  No allocation: scratch comes in.
#pragma once
#include <cmath>
#include <cstdint>

#include "bigstep/config.hpp"
#include "bigstep/fast_exp.hpp"
#include "bigstep/fast_normal.hpp"
#include "bigstep/philox.hpp"

namespace bigstep {

// One chunk of steps [k0, k1) of a run of n_steps over n particles in d dimensions.
struct SamplerSteps {
  double* x;                // [n, d] state, updated in place
  index_t n, d;
  index_t k0, k1;           // steps to run, 0 <= k0 < k1 <= n_steps
  const double* h;          // [n_steps] step lengths
  const double* r;          // [n_steps] noise scales (0: no noise, the ODE)
  const double* mu;         // [n_steps] mu(tau_k)
  const double* sigma;      // [n_steps] sigma(tau_k)
  const double* tau;        // [n_steps] diffusion times
  double c;                 // 2 (EM) or 1 (ODE)
  std::uint64_t seed;
  double* path;             // [n_steps + 1, n, d], row k + 1 written after step k; or null
};

// x + h (x + c s) + r z
template <class V>
BIGSTEP_HD V em_update(V x, V s, double h, double c, double r, V z) {
  return x + h * (x + c * s) + r * z;
}

// Element c of the sampler's normal stream s (counter c = k n d + p d + j): Philox block
// c / 4, Box-Muller on its word pair (c / 2) % 2 with the branch-free log and sin/cos of
// fast_normal.hpp, cos for even c and sin for odd c -- one lane of the CPU kernel's
// vectorised normals (csrc/cpu/sampler_kernels.cpp), for a scalar (CUDA) launcher.
BIGSTEP_HD double fast_normal_at(const PhiloxStream& s, std::uint64_t c) {
  const Philox4 b = philox_block(s, c >> 2);
  const unsigned h = static_cast<unsigned>(c >> 1) & 1u;
  double z_cos, z_sin;
  box_muller_fast<double, std::uint64_t>(std::uint64_t(b.v[2 * h]), std::uint64_t(b.v[2 * h + 1]),
                                         [](double v) { return std::sqrt(v); }, z_cos, z_sin);
  return (c & 1u) ? z_sin : z_cos;
}

// s*(y) of n data points (small n, direct sums): logits l_i = a <y, x_i> - b ||x_i||^2
// (a = mu/sigma^2, b = mu^2/(2 sigma^2)), shifted by their maximum,
// s* = (mu sum_i w_i x_i / sum_i w_i - y)/sigma^2.  x [n, d] rows, norm2 [n];
// logits [n] and acc [d] scratch.  D > 0: d = D known at compile time (the sums stay
// in registers; acc unused), D = 0: any d.  Non-finite y gives NaN (inf - inf).
template <class V, class I, int D = 0>
BIGSTEP_HD void empirical_score_direct(const V* y, V* s, index_t d, const double* x, const double* norm2,
                                       index_t n, double mu, double sigma, V* logits, V* acc) {
  V acc_fixed[D > 0 ? D : 1];
  if (D > 0) {
    d = D;
    acc = acc_fixed;
  }
  const double inv_s2 = 1.0 / (sigma * sigma);
  const double a = mu * inv_s2;
  const double b = 0.5 * mu * mu * inv_s2;
  V best = V{} - static_cast<double>(INFINITY);
  for (index_t i = 0; i < n; ++i) {
    V g = V{};
    for (index_t k = 0; k < d; ++k) g = g + y[k] * x[i * d + k];
    const V l = a * g - b * norm2[i];
    logits[i] = l;
    best = l > best ? l : best;
  }
  V total = V{};
  for (index_t k = 0; k < d; ++k) acc[k] = V{};
  for (index_t i = 0; i < n; ++i) {
    const V w = exp_nonpos_f64<V, I>(logits[i] - best);
    total = total + w;
    for (index_t k = 0; k < d; ++k) acc[k] = acc[k] + w * x[i * d + k];
  }
  const V scale = mu / total;
  for (index_t k = 0; k < d; ++k) s[k] = (acc[k] * scale - y[k]) * inv_s2;
}

// Noised Gaussian score s = -U diag(1/(mu^2 lam + sigma^2)) U^T (y - mu m); vecs [d, d]
// (column a the eigenvector of lam[a]), mean [d]; v, w [d] scratch.
template <class V>
BIGSTEP_HD void gaussian_score(const V* y, V* s, index_t d, const double* mean, const double* vecs,
                               const double* lam, double mu, double sigma, V* v, V* w) {
  const double s2 = sigma * sigma;
  for (index_t j = 0; j < d; ++j) v[j] = y[j] - mu * mean[j];
  for (index_t a = 0; a < d; ++a) {
    V acc = V{};
    for (index_t j = 0; j < d; ++j) acc = acc + vecs[j * d + a] * v[j];
    w[a] = acc / (mu * mu * lam[a] + s2);
  }
  for (index_t j = 0; j < d; ++j) {
    V acc = V{};
    for (index_t a = 0; a < d; ++a) acc = acc + vecs[j * d + a] * w[a];
    s[j] = -acc;
  }
}

// Time-conditional ReLU net s = -r/sigma, r = (1/m) W2 relu(W1 [y; t] + b1) + b2;
// w1 [m, d + 1] (last column multiplies t), w2t = W2^T [m, d]; out [d] scratch.
template <class V>
BIGSTEP_HD void relu_score(const V* y, V* s, index_t d, const double* w1, const double* b1, const double* w2t,
                           const double* b2, index_t m, double t, double sigma, V* out) {
  for (index_t j = 0; j < d; ++j) out[j] = V{};
  for (index_t l = 0; l < m; ++l) {
    V pre = V{} + b1[l];
    for (index_t j = 0; j < d; ++j) pre = pre + w1[l * (d + 1) + j] * y[j];
    pre = pre + w1[l * (d + 1) + d] * t;
    pre = pre <= 0.0 ? V{} : pre;  // relu; NaN propagates as in numpy
    for (index_t j = 0; j < d; ++j) out[j] = out[j] + w2t[l * d + j] * pre;
  }
  const double inv_m = 1.0 / static_cast<double>(m);
  for (index_t j = 0; j < d; ++j) s[j] = -(out[j] * inv_m + b2[j]) / sigma;
}

}  // namespace bigstep
