// Per-element math of the random-features DSM family (python/bigstep/rf/_model.py).
//
// Features f_i(y) = rho(<w_i, y> / sqrt(d)), i < p, of noisy inputs
// y_s = mu x_nu + sigma xi_s, s = nu m + mu_idx (sample s uses training point nu = s / m),
// xi_s[k] = element s d + k of the Philox normal stream (seed, stream).
// The kernels accumulate, over all n m samples,
//   K = sum_s f(y_s) f(y_s)^T  [p, p],   R = sum_s f(y_s) xi_s^T  [p, d],   sum_s ||xi_s||^2,
// unnormalised (the 1/sqrt(p) feature scale and the 1/(n m) means are applied in Python).
#pragma once
#include <cmath>

#include "bigstep/config.hpp"

namespace bigstep {

// Activation codes, the same numbers in python/bigstep/rf/_model.py (_RHO_CODES).
enum RfActivation : int { rf_relu = 0, rf_tanh = 1, rf_erf = 2, rf_linear = 3, rf_relu_centered = 4 };

// 1 / sqrt(2 pi): E[relu(g)] for g ~ N(0, 1), subtracted by relu_centered.
constexpr double rf_relu_mean = 0.3989422804014327;

BIGSTEP_HD double rf_activation(int code, double u) {
  switch (code) {
    case rf_relu: return u > 0 ? u : 0.0;
    case rf_tanh: return std::tanh(u);
    case rf_erf: return std::erf(u);
    case rf_relu_centered: return (u > 0 ? u : 0.0) - rf_relu_mean;
    default: return u;
  }
}

}  // namespace bigstep
