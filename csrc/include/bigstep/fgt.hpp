// Fast Gauss transform (FGT) of the optimal-score family in d <= 3: the math.
//
// Units.  With h = sqrt(2) sigma, sources Z_i = (mu/h) x_i and a target Y = y/h ("h-units"),
//   exp(-|y - mu x_i|^2 / (2 sigma^2)) = exp(-|Y - Z_i|^2).
//
// Local (Taylor) expansion about a target-box centre c, shifted by the box's own dominant
// exponent.  For a target Y = c + t in the box (|t| <= tau, tau the half-diagonal of the box's
// targets) and s_i = Z_i - c, rho = min_i |s_i| (attained at z*, s* = z* - c),
//   sum_i exp(-|Y - Z_i|^2) = exp(-|t|^2 - rho^2) F(t),
//   F(t) = sum_i w_i exp(2 t.s_i),   w_i = exp(-(|s_i|^2 - rho^2)) = exp(-u_i.(u_i + 2 s*)) <= 1,
// u_i = Z_i - z* (the product form keeps the exponent accurate however far the box is).
// Truncating exp(2 t.s) = sum_k (2 t.s)^k / k! at total degree P gives the polynomial
//   F_P(t) = sum_{|a| <= P} L_a t^a,   L_a = sum_i w_i prod_j (2 s_ij)^{a_j} / a_j!,
// and the posterior moments about c come from its derivatives:
//   E[s_j] = dF/dt_j / (2F),   (1-D) E[s^k] = F^(k) / (2^k F),  k <= 3.
// So one coefficient array per box gives s*, log p, E[W|y] and (1-D) s*', s*''.
//
// The bound (per box, rigorous for the truncation).  With x = 2 t.s, |x| <= 2 tau |s|, the
// Lagrange remainder gives |exp(x) - T_m(x)| <= |x|^{m+1}/(m+1)! max(1, e^x), so the error of
// the k-th moment sum (degree m = P - k for F^(k)) from source i is at most
//   f_{k,m}(|s_i|),   f_{k,m}(r) = r^k (2 tau r)^{m+1}/(m+1)! exp(-max(r - tau, 0)^2)
// in units of exp(-|t|^2 - ... ) that cancel against the lower bound
//   S0(Y) >= sum_i exp(-(|s_i| + tau)^2).
// Sources beyond a cut-off radius R_c are left out; each adds at most R_c^k exp(-(R_c - tau)^2).
// Per box the sources' distances |s_i| are binned into shells [r_j, r_{j+1}); with n_j per shell
//   T_k(P) = [sum_j n_j max_{[r_j, r_{j+1}]} f_{k,P-k} + n_out R_c^k e^{-(R_c - tau)^2}]
//            / [sum_j n_j e^{-(r_{j+1} + tau)^2}]
// bounds the relative error of S_k(Y) / S0(Y) (k = 0: of S0 itself) for every target of the
// box.  The order P is the smallest with T_0 <= tol and T_k <= tol scale^k (scale: the size
// of the moments' coordinates, see plan_order), and the rounding amplification
//   A_k = [sum_j n_j max r^k e^{-max(r - tau, 0)^2}] / [same denominator]
// (the sum of the magnitudes of all terms of F^(k) over the value, in the worst case)
// must stay below amp * scale^k, so rounding errors stay a few ulps.  A box that needs more
// than the largest order, or whose amplification is too large (a box far from all sources,
// where exp(2 t.s) varies by many orders across the box), is summed directly instead, per
// target about its own nearest source: the per-target relative accuracy holds everywhere,
// also where every term underflows (1e4 sigma away from the data).
#pragma once
#include <cmath>
#include <limits>

#include "bigstep/config.hpp"
#include "bigstep/fast_exp.hpp"

namespace bigstep::fgt {

// Shells per box for the bound, and the largest degree P of F per dimension.
constexpr int kShells = 64;
BIGSTEP_HD int max_order(int d) { return d == 1 ? 64 : d == 2 ? 40 : 28; }

// The truncation target (relative) and the largest rounding amplification a box may have,
// for float64 and float32 outputs (float32 inputs are computed in double: the expansion
// only needs float32 accuracy).
struct Tolerance {
  double trunc, amp;
};
BIGSTEP_HD Tolerance tolerance(bool single) {
  return single ? Tolerance{9.3e-10, 1e4} : Tolerance{1.1e-16, 32.0};
}

// Target boxes have side kBoxSide[d] h-units (before shrinking to their targets' bbox).
BIGSTEP_HD double box_side(int d) { return d == 1 ? 0.5 : d == 2 ? 0.7 : 0.6; }

// C(P + d, d): the number of monomials of total degree <= P in d variables.
BIGSTEP_HD index_t num_coeffs(int d, int P) {
  index_t c = 1;
  for (int j = 1; j <= d; ++j) c = c * (P + j) / j;
  return c;
}

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// log max over r in [lo, hi] of r^k (2 tau r)^{m+1}/(m+1)! exp(-max(r - tau, 0)^2): the
// function is increasing up to r* = (tau + sqrt(tau^2 + 2(k + m + 1)))/2 and decreasing after.
BIGSTEP_HD double log_trunc_term(int k, int m, double tau, double lo, double hi) {
  if (!(tau > 0) || !(hi > 0)) return kNegInf;
  const double rs = 0.5 * (tau + std::sqrt(tau * tau + 2.0 * (k + m + 1)));
  const double r = rs < lo ? lo : rs > hi ? hi : rs;
  if (!(r > 0)) return kNegInf;
  const double ex = r > tau ? (r - tau) * (r - tau) : 0.0;
  return k * std::log(r) + (m + 1) * std::log(2.0 * tau * r) - std::lgamma(m + 2.0) - ex;
}

// log max over r in [lo, hi] of r^k exp(-max(r - tau, 0)^2) (peak at (tau + sqrt(tau^2 + 2k))/2).
BIGSTEP_HD double log_mag_term(int k, double tau, double lo, double hi) {
  const double rs = 0.5 * (tau + std::sqrt(tau * tau + 2.0 * k));
  const double r = rs < lo ? lo : rs > hi ? hi : rs;
  if (k > 0 && !(r > 0)) return kNegInf;
  const double ex = r > tau ? (r - tau) * (r - tau) : 0.0;
  return (k > 0 ? k * std::log(r) : 0.0) - ex;
}

// A running log(sum exp(l)).
struct LogSum {
  double m = kNegInf, s = 0.0;
  BIGSTEP_HD void add(double l) {
    if (!(l > kNegInf)) return;
    if (l <= m) {
      s += std::exp(l - m);
    } else {
      s = s * std::exp(m - l) + 1.0;
      m = l;
    }
  }
  BIGSTEP_HD double value() const { return m > kNegInf ? m + std::log(s) : kNegInf; }
};

// The shells of one box: [r0 + j w, r0 + (j + 1) w), j < kShells, out to the cut-off rc.
struct Shells {
  double r0, w, rc;
  BIGSTEP_HD double lo(int j) const { return r0 + j * w; }
  BIGSTEP_HD double hi(int j) const { return r0 + (j + 1) * w; }
  BIGSTEP_HD int index(double r) const {  // shell of a distance r0 <= r <= rc
    const int j = static_cast<int>((r - r0) / w);
    return j < 0 ? 0 : j >= kShells ? kShells - 1 : j;
  }
};

// Cut-off radius: sources beyond it add at most tol/16 relative (with n sources in all).
BIGSTEP_HD double cutoff(double rho, double tau, double n, double tol, int kmax) {
  const double base = (rho + tau) * (rho + tau) + std::log(16.0 * n / tol);
  double rc = tau + std::sqrt(base);
  rc = tau + std::sqrt(base + kmax * std::log(rc > 1 ? rc : 1.0));
  return rc;
}

BIGSTEP_HD Shells make_shells(double rho, double rc) {
  double w = (rc - rho) / kShells;
  if (!(w > 1e-12)) w = 1e-12;
  return Shells{rho, w, rc};
}

// log of the lower bound sum_j n_j e^{-(r_{j+1} + tau)^2} of S0 (in units of e^{-|t|^2}).
BIGSTEP_HD double log_lower_sum(const double* count, const Shells& sh, double tau) {
  LogSum ls;
  for (int j = 0; j < kShells; ++j)
    if (count[j] > 0) ls.add(std::log(count[j]) - (sh.hi(j) + tau) * (sh.hi(j) + tau));
  return ls.value();
}

// log T_k(P) (see the header), given log_lower = log_lower_sum(...).
BIGSTEP_HD double log_trunc_bound(int k, int P, const double* count, const Shells& sh, double tau, double n_out,
                                  double log_lower) {
  LogSum ls;
  for (int j = 0; j < kShells; ++j)
    if (count[j] > 0) ls.add(std::log(count[j]) + log_trunc_term(k, P - k, tau, sh.lo(j), sh.hi(j)));
  if (n_out > 0) ls.add(std::log(n_out) + k * std::log(sh.rc) - (sh.rc - tau) * (sh.rc - tau));
  return ls.value() - log_lower;
}

// log A_k: the rounding amplification of the k-th moment sum.
BIGSTEP_HD double log_amplification(int k, const double* count, const Shells& sh, double tau, double log_lower) {
  LogSum ls;
  for (int j = 0; j < kShells; ++j)
    if (count[j] > 0) ls.add(std::log(count[j]) + log_mag_term(k, tau, sh.lo(j), sh.hi(j)));
  return ls.value() - log_lower;
}

// Whether degree P meets the targets for moments k = 0..kmax.
BIGSTEP_HD bool order_ok(int P, int kmax, const double* count, const Shells& sh, double tau, double n_out,
                         double log_lower, double log_tol, double log_scale) {
  for (int k = 0; k <= kmax; ++k)
    if (log_trunc_bound(k, P, count, sh, tau, n_out, log_lower) > log_tol + k * log_scale) return false;
  return true;
}

// The order of one box: the smallest degree P in [kmax, pmax] whose bound holds (found by
// bisection, the bound decreasing in P past 2 tau r_max; the result is checked), or -1 if
// none does or the rounding amplification is too large.  Moments of order k are measured
// against scale^k: trunc_scale for the truncation (>= 1 where the box is away from the
// sources, at most the input size), amp_scale for rounding (the size of the inputs,
// |c| + max |Z| + tau: the errors of rounding Y and Z themselves are that size).
BIGSTEP_HD int plan_order(const double* count, const Shells& sh, double tau, double n_out, int kmax, int pmax,
                          double trunc_scale, double amp_scale, Tolerance tol, double* bound) {
  const double log_lower = log_lower_sum(count, sh, tau);
  const double log_amp_scale = std::log(amp_scale);
  for (int k = 0; k <= kmax; ++k)
    if (log_amplification(k, count, sh, tau, log_lower) > std::log(tol.amp) + k * log_amp_scale) return -1;
  const double log_tol = std::log(tol.trunc), log_scale = std::log(trunc_scale);
  if (!order_ok(pmax, kmax, count, sh, tau, n_out, log_lower, log_tol, log_scale)) return -1;
  int lo = kmax, hi = pmax;  // hi passes
  if (order_ok(lo, kmax, count, sh, tau, n_out, log_lower, log_tol, log_scale)) hi = lo;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (order_ok(mid, kmax, count, sh, tau, n_out, log_lower, log_tol, log_scale))
      hi = mid;
    else
      lo = mid;
  }
  double worst = kNegInf;
  for (int k = 0; k <= kmax; ++k) {
    const double b = log_trunc_bound(k, hi, count, sh, tau, n_out, log_lower) - k * log_scale;
    worst = b > worst ? b : worst;
  }
  *bound = std::exp(worst);
  return hi;
}

// ------------------------------------------------------------------ source to local

// Adds the sources' terms to the coefficients of F about a box centre, for sources given
// by their coordinates zv (h-units) and xv (the data's units, Z = r x), in vectors of type V
// (one source per lane): s = Z - c, u = r (x - x*) (x* the box's nearest source: the
// difference of nearby points is exact), w = exp(-u.(u + 2 s*)),
//   L_a += w prod_j (2 s_j)^{a_j}/a_j!.
// acc: num_coeffs(D, P) lane sums; g: scratch of D (P + 1) vectors.  inv[k] = 1/k.
template <int D, class V, class I>
BIGSTEP_HD void s2l_add(const V* zv, const V* xv, const double* c, const double* xstar, double r,
                        const double* sstar, int P, const double* inv, V* acc, V* g) {
  V e = V{};
  V two_s[D];
  for (int j = 0; j < D; ++j) {
    const V u = r * (xv[j] - xstar[j]);
    e = e + u * (u + 2.0 * sstar[j]);
    two_s[j] = 2.0 * (zv[j] - c[j]);
  }
  const V w = exp_nonpos_f64<V, I>(V{} - e);
  if constexpr (D == 1) {
    V t = w;
    acc[0] = acc[0] + t;
    for (int k = 1; k <= P; ++k) {
      t = t * (two_s[0] * inv[k]);
      acc[k] = acc[k] + t;
    }
  } else {
    for (int j = 0; j < D; ++j) {
      V* gj = g + j * (P + 1);
      gj[0] = V{} + 1.0;
      for (int k = 1; k <= P; ++k) gj[k] = gj[k - 1] * (two_s[j] * inv[k]);
    }
    const V* g0 = g;
    const V* g1 = g + (P + 1);
    index_t idx = 0;
    if constexpr (D == 2) {
      for (int a = 0; a <= P; ++a) {
        const V v = w * g0[a];
        for (int b = 0; b <= P - a; ++b) acc[idx + b] = acc[idx + b] + v * g1[b];
        idx += P - a + 1;
      }
    } else {
      const V* g2 = g + 2 * (P + 1);
      for (int a = 0; a <= P; ++a) {
        const V v = w * g0[a];
        for (int b = 0; b <= P - a; ++b) {
          const V v2 = v * g1[b];
          for (int cc = 0; cc <= P - a - b; ++cc) acc[idx + cc] = acc[idx + cc] + v2 * g2[cc];
          idx += P - a - b + 1;
        }
      }
    }
  }
}

// ------------------------------------------------------------------ evaluation

// 1-D: F and its derivatives up to kmax (<= 3) at t, by Horner's scheme with derivatives:
// out[j] = F^(j)(t).
BIGSTEP_HD void eval_1d(const double* L, int P, double t, int kmax, double* out) {
  double b0 = L[P], b1 = 0, b2 = 0, b3 = 0;
  for (int k = P - 1; k >= 0; --k) {
    if (kmax >= 3) b3 = b3 * t + b2;
    if (kmax >= 2) b2 = b2 * t + b1;
    b1 = b1 * t + b0;
    b0 = b0 * t + L[k];
  }
  out[0] = b0;
  out[1] = b1;
  out[2] = 2.0 * b2;
  out[3] = 6.0 * b3;
}

// Horner of a polynomial of degree m in one variable, with its derivative.
BIGSTEP_HD void horner_d(const double* a, int m, double t, double& v, double& dv) {
  v = a[m];
  dv = 0;
  for (int k = m - 1; k >= 0; --k) {
    dv = dv * t + v;
    v = v * t + a[k];
  }
}

// 2-D: out = (F, dF/dt0, dF/dt1) at t; coefficients in the order of s2l_add.
BIGSTEP_HD void eval_2d(const double* L, int P, const double* t, double* out) {
  // G(t0) = sum_a t0^a Q_a(t1),  Q_a = sum_b L[a, b] t1^b
  double f = 0, f0 = 0, f1 = 0;
  index_t idx = 0;
  // rows from a = 0 up; Horner in t0 needs them from the top, so sum with powers instead
  double pw = 1.0, dpw = 0.0;
  for (int a = 0; a <= P; ++a) {
    double q, dq;
    horner_d(L + idx, P - a, t[1], q, dq);
    f += pw * q;
    f0 += dpw * q;
    f1 += pw * dq;
    dpw = dpw * t[0] + pw;
    pw *= t[0];
    idx += P - a + 1;
  }
  out[0] = f;
  out[1] = f0;
  out[2] = f1;
}

// 3-D: out = (F, dF/dt0, dF/dt1, dF/dt2).
BIGSTEP_HD void eval_3d(const double* L, int P, const double* t, double* out) {
  double f = 0, f0 = 0, f1 = 0, f2 = 0;
  index_t idx = 0;
  double pa = 1.0, dpa = 0.0;
  for (int a = 0; a <= P; ++a) {
    double g = 0, g1 = 0, g2 = 0, pb = 1.0, dpb = 0.0;
    for (int b = 0; b <= P - a; ++b) {
      double r, dr;
      horner_d(L + idx, P - a - b, t[2], r, dr);
      g += pb * r;
      g1 += dpb * r;
      g2 += pb * dr;
      dpb = dpb * t[1] + pb;
      pb *= t[1];
      idx += P - a - b + 1;
    }
    f += pa * g;
    f0 += dpa * g;
    f1 += pa * g1;
    f2 += pa * g2;
    dpa = dpa * t[0] + pa;
    pa *= t[0];
  }
  out[0] = f;
  out[1] = f0;
  out[2] = f1;
  out[3] = f2;
}

// ------------------------------------------------------------------ outputs

// Everything a target needs from its sums, about a centre o (h-units; ox = o h / mu, the
// same point in the data's units, exact where o is a data point): log S0 = log_s0 (the
// true sum of exp(-|Y - Z_i|^2), as a log), m[k] = E[s^k] (1-D; k <= 3) or m[1 + j] =
// E[s_j] (d-D), e = Y - o.  Outputs in the caller's units: h = sqrt(2) sigma, log_norm =
// log n + d (log sigma + log(2 pi)/2).
struct Outputs1D {
  double score, log_density, mean, d1, d2;
};

BIGSTEP_HD Outputs1D finish_1d(double log_s0, const double* m, double ox, double e, double h, double mu,
                               double sigma, double log_norm) {
  Outputs1D r;
  const double m1 = m[1];
  r.score = (2.0 / h) * (m1 - e);
  r.log_density = log_s0 - log_norm;
  r.mean = ox + (h / mu) * m1;
  const double var = m[2] - m1 * m1;
  const double third = m[3] - 3.0 * m1 * m[2] + 2.0 * m1 * m1 * m1;
  r.d1 = (-1.0 + 2.0 * var) / (sigma * sigma);
  r.d2 = 2.0 * 1.41421356237309504880 * third / (sigma * sigma * sigma);
  return r;
}

}  // namespace bigstep::fgt
