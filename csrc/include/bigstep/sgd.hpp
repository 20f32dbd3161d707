// Per-step math of the fused batched 1-D SGD trainer (python/bigstep/training/sgd1d.py has the
// user-facing description).  Shared by the CPU launcher (csrc/cpu/sgd_kernels.cpp) and, later,
// a CUDA launcher; mirrored line for line in python/bigstep/_numba/sgd.py.
//
// Network (width m):  s(y) = (1/m) sum_l w2_l relu(w1_l y + b_l).
// Step j of a network with seed s, batch slot b = 0..B-1, flat draw index e = j B + b:
//   i_b = min(floor(n * uniform(s, stream 3)[e]), n - 1),  z_b = gaussian_noise(s, stream 4)[e],
//   c_b = mu x_{i_b},  y_b = c_b + sigma z_b,  r_b = (y_b - c_b) / sigma^2,
//   f_b = s(y_b) + r_b,  loss = (1/B) sum_b f_b^2.
// Update theta <- theta - m lr grad(loss); with g_b = (2 lr / B) f_b and the indicator
// a_bl = 1{w1_l y_b + b_l > 0} (relu'(0) = 0):
//   SA_l  = sum_b g_b a_bl,   SAY_l = sum_b g_b y_b a_bl,
//   w2_l -= w1_l SAY_l + b_l SA_l      (= sum_b g_b relu(w1_l y_b + b_l)),
//   b_l  -= w2_l SA_l,   w1_l -= w2_l SAY_l (only when w1 is trained),
// all from the parameters before the step; then w2_l is clipped to [-A, A] if A > 0.
// Each neuron's update needs only its own parameters and the B residuals, so the
// forward pass (sums over neurons per sample) and the update pass (sums over samples
// per neuron) are two loops, each vectorised over neurons.
//
// Summation order (fixed, so every backend and thread count adds in the same order):
// s(y) sums neuron l into lane l % kLanes for the first m - m % kLanes neurons, the
// lanes are then added pairwise (tree below), the remaining neurons added in order,
// and the total divided by m.  SA and SAY add the samples in order b = 0..B-1.
#pragma once
#include <cmath>
#include <cstdint>

#include "bigstep/config.hpp"
#include "bigstep/philox.hpp"
#include "bigstep/streams.hpp"

namespace bigstep::sgd {

constexpr int kLanes = 8;                  // partial sums of the forward pass
constexpr double kParamLimit = 1e8;        // |theta| above this counts as a blow-up
constexpr double kLossLimit = 1e16;        // batch loss above this counts as a blow-up
constexpr std::uint64_t kStreamIndex = streams::kSgdIndex;  // Philox streams (streams.hpp)
constexpr std::uint64_t kStreamNoise = streams::kSgdNoise;

// Draws of batch slots [0, B) of step j: y[b] and r[b] = (y - mu x_i) / sigma^2.
// Element e of the index stream uses words (2(e%2), 2(e%2)+1) of Philox block e / 2 as
// uniform_at does, element e of the noise stream normal e % 4 of block e / 4 as
// normal_at does; each block is computed once for the elements that share it.
BIGSTEP_HD void draw_batch(const PhiloxStream& s_index, const PhiloxStream& s_noise, std::uint64_t j, index_t B,
                           const double* x, index_t n,  // [n]
                           double mu, double sigma, double inv_s2,
                           double* y, double* r) {  // each [B]
  Philox4 bu{}, bz{};
  for (index_t b = 0; b < B; ++b) {
    const std::uint64_t e = j * static_cast<std::uint64_t>(B) + static_cast<std::uint64_t>(b);
    const int h = static_cast<int>(e & 1u) * 2;
    if (b == 0 || h == 0) bu = philox_block(s_index, e >> 1);
    if (b == 0 || (e & 3u) == 0) bz = philox_block(s_noise, e >> 2);
    const double u = u01_53(bu.v[h], bu.v[h + 1]);
    index_t i = static_cast<index_t>(u * static_cast<double>(n));  // floor: u >= 0
    if (i > n - 1) i = n - 1;
    const double z = block_normal(bz, static_cast<unsigned>(e & 3u));
    const double c = mu * x[i];
    const double yb = c + sigma * z;
    y[b] = yb;
    r[b] = (yb - c) * inv_s2;
  }
}

BIGSTEP_HD double relu(double p) { return p > 0.0 ? p : 0.0; }

// s(y) for one network, in the fixed summation order above.
BIGSTEP_HD double net_output(const double* w1, const double* w2, const double* bias,  // each [m]
                             index_t m, double y) {
  double acc[kLanes] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  const index_t mv = m - m % kLanes;
  for (index_t l = 0; l < mv; l += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += w2[l + k] * relu(w1[l + k] * y + bias[l + k]);
  double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (index_t l = mv; l < m; ++l) s += w2[l] * relu(w1[l] * y + bias[l]);
  return s / static_cast<double>(m);
}

// New parameters of one neuron from its sums SA, SAY (see the top of the file); returns
// max(|w1'|, |w2'|, |b'|), NaN if any is NaN.
BIGSTEP_HD double update_neuron(double w1, double w2, double bl, double sa, double say, bool train_inner,
                                double clip, double& w1_new, double& w2_new, double& b_new) {
  double v2 = w2 - (w1 * say + bl * sa);
  if (clip > 0.0) v2 = v2 > clip ? clip : (v2 < -clip ? -clip : v2);
  w2_new = v2;
  b_new = bl - w2 * sa;
  w1_new = train_inner ? w1 - w2 * say : w1;
  const double a = std::fabs(w1_new), c = std::fabs(b_new), d = std::fabs(v2);
  if (a != a || c != c || d != d) return a + c + d;  // NaN
  const double ac = a > c ? a : c;
  return ac > d ? ac : d;
}

// Whether a step's outcome counts as a blow-up (non-finite, or beyond the limits).
BIGSTEP_HD bool loss_blown(double loss) { return !(loss <= kLossLimit); }
BIGSTEP_HD bool params_blown(double max_abs) { return !(max_abs <= kParamLimit); }

}  // namespace bigstep::sgd

#if !defined(__CUDACC__)
namespace bigstep::cpu {

// One chunk of steps [k0, k1) for R networks of width m trained side by side (the
// launcher in csrc/cpu/sgd_kernels.cpp, compiled once per instruction set; its entry
// point sgd_train is listed in csrc/cpu/kernels.hpp).
// Network r: learning rate lr[r], Philox seed seed[r], parameters w1/w2/b[r, :]
// (updated in place).  diverged_step[r] >= 0 marks a network that stopped (skipped);
// a network that blows up at step j keeps the parameters before step j and gets
// diverged_step[r] = j.  loss_sum[r] / loss_count[r] accumulate the batch losses of
// the accepted steps (in step order).
struct SgdChunk {
  const double* x;  // [n]
  index_t n;
  double mu, sigma;
  index_t networks, m, batch;
  const double* lr;             // [R]
  const std::uint64_t* seed;    // [R]
  double *w1, *w2, *b;          // each [R, m]
  bool train_inner;
  double clip;                  // <= 0: no clipping
  index_t k0, k1;               // steps [k0, k1)
  std::int64_t* diverged_step;  // [R], -1 while training
  double* loss_sum;             // [R]
  std::int64_t* loss_count;     // [R]
};

}  // namespace bigstep::cpu
#endif
