// Fast Gauss transform of the optimal-score family, d <= 3 (compiled once per instruction
// set, see kernels.hpp; the math and the bound are in bigstep/fgt.hpp).
//
// Plan, then execute.
//   Sources: Z = (mu/h) x in h-units, counting-sorted into a grid of cells of side g, so
//     that the sources within a radius of a point are a few contiguous ranges (one per row
//     of cells), and the nearest source is found by a search over rings of cells.
//   Targets: Y = y/h, grouped into boxes of side box_side(d) (keys floor(Y/b), sorted);
//     a box's centre and half-diagonal tau are those of its targets' bounding box.
//   Per box (in parallel): the nearest source z* to the centre (rho, the shift), the
//     cut-off radius, the exact distances of the sources within it binned into shells,
//     and from them the order P (plan_order) or "no order"; then the cheaper of
//       expand: source-to-local accumulation of F's coefficients (s2l_add, vectorised
//               over sources, lanes summed in blocks) and Horner evaluation per target;
//       direct: per target, the nearest source and the sums over the sources within
//               sqrt(|Y - z*|^2 + L) of Y, logits in the product form -u.(u - 2e) <= 0,
//     by the cost model below.  A box without an order is direct.
//   mode 0 ("auto") runs the pairwise kernel instead when its estimated cost is lower;
//   mode 1 ("fgt") always runs the plan.
// Results do not depend on the thread count: each box and each direct target is summed
// in a fixed order by one thread.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "bigstep/fgt.hpp"
#include "bigstep/sampler.hpp"
#include "bigstep/streams.hpp"
#include "kernels.hpp"
#include "simd.hpp"
#include "team.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

using V = simd::vec<double>;
using I = simd::Traits<double>::I;
constexpr int W = simd::width<double>;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kLogSqrt2Pi = 0.91893853320467274178;

// Cost model, in units of one term of a vectorised direct sum (an exp and a few FMAs).
constexpr double kCostPair = 1.0;           // direct sum, per (target, source)
constexpr double kCostS2LExp = 1.0;         // source-to-local, per (box, source): exp and powers
constexpr double kCostS2LCoeff = 0.12;      // ... and per coefficient
constexpr double kCostEvalCoeff = 0.35;     // evaluation, per (target, coefficient, output channel)
constexpr double kCostScan = 0.25;          // planning: per (box, source) distance for the shells
constexpr double kCostPairwise1D = 1.0;     // the 1-D pairwise kernel, per (query, point in its window)
constexpr double kCostPairwiseND = 1.6;     // the d-D pairwise kernel, per (query, point), d <= 3
// Measured time per unit of the estimate, relative to the pairwise kernels (2 cores, gcc
// 12, AVX-512): the FGT's estimate times kCalibrate[d] (its overheads: sorting, planning,
// scalar evaluation, the direct sums' cell searches) is compared with the pairwise cost
// times the caller's factor (1 for s*, 0.5 for the sampler's faster fused loop).
constexpr double kCalibrate[4] = {0.0, 5.0, 1.5, 3.0};
constexpr int kFlush = 32;                  // vectors of sources summed in a block before flushing
constexpr int kLevels = 4;                  // target box sizes box_side(d) 2^level, level < kLevels

// Sources in h-units, counting-sorted by grid cell (row-major, last dimension fastest).
template <int D>
struct Sources {
  index_t n = 0;
  double g = 1.0;
  double lo[D] = {}, zmax = 0;
  index_t N[D] = {};
  double r = 1.0;              // mu / h: z = r x
  std::vector<double> z[D];     // h-units
  std::vector<double> x[D];     // the data's units (differences of nearby points are exact)
  std::vector<index_t> start;  // [cells + 1]

  template <class T>
  Sources(const T* xin, index_t n_, double r_) : n(n_), r(r_) {
    double hi[D];
    for (int j = 0; j < D; ++j) {
      lo[j] = kInf;
      hi[j] = -kInf;
      z[j].resize(n);
      x[j].resize(n);
    }
    std::vector<double> tmp(n * D);
    for (index_t i = 0; i < n; ++i) {
      double s = 0;
      for (int j = 0; j < D; ++j) {
        const double v = r * double(xin[i * D + j]);
        tmp[i * D + j] = v;
        lo[j] = std::min(lo[j], v);
        hi[j] = std::max(hi[j], v);
        s += v * v;
      }
      zmax = std::max(zmax, std::sqrt(s));
    }
    g = D == 3 ? 1.5 : 1.0;
    const double cap = std::max(64.0, 2.0 * double(n));
    for (;;) {
      double cells = 1;
      for (int j = 0; j < D; ++j) cells *= std::floor((hi[j] - lo[j]) / g) + 1;
      if (cells <= cap) break;
      g *= 1.5;
    }
    index_t cells = 1;
    for (int j = 0; j < D; ++j) {
      N[j] = static_cast<index_t>(std::floor((hi[j] - lo[j]) / g)) + 1;
      cells *= N[j];
    }
    std::vector<index_t> id(n);
    start.assign(cells + 1, 0);
    for (index_t i = 0; i < n; ++i) {
      index_t c = 0;
      for (int j = 0; j < D; ++j) c = c * N[j] + clamp_cell(j, tmp[i * D + j]);
      id[i] = c;
      ++start[c + 1];
    }
    for (index_t c = 0; c < cells; ++c) start[c + 1] += start[c];
    std::vector<index_t> fill(start.begin(), start.end() - 1);
    for (index_t i = 0; i < n; ++i) {
      const index_t k = fill[id[i]]++;
      for (int j = 0; j < D; ++j) {
        z[j][k] = tmp[i * D + j];
        x[j][k] = double(xin[i * D + j]);
      }
    }
  }

  index_t clamp_cell(int j, double v) const {
    const double f = std::floor((v - lo[j]) / g);
    return f < 0 ? 0 : f >= double(N[j]) ? N[j] - 1 : static_cast<index_t>(f);
  }
  // squared distance from p to the slab of cell i along dimension j
  double slab2(int j, double p, index_t i) const {
    const double a = lo[j] + double(i) * g, b = a + g;
    const double d = p < a ? a - p : p > b ? p - b : 0.0;
    return d * d;
  }
  index_t row_start(const index_t* i, index_t a) const {  // first source of cell (i[0..D-2], a)
    index_t c = 0;
    for (int j = 0; j < D - 1; ++j) c = c * N[j] + i[j];
    return start[c * N[D - 1] + a];
  }

  // f(begin, end) for contiguous source ranges covering every source within R of p (cells
  // whose slab distance exceeds R are skipped).
  template <class F>
  void for_ranges(const double* p, double R, F&& f) const {
    index_t idx[D > 1 ? D - 1 : 1] = {};
    for_rows(0, p, R * R, idx, f);
  }
  template <class F>
  void for_rows(int j, const double* p, double R2, index_t* idx, F& f) const {
    const double R = std::sqrt(R2);
    if (p[j] + R < lo[j] || p[j] - R > lo[j] + double(N[j]) * g) return;
    const index_t a = clamp_cell(j, p[j] - R), b = clamp_cell(j, p[j] + R);
    if (j == D - 1) {
      const index_t s = row_start(idx, a), e = row_end(idx, b);
      if (e > s) f(s, e);
      return;
    }
    for (index_t i = a; i <= b; ++i) {
      const double r2 = R2 - slab2(j, p[j], i);
      if (r2 < 0) continue;
      idx[j] = i;
      for_rows(j + 1, p, r2, idx, f);
    }
  }
  index_t row_end(const index_t* i, index_t b) const {  // one past the last source of cell (i, b)
    index_t c = 0;
    for (int j = 0; j < D - 1; ++j) c = c * N[j] + i[j];
    return start[c * N[D - 1] + b + 1];
  }

  double dist2(const double* p, index_t k) const {
    double s = 0;
    for (int j = 0; j < D; ++j) {
      const double v = z[j][k] - p[j];
      s += v * v;
    }
    return s;
  }

  // The nearest source to p (lowest index among ties): a search over rings of cells
  // around p's (clamped) cell, stopped once a ring cannot hold a nearer source.
  index_t nearest(const double* p, double& best2) const {
    index_t ip[D];
    double out2 = 0;
    index_t rmax = 0;
    for (int j = 0; j < D; ++j) {
      ip[j] = clamp_cell(j, p[j]);
      const double a = lo[j], b = lo[j] + double(N[j]) * g;
      const double d = p[j] < a ? a - p[j] : p[j] > b ? p[j] - b : 0.0;
      out2 += d * d;
      rmax = std::max(rmax, std::max(ip[j], N[j] - 1 - ip[j]));
    }
    best2 = kInf;
    index_t best = 0;
    for (index_t r = 0; r <= rmax; ++r) {
      const double ring = std::max(0.0, double(r - 1) * g);
      if (std::max(out2, ring * ring) >= best2) break;
      index_t off[D];
      visit_ring(0, r, ip, off, false, p, best2, best);
    }
    return best;
  }
  void visit_ring(int j, index_t r, const index_t* ip, index_t* off, bool on_edge, const double* p,
                  double& best2, index_t& best) const {
    if (j == D) {
      if (!on_edge && r > 0) return;
      double c2 = 0;
      index_t c = 0;
      for (int k = 0; k < D; ++k) {
        c2 += slab2(k, p[k], ip[k] + off[k]);
        c = c * N[k] + ip[k] + off[k];
      }
      if (c2 >= best2) return;
      for (index_t k = start[c]; k < start[c + 1]; ++k) {
        const double d2 = dist2(p, k);
        if (d2 < best2 || (d2 == best2 && k < best)) {
          best2 = d2;
          best = k;
        }
      }
      return;
    }
    for (index_t o = -r; o <= r; ++o) {
      const index_t i = ip[j] + o;
      if (i < 0 || i >= N[j]) continue;
      off[j] = o;
      visit_ring(j + 1, r, ip, off, on_edge || o == -r || o == r, p, best2, best);
    }
  }
};

// One target box: targets order[begin .. begin + count) (sorted by box key).
struct Box {
  index_t begin = 0, count = 0;
  double c[3] = {}, tau = 0, rho = 0, zstar[3] = {}, rc = 0, bound = 0;
  index_t n_in = 0, nearest = 0;
  int order = -1;
  bool expand = false;
  double cost_fgt = 0, cost_pairwise = 0;
};

// Everything the plan and the execution share.
template <int D>
struct Problem {
  const Sources<D>& src;
  const double* Y;  // [q, D], h-units
  index_t q;
  int kmax;  // moments needed: 1 (s*, E[W]), 3 (1-D derivatives); 0 for log p only
  fgt::Tolerance tol;
  double ldir;  // direct sums' cut-off in logit units
};

// Centre, tau, nearest source, shells, order, costs of one box.
template <int D>
void plan_box(const Problem<D>& pb, const index_t* order, Box& b, double* count) {
  const Sources<D>& src = pb.src;
  double lo[D], hi[D];
  for (int j = 0; j < D; ++j) {
    lo[j] = kInf;
    hi[j] = -kInf;
  }
  for (index_t e = 0; e < b.count; ++e) {
    const double* y = pb.Y + order[b.begin + e] * D;
    for (int j = 0; j < D; ++j) {
      lo[j] = std::min(lo[j], y[j]);
      hi[j] = std::max(hi[j], y[j]);
    }
  }
  double t2 = 0, c2 = 0;
  for (int j = 0; j < D; ++j) {
    b.c[j] = 0.5 * lo[j] + 0.5 * hi[j];
    const double half = std::max(hi[j] - b.c[j], b.c[j] - lo[j]);
    t2 += half * half;
    c2 += b.c[j] * b.c[j];
  }
  b.tau = std::sqrt(t2);
  double d2;
  const index_t js = src.nearest(b.c, d2);
  b.rho = std::sqrt(d2);
  b.nearest = js;
  for (int j = 0; j < D; ++j) b.zstar[j] = src.z[j][js];
  const double n = double(src.n);
  b.rc = fgt::cutoff(b.rho, b.tau, n, pb.tol.trunc, pb.kmax);
  const fgt::Shells sh = fgt::make_shells(b.rho, b.rc);
  std::fill(count, count + fgt::kShells, 0.0);
  index_t n_in = 0;
  const double rc2 = b.rc * b.rc;
  src.for_ranges(b.c, b.rc, [&](index_t s, index_t e) {
    for (index_t k = s; k < e; ++k) {
      const double r2 = src.dist2(b.c, k);
      if (r2 <= rc2) {
        count[sh.index(std::sqrt(r2))] += 1;
        ++n_in;
      }
    }
  });
  b.n_in = n_in;
  const double input_scale = std::max(std::sqrt(c2) + src.zmax + b.tau, 1e-300);
  const double trunc_scale = std::min(std::max(1.0, b.rho + b.tau), input_scale);
  b.order = fgt::plan_order(count, sh, b.tau, n - double(n_in), pb.kmax, fgt::max_order(D), trunc_scale,
                            input_scale, pb.tol, &b.bound);
  // The 1-D derivatives come from raw moments about the centre: away from the data they
  // would cancel (Var = E s^2 - (E s)^2 with |E s| ~ rho), so such boxes are summed directly,
  // about each target's nearest source, as the pairwise kernel does.
  if (pb.kmax >= 2 && b.rho > 1.0) b.order = -1;
  const double channels = D == 1 ? pb.kmax + 1 : D + 1;
  const double cost_direct = double(b.count) * double(n_in) * kCostPair;
  double cost = cost_direct;
  b.expand = false;
  if (b.order >= 0) {
    const double pt = double(fgt::num_coeffs(D, b.order));
    const double cost_expand = double(n_in) * (kCostS2LExp + kCostS2LCoeff * pt) +
                               double(b.count) * kCostEvalCoeff * pt * channels;
    if (cost_expand < cost_direct) {
      b.expand = true;
      cost = cost_expand;
    }
  }
  b.cost_fgt = cost + double(n_in) * kCostScan;
  if constexpr (D == 1) {  // the pairwise kernel's window: logits above -745.5
    const double rw = std::sqrt(745.5 + (b.rho + b.tau) * (b.rho + b.tau)) + b.tau;
    index_t w = 0;
    src.for_ranges(b.c, rw, [&](index_t s, index_t e) { w += e - s; });
    b.cost_pairwise = double(b.count) * double(w) * kCostPairwise1D;
  } else {
    b.cost_pairwise = double(b.count) * n * kCostPairwiseND;
  }
}

// Per-thread scratch of the execution.
struct Scratch {
  std::vector<V> acc, block, g;
  std::vector<double> L, gs;
  explicit Scratch(int d)
      : acc(fgt::num_coeffs(d, fgt::max_order(d))),
        block(fgt::num_coeffs(d, fgt::max_order(d))),
        g(d * (fgt::max_order(d) + 1)),
        L(fgt::num_coeffs(d, fgt::max_order(d))),
        gs(d * (fgt::max_order(d) + 1)) {}
};

// The coefficients of F for box b into s.L.
template <int D>
void box_coefficients(const Problem<D>& pb, const Box& b, Scratch& s, const double* inv) {
  const Sources<D>& src = pb.src;
  const int P = b.order;
  const index_t pt = fgt::num_coeffs(D, P);
  std::fill(s.L.begin(), s.L.begin() + pt, 0.0);
  std::fill(s.acc.begin(), s.acc.begin() + pt, V{});
  std::fill(s.block.begin(), s.block.begin() + pt, V{});
  double sstar[D], xs[D], c[D];
  for (int j = 0; j < D; ++j) {
    sstar[j] = b.zstar[j] - b.c[j];
    xs[j] = src.x[j][b.nearest];
    c[j] = b.c[j];
  }
  const double rc2 = b.rc * b.rc;
  int in_block = 0;
  auto flush = [&] {
    for (index_t a = 0; a < pt; ++a) {
      s.acc[a] += s.block[a];
      s.block[a] = V{};
    }
    in_block = 0;
  };
  src.for_ranges(b.c, b.rc, [&](index_t beg, index_t end) {
    index_t k = beg;
    for (; k + W <= end; k += W) {
      V zv[D], xv[D];
      V r2 = V{};
      for (int j = 0; j < D; ++j) {
        zv[j] = simd::load(src.z[j].data() + k);
        xv[j] = simd::load(src.x[j].data() + k);
        const V d = zv[j] - c[j];
        r2 += d * d;
      }
      // sources beyond the cut-off are left out (the bound counts them as dropped): a
      // vector with any such lane adds its other lanes one by one
      const V inside = r2 <= rc2 ? V{} + 1.0 : V{};
      if (simd::hsum<double>(inside) == double(W)) {
        fgt::s2l_add<D, V, I>(zv, xv, c, xs, src.r, sstar, P, inv, s.block.data(), s.g.data());
      } else {
        for (int l = 0; l < W; ++l) {
          if (inside[l] == 0) continue;
          double zl[D], xl[D];
          for (int j = 0; j < D; ++j) {
            zl[j] = zv[j][l];
            xl[j] = xv[j][l];
          }
          fgt::s2l_add<D, double, std::int64_t>(zl, xl, c, xs, src.r, sstar, P, inv, s.L.data(), s.gs.data());
        }
      }
      if (++in_block == kFlush) flush();
    }
    for (; k < end; ++k) {
      double zl[D], xl[D], r2s = 0;
      for (int j = 0; j < D; ++j) {
        zl[j] = src.z[j][k];
        xl[j] = src.x[j][k];
        r2s += (zl[j] - c[j]) * (zl[j] - c[j]);
      }
      if (r2s <= rc2)
        fgt::s2l_add<D, double, std::int64_t>(zl, xl, c, xs, src.r, sstar, P, inv, s.L.data(), s.gs.data());
    }
  });
  flush();
  for (index_t a = 0; a < pt; ++a) s.L[a] += simd::hsum<double>(s.acc[a]);
}

// Sums of one target at Y, directly, about its nearest source: log S0 (the true sum, as a
// log), moments m (m[k] = E[u^k], 1-D, k <= kmax; d-D m[1 + j] = E[u_j]), the centre o.
template <int D>
void direct_target(const Problem<D>& pb, const double* Y, double& log_s0, double* m, double* ox, double* e) {
  const Sources<D>& src = pb.src;
  double best2;
  const index_t js = src.nearest(Y, best2);
  const double r = src.r;
  for (int j = 0; j < D; ++j) {
    ox[j] = src.x[j][js];
    e[j] = std::fma(-r, ox[j], Y[j]);
  }
  const double R = std::sqrt(best2 + pb.ldir);
  constexpr int C = D == 1 ? 4 : D + 1;  // sums: S0, then S1..S3 (1-D) or S1_j
  V acc[C] = {}, blk[C] = {};
  double tail[C] = {};
  int in_block = 0;
  src.for_ranges(Y, R, [&](index_t beg, index_t end) {
    index_t k = beg;
    for (; k + W <= end; k += W) {
      V u[D];
      V l = V{};
      for (int j = 0; j < D; ++j) {
        u[j] = r * (simd::load(src.x[j].data() + k) - ox[j]);
        l -= u[j] * (u[j] - 2.0 * e[j]);
      }
      const V w = exp_nonpos_f64<V, I>(l);
      blk[0] += w;
      if constexpr (D == 1) {
        const V wu = w * u[0];
        blk[1] += wu;
        blk[2] += wu * u[0];
        blk[3] += wu * u[0] * u[0];
      } else {
        for (int j = 0; j < D; ++j) blk[1 + j] += w * u[j];
      }
      if (++in_block == kFlush) {
        for (int c = 0; c < C; ++c) {
          acc[c] += blk[c];
          blk[c] = V{};
        }
        in_block = 0;
      }
    }
    for (; k < end; ++k) {
      double u[D], l = 0;
      for (int j = 0; j < D; ++j) {
        u[j] = r * (src.x[j][k] - ox[j]);
        l -= u[j] * (u[j] - 2.0 * e[j]);
      }
      const double w = exp_nonpos(l);
      tail[0] += w;
      if constexpr (D == 1) {
        tail[1] += w * u[0];
        tail[2] += w * u[0] * u[0];
        tail[3] += w * u[0] * u[0] * u[0];
      } else {
        for (int j = 0; j < D; ++j) tail[1 + j] += w * u[j];
      }
    }
  });
  double S[C];
  for (int c = 0; c < C; ++c) S[c] = simd::hsum<double>(acc[c] + blk[c]) + tail[c];
  double e2 = 0;
  for (int j = 0; j < D; ++j) e2 += e[j] * e[j];
  log_s0 = std::log(S[0]) - e2;
  m[0] = 1.0;
  for (int c = 1; c < C; ++c) m[c] = S[c] / S[0];
}

// Output pointers and the constants of the finishing formulas.
template <class T>
struct Out {
  T *score, *log_density, *mean, *d1, *d2;
  double h, mu, sigma, log_norm;
};

template <class T>
void write_1d(const Out<T>& out, index_t i, double log_s0, const double* m, double ox, double e) {
  const fgt::Outputs1D r = fgt::finish_1d(log_s0, m, ox, e, out.h, out.mu, out.sigma, out.log_norm);
  if (out.score) out.score[i] = static_cast<T>(r.score);
  if (out.log_density) out.log_density[i] = static_cast<T>(r.log_density);
  if (out.mean) out.mean[i] = static_cast<T>(r.mean);
  if (out.d1) out.d1[i] = static_cast<T>(r.d1);
  if (out.d2) out.d2[i] = static_cast<T>(r.d2);
}

template <int D, class T>
void write_nd(const Out<T>& out, index_t i, double log_s0, const double* m, const double* ox, const double* e) {
  if (out.log_density) out.log_density[i] = static_cast<T>(log_s0 - out.log_norm);
  for (int j = 0; j < D; ++j) {
    if (out.score) out.score[i * D + j] = static_cast<T>((2.0 / out.h) * (m[1 + j] - e[j]));
    if (out.mean) out.mean[i * D + j] = static_cast<T>(ox[j] + (out.h / out.mu) * m[1 + j]);
  }
}

template <int D, class T>
void write_nan(const Out<T>& out, index_t i) {
  const T nan = std::numeric_limits<T>::quiet_NaN();
  if (out.log_density) out.log_density[i] = nan;
  for (int j = 0; j < D; ++j) {
    if (out.score) out.score[i * D + j] = nan;
    if (out.mean) out.mean[i * D + j] = nan;
  }
  if constexpr (D == 1) {
    if (out.d1) out.d1[i] = nan;
    if (out.d2) out.d2[i] = nan;
  }
}

template <int D, class T>
void write_target(const Out<T>& out, index_t i, double log_s0, const double* m, const double* ox, const double* e) {
  if constexpr (D == 1)
    write_1d(out, i, log_s0, m, ox[0], e[0]);
  else
    write_nd<D>(out, i, log_s0, m, ox, e);
}

// The statistics a call reports (stats[8]).
enum Stat { kUsedFgt, kBoxes, kExpanded, kDirectTargets, kMaxOrder, kMaxBound, kCostFgt, kCostPairwise, kStats };

// The FGT of targets Y [q, D] (h-units) against the sources: plan, then (if worth it under
// mode 0, always under mode 1) execute.  Returns false when mode 0 chose the pairwise
// kernel (nothing written).  stats may be null.
template <int D, class T>
bool run_fgt(const Sources<D>& src, const double* Y, index_t q, int kmax, bool single, int mode, const Out<T>& out,
             double* stats, double pairwise_factor = 1.0) {
  Problem<D> pb{src, Y, q, kmax, fgt::tolerance(single), 0.0};
  pb.ldir = std::log(16.0 * double(src.n) / pb.tol.trunc) + 8.0;
  // Target boxes, coarsest last: targets are grouped by keys floor(Y / b) with b =
  // box_side(D) 2^level; a box whose bound holds but whose few targets make direct sums
  // cheaper than its expansion passes its targets on to the next (twice coarser) level,
  // where they may share an expansion with their neighbours.
  std::vector<index_t> pending, order;
  pending.reserve(q);
  order.reserve(q);
  for (index_t i = 0; i < q; ++i) {
    bool finite = true;
    for (int j = 0; j < D; ++j) finite = finite && std::isfinite(Y[i * D + j]);
    if (finite)
      pending.push_back(i);
    else
      write_nan<D>(out, i);
  }
  std::vector<Box> boxes;
  std::vector<double> key(q * D);
  for (int level = 0; level < kLevels && !pending.empty(); ++level) {
    const double bside = fgt::box_side(D) * double(1 << level);
    for (index_t i : pending)
      for (int j = 0; j < D; ++j)
        key[i * D + j] = std::max(-4.5e15, std::min(4.5e15, std::floor(Y[i * D + j] / bside)));
    std::sort(pending.begin(), pending.end(), [&](index_t a, index_t b) {
      for (int j = 0; j < D; ++j)
        if (key[a * D + j] != key[b * D + j]) return key[a * D + j] < key[b * D + j];
      return a < b;
    });
    std::vector<Box> level_boxes;
    const index_t np = static_cast<index_t>(pending.size());
    for (index_t e = 0; e < np;) {
      index_t f = e + 1;
      while (f < np && std::equal(&key[pending[e] * D], &key[pending[e] * D] + D, &key[pending[f] * D])) ++f;
      Box b;
      b.begin = e;
      b.count = f - e;
      level_boxes.push_back(b);
      e = f;
    }
    const index_t nl = static_cast<index_t>(level_boxes.size());
    const int threads = team_size(nl);
    std::vector<std::vector<double>> counts = per_thread(threads, [] { return std::vector<double>(fgt::kShells); });
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (parallel_worth(double(np) * 64.0))
    for (index_t k = 0; k < nl; ++k) plan_box<D>(pb, pending.data(), level_boxes[k], counts[thread_index()].data());
    std::vector<index_t> next;
    for (Box& b : level_boxes) {
      if (!b.expand && b.order >= 0 && level + 1 < kLevels) {
        next.insert(next.end(), pending.begin() + b.begin, pending.begin() + b.begin + b.count);
        continue;
      }
      const index_t at = static_cast<index_t>(order.size());
      order.insert(order.end(), pending.begin() + b.begin, pending.begin() + b.begin + b.count);
      b.begin = at;
      boxes.push_back(b);
    }
    pending.swap(next);
  }
  const index_t qf = static_cast<index_t>(order.size());
  const index_t nb = static_cast<index_t>(boxes.size());
  double cost_fgt = 2.0 * double(src.n) + 0.1 * double(qf) * std::log2(double(qf) + 2.0), cost_pw = 0;
  index_t expanded = 0, direct_targets = 0;
  int max_p = -1;
  double max_bound = 0;
  for (const Box& b : boxes) {
    cost_fgt += b.cost_fgt;
    cost_pw += b.cost_pairwise;
    if (b.expand) {
      ++expanded;
      max_p = std::max(max_p, b.order);
      max_bound = std::max(max_bound, b.bound);
    } else {
      direct_targets += b.count;
    }
  }
  cost_fgt *= kCalibrate[D];
  cost_pw *= pairwise_factor;
  const bool use = mode == 1 || cost_fgt < cost_pw;
  if (stats) {
    stats[kUsedFgt] = use ? 1.0 : 0.0;
    stats[kBoxes] = double(nb);
    stats[kExpanded] = double(expanded);
    stats[kDirectTargets] = double(direct_targets);
    stats[kMaxOrder] = double(max_p);
    stats[kMaxBound] = max_bound;
    stats[kCostFgt] = cost_fgt;
    stats[kCostPairwise] = cost_pw;
  }
  if (!use) return false;
  std::vector<double> inv(fgt::max_order(D) + 1);
  inv[0] = 0;
  for (int k = 1; k <= fgt::max_order(D); ++k) inv[k] = 1.0 / k;
  // targets summed directly: those of direct boxes, and any target whose expansion gave a
  // non-positive or non-finite F (a safety net; the bound rules it out)
  std::vector<unsigned char> direct(q, 0);
  std::vector<index_t> ebox;
  for (index_t k = 0; k < nb; ++k) {
    if (boxes[k].expand)
      ebox.push_back(k);
    else
      for (index_t e = 0; e < boxes[k].count; ++e) direct[order[boxes[k].begin + e]] = 1;
  }
  const index_t ne = static_cast<index_t>(ebox.size());
  if (ne > 0) {
    const int threads = team_size(ne);
    std::vector<Scratch> scratch = per_thread(threads, [] { return Scratch(D); });
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (parallel_worth(cost_fgt))
    for (index_t k = 0; k < ne; ++k) {
      const Box& b = boxes[ebox[k]];
      Scratch& s = scratch[thread_index()];
      box_coefficients<D>(pb, b, s, inv.data());
      double rho2 = b.rho * b.rho;
      for (index_t e = 0; e < b.count; ++e) {
        const index_t i = order[b.begin + e];
        double t[D], t2 = 0;
        for (int j = 0; j < D; ++j) {
          t[j] = Y[i * D + j] - b.c[j];
          t2 += t[j] * t[j];
        }
        double f[4], m[4];
        if constexpr (D == 1) {
          fgt::eval_1d(s.L.data(), b.order, t[0], kmax, f);
          for (int c = 1; c <= 3; ++c) m[c] = f[c] / (double(1 << c) * f[0]);
        } else {
          if constexpr (D == 2)
            fgt::eval_2d(s.L.data(), b.order, t, f);
          else
            fgt::eval_3d(s.L.data(), b.order, t, f);
          for (int j = 0; j < D; ++j) m[1 + j] = f[1 + j] / (2.0 * f[0]);
        }
        if (!(f[0] > 0) || !std::isfinite(f[0])) {
          direct[i] = 1;
          continue;
        }
        m[0] = 1.0;
        const double log_s0 = std::log(f[0]) - t2 - rho2;
        double ox[D];
        for (int j = 0; j < D; ++j) ox[j] = (out.h / out.mu) * b.c[j];
        write_target<D>(out, i, log_s0, m, ox, t);
      }
    }
  }
  std::vector<index_t> dl;
  for (index_t i = 0; i < q; ++i)
    if (direct[i]) dl.push_back(i);
  const index_t nd = static_cast<index_t>(dl.size());
#pragma omp parallel for schedule(dynamic, 16) num_threads(team_size(nd)) if (parallel_worth(double(nd) * 256.0))
  for (index_t k = 0; k < nd; ++k) {
    const index_t i = dl[k];
    double log_s0, m[4] = {}, ox[D], e[D];
    direct_target<D>(pb, Y + i * D, log_s0, m, ox, e);
    write_target<D>(out, i, log_s0, m, ox, e);
  }
  if (stats) stats[kDirectTargets] = double(nd);
  return true;
}

}  // namespace

// s* family by the FGT (mode 1) or by whichever of the FGT and the pairwise kernel the
// cost model prefers (mode 0), for one noise level (mu, sigma).  1-D data, x sorted.
template <class T>
void fgt_1d(const T* y, index_t q, const T* x_sorted, index_t n, double mu, double sigma, int mode, T* score,
            T* log_density, T* mean, T* d1, T* d2, double* stats) {
  if (stats) std::fill(stats, stats + kStats, 0.0);
  if (q == 0) return;
  const Out<T> out{score, log_density, mean, d1, d2, std::sqrt(2.0) * sigma, mu, sigma,
                   std::log(double(n)) + std::log(sigma) + kLogSqrt2Pi};
  const int kmax = (d1 || d2) ? 3 : (score || mean) ? 1 : 0;
  bool done = false;
  if (mode == 1 || double(q) * double(n) > 131072.0) {
    const double h = std::sqrt(2.0) * sigma;
    const Sources<1> src(x_sorted, n, mu / h);
    std::vector<double> Y(q);
    for (index_t i = 0; i < q; ++i) Y[i] = double(y[i]) / h;
    done = run_fgt<1, T>(src, Y.data(), q, kmax, sizeof(T) == 4, mode, out, stats);
  }
  if (!done) {
    const T mut = static_cast<T>(mu), sigt = static_cast<T>(sigma);
    optimal_score_1d<T>(y, q, x_sorted, n, &mut, 0, &sigt, 0, score, log_density, mean, d1, d2);
  }
}

template <class T>
void fgt_nd(const T* y, index_t q, const T* x, index_t n, index_t d, double mu, double sigma, int mode, T* score,
            T* log_density, T* mean, double* stats) {
  if (stats) std::fill(stats, stats + kStats, 0.0);
  if (q == 0) return;
  const Out<T> out{score, log_density, mean, nullptr, nullptr, std::sqrt(2.0) * sigma, mu, sigma,
                   std::log(double(n)) + double(d) * (std::log(sigma) + kLogSqrt2Pi)};
  const int kmax = (score || mean) ? 1 : 0;
  bool done = false;
  if (d >= 1 && d <= 3 && (mode == 1 || double(q) * double(n) > 131072.0)) {
    if (d == 1) {
      std::vector<T> xs(x, x + n);  // the grid sorts the sources itself; 1-D data need not be sorted
      done = [&] {
        const double h = std::sqrt(2.0) * sigma;
        const Sources<1> src(xs.data(), n, mu / h);
        std::vector<double> Y(q);
        for (index_t i = 0; i < q; ++i) Y[i] = double(y[i]) / h;
        return run_fgt<1, T>(src, Y.data(), q, kmax, sizeof(T) == 4, mode, out, stats);
      }();
    } else if (d == 2) {
      const double h = std::sqrt(2.0) * sigma;
      const Sources<2> src(x, n, mu / h);
      std::vector<double> Y(q * 2);
      for (index_t i = 0; i < q * 2; ++i) Y[i] = double(y[i]) / h;
      done = run_fgt<2, T>(src, Y.data(), q, kmax, sizeof(T) == 4, mode, out, stats);
    } else {
      const double h = std::sqrt(2.0) * sigma;
      const Sources<3> src(x, n, mu / h);
      std::vector<double> Y(q * 3);
      for (index_t i = 0; i < q * 3; ++i) Y[i] = double(y[i]) / h;
      done = run_fgt<3, T>(src, Y.data(), q, kmax, sizeof(T) == 4, mode, out, stats);
    }
  }
  if (!done) {
    const T mut = static_cast<T>(mu), sigt = static_cast<T>(sigma);
    optimal_score_nd<T>(y, q, x, n, d, &mut, 0, &sigt, 0, score, log_density, mean);
  }
}

// The reverse-diffusion sampler with s* by the FGT: per step k, s* of every particle
// (mode 1; mode 0: the FGT where the plan prefers it, else that step runs the fused
// pairwise loop of sampler_kernels.cpp), then the Euler-Maruyama update with the sampler's
// normals of step k (sampler_normals: the fused loop's values), so a run replays the
// pairwise sampler's noise exactly.  stats[0] += the number of steps that used the FGT.
void sampler_empirical_fgt(const SamplerSteps& st, const double* data, index_t n_data, bool one_d, int mode,
                           double* stats) {
  const index_t n = st.n, d = st.d;
  if (d > 3) {
    sampler_empirical(st, data, n_data, one_d);
    return;
  }
  constexpr std::uint64_t kStreamSteps = streams::kSamplerSteps;  // the increments' stream
  std::vector<double> s(n * d), z(n * d), Y(n * d);
  for (index_t k = st.k0; k < st.k1; ++k) {
    const double mu = st.mu[k], sigma = st.sigma[k], h = std::sqrt(2.0) * sigma;
    bool used = false;
    if (mode == 1 || double(n) * double(n_data) > 131072.0) {
      for (index_t i = 0; i < n * d; ++i) Y[i] = st.x[i] / h;
      const Out<double> out{s.data(), nullptr, nullptr, nullptr, nullptr, h, mu, sigma, 0.0};
      if (d == 1) {
        const Sources<1> src(data, n_data, mu / h);
        used = run_fgt<1, double>(src, Y.data(), n, 1, false, mode, out, nullptr, 0.5);
      } else if (d == 2) {
        const Sources<2> src(data, n_data, mu / h);
        used = run_fgt<2, double>(src, Y.data(), n, 1, false, mode, out, nullptr, 0.5);
      } else {
        const Sources<3> src(data, n_data, mu / h);
        used = run_fgt<3, double>(src, Y.data(), n, 1, false, mode, out, nullptr, 0.5);
      }
    }
    if (!used) {
      SamplerSteps one = st;
      one.k0 = k;
      one.k1 = k + 1;
      sampler_empirical(one, data, n_data, one_d);
      continue;
    }
    const double hk = st.h[k], r = st.r[k], c = st.c;
    if (r != 0.0)
      sampler_normals(st.seed, kStreamSteps, static_cast<std::uint64_t>(k) * static_cast<std::uint64_t>(n * d),
                      z.data(), n * d);
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel_worth(double(n * d)))
    for (index_t i = 0; i < n * d; ++i) st.x[i] = em_update(st.x[i], s[i], hk, c, r, r != 0.0 ? z[i] : 0.0);
    if (st.path) std::copy(st.x, st.x + n * d, st.path + (k + 1) * n * d);
    if (stats) stats[0] += 1.0;
  }
}

BIGSTEP_EXPORT_TYPED(fgt_1d)
BIGSTEP_EXPORT_TYPED(fgt_nd)

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
