// Per-element math of the exact DSM risk of 1-D two-layer ReLU networks
// (python/bigstep/relu_risk.py has the derivation).  Shared by the CPU launchers
// (csrc/cpu/relu_risk.cpp) and, later, CUDA; mirrored in python/bigstep/_numba/relu_risk.py.
//
// Segments.  The K sorted kinks t_0 <= ... <= t_{K-1} cut the line into segments
// k = 0..K, segment k = (t_{k-1}, t_k) with t_{-1} = -inf, t_K = +inf.  For data
// centre c and u = Y - c ~ N(0, sigma^2), the truncated moments over a segment are
//   m0 = P(zl < Z < zh), m1 = sigma (phi(zl) - phi(zh)), m2 = sigma^2 (m0 + zl phi(zl) - zh phi(zh)),
// with z = (t - c)/sigma, each probability taken from the tail that keeps it exact.
#pragma once
#include <cmath>
#include <limits>

#include "bigstep/config.hpp"

namespace bigstep::relu {

constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kInvSqrt2 = 0.70710678118654752440;

// Standard normal quantities at one segment end.
struct Endpoint {
  double z;    // (t - c) / sigma, may be +-inf
  double lo;   // Phi(z)
  double up;   // 1 - Phi(z)
  double ph;   // phi(z)
  double zph;  // z phi(z) (0 at +-inf)
};

BIGSTEP_HD Endpoint endpoint(double z) {
  if (std::isinf(z)) return z < 0 ? Endpoint{z, 0.0, 1.0, 0.0, 0.0} : Endpoint{z, 1.0, 0.0, 0.0, 0.0};
  const double e = 0.5 * std::erfc(std::fabs(z) * kInvSqrt2);
  const double ph = kInvSqrt2Pi * std::exp(-0.5 * z * z);
  return z < 0 ? Endpoint{z, e, 1.0 - e, ph, z * ph} : Endpoint{z, 1.0 - e, e, ph, z * ph};
}

// P(zl < Z < zh) from the tail that keeps it accurate.
BIGSTEP_HD double interval_mass(const Endpoint& l, const Endpoint& h) {
  if (h.z <= 0.0) return h.lo - l.lo;
  if (l.z >= 0.0) return l.up - h.up;
  return 1.0 - l.lo - h.up;
}

// Per-segment sums over the data (see relu_segment_moments in csrc/cpu/kernels.hpp).
struct SegmentSums {
  double s0 = 0, s1 = 0, s2 = 0;  // sum_i E_i[Y^p 1_k]
  double t0 = 0, t1 = 0;          // sum_i E_i[(Y - c_i) Y^p 1_k]
};

BIGSTEP_HD void add_interval(SegmentSums& acc, double c, double sigma, const Endpoint& l, const Endpoint& h) {
  const double m0 = interval_mass(l, h);
  const double m1 = sigma * (l.ph - h.ph);
  const double m2 = sigma * sigma * (m0 + l.zph - h.zph);
  acc.s0 += m0;
  acc.s1 += c * m0 + m1;
  acc.s2 += c * c * m0 + 2.0 * c * m1 + m2;
  acc.t0 += m1;
  acc.t1 += m2 + c * m1;
}

// Neuron classes: where 1{w1 y + b > 0} holds.
enum Class : signed char { kNever = 0, kRight = 1, kLeft = -1, kAlways = 2 };

// sum_i E_i[Y^p 1{both neurons active}] (p = 0, 1, 2) from the cumulative sums at the
// kinks: L[p*K + j] = sum over segments k <= j, U[p*K + j] over k > j, total[p] over all.
BIGSTEP_HD void region_sums(int ca, index_t ja, int cb, index_t jb, const double* L, const double* U,
                            const double* total, index_t K, double out[3]) {
  out[0] = out[1] = out[2] = 0.0;
  if (ca == kNever || cb == kNever) return;
  const double* src = nullptr;
  index_t j = 0;
  if (ca == kAlways && cb == kAlways) {
    for (int p = 0; p < 3; ++p) out[p] = total[p];
    return;
  }
  if (ca == kAlways || cb == kAlways) {
    const int c = ca == kAlways ? cb : ca;
    j = ca == kAlways ? jb : ja;
    src = c == kRight ? U : L;
  } else if (ca == kRight && cb == kRight) {
    j = ja > jb ? ja : jb;
    src = U;
  } else if (ca == kLeft && cb == kLeft) {
    j = ja < jb ? ja : jb;
    src = L;
  }
  if (src != nullptr) {
    for (int p = 0; p < 3; ++p) out[p] = src[p * K + j];
    return;
  }
  // one right-active, one left-active neuron: active between their kinks
  const index_t lo = ca == kRight ? ja : jb, hi = ca == kRight ? jb : ja;
  if (lo >= hi) return;
  if (L[hi] <= U[lo]) {  // the difference of the smaller cumulative sums
    for (int p = 0; p < 3; ++p) out[p] = L[p * K + hi] - L[p * K + lo];
  } else {
    for (int p = 0; p < 3; ++p) out[p] = U[p * K + lo] - U[p * K + hi];
  }
}

}  // namespace bigstep::relu
