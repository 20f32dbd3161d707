// Per-step math of the fused batched d-D SGD trainer: two-layer ReLU networks on the
// DSM loss at one noise level (train_dsm) and the time-conditional diffusion network
// (train_diffusion) of the paper's Appendix E.  Shared by the CPU launcher
// (csrc/cpu/sgd_nd_kernels.cpp) and, later, a CUDA launcher; mirrored in
// python/bigstep/_numba/sgd_nd.py.  python/bigstep/training/sgd_nd.py has the user-facing text.
//
// Network (width m, input dimension p, output dimension d), mean-field scaling:
//   net(u) = (1/m) W2 relu(W1 u + b),  stored as W1t = W1^T [p, m], b [m], W2 [d, m].
// DSM (p = d): u_b = mu x_{i_b} + sigma z_b, target offset c_b = z_b / sigma, so that
//   F_b = net(u_b) + c_b = s_theta(Y_b) + (Y_b - mu x_{i_b}) / sigma^2.
// Diffusion (p = d + 1): time index k_b on the grid (times, mus, sigmas, cdf),
//   u_b = [mus[k_b] x_{i_b} + sigmas[k_b] z_b; times[k_b]], c_b = -z_b, F_b = net(u_b) - z_b.
// Batch loss L = (1/norm) sum_b ||F_b||^2 (norm = B for DSM's squared norm, B d for the
// coordinate mean and for diffusion); update theta <- theta - m lr grad L, i.e. with
// G_bj = (2 lr / norm) F_bj, h_bl = relu(pre_bl), pre_bl = b_l + sum_k W1t[k, l] u_bk,
// a_bl = 1{pre_bl > 0} sum_j G_bj W2[j, l]  (relu'(0) = 0):
//   W2[j, l] -= sum_b G_bj h_bl,   W1t[k, l] -= sum_b a_bl u_bk,   b_l -= sum_b a_bl,
// all from the parameters before the step.
//
// Draws of network seed s, step j, batch slot b (flat slot e = j B + b), the stream map
// of the torch trainers and of the 1-D trainer (bigstep/sgd.hpp):
//   i_b = min(floor(n * uniform(s, stream 3)[e]), n - 1),
//   z_bk = gaussian_noise(s, stream 4)[e d + k],
//   k_b = #{k' : cdf[k'] <= uniform(s, stream 6)[e]}, capped at n_times - 1 (diffusion).
// The inputs are formed in double and rounded once to the network's float type.
//
// Summation order (fixed: the same on every instruction set and thread count):
//   pre_bl: b_l, then k = 0..p-1 in order;
//   net(u)_j: neuron l into lane l % 8 for l < m - m % 8, the lanes added pairwise
//     ((0+1)+(2+3))+((4+5)+(6+7)), then the remaining neurons in order, then / m;
//   a_bl: j = 0..d-1 in order;  the sums over b: b = 0..B-1 in order;
//   the loss: b, then j, in order, in double.
// Divergence (as the 1-D trainer): a step whose loss is not finite or above 1e16, or
// whose new parameters are not finite or above max_abs in absolute value, is refused;
// the network keeps the parameters before it and stops (diverged_step = j).
#pragma once
#include <cmath>
#include <cstdint>

#include "bigstep/config.hpp"
#include "bigstep/philox.hpp"
#include "bigstep/sgd.hpp"
#include "bigstep/streams.hpp"

namespace bigstep::sgd_nd {

constexpr int kLanes = 8;                                 // partial sums of the forward pass
constexpr std::uint64_t kStreamIndex = streams::kSgdIndex;       // Philox streams (streams.hpp)
constexpr std::uint64_t kStreamNoise = streams::kSgdNoise;
constexpr std::uint64_t kStreamTime = streams::kDiffusionTime;  // time index of train_diffusion
constexpr double kLossLimit = sgd::kLossLimit;            // 1e16

// Grid index of a uniform draw: the number of cdf entries <= u, capped at n_times - 1
// (numpy.searchsorted(cdf, u, side="right")).
BIGSTEP_HD index_t time_index(const double* cdf, index_t n_times, double u) {
  index_t lo = 0, hi = n_times;  // first index with cdf > u lies in [lo, hi]
  while (lo < hi) {
    const index_t mid = lo + (hi - lo) / 2;
    if (cdf[mid] <= u) lo = mid + 1;
    else hi = mid;
  }
  return lo < n_times - 1 ? lo : n_times - 1;
}

// The problem: data and noise level (or time grid), shared by the networks of a call.
struct Problem {
  const double* x;  // [n_sets, n, d]
  index_t n, d, p;  // p = d (DSM) or d + 1 (diffusion)
  bool diffusion;
  double mu, sigma;  // DSM
  const double* times;  // diffusion: [n_times] each
  const double* mus;
  const double* sigmas;
  const double* cdf;
  index_t n_times;
};

// Inputs u [B, p] and offsets c [B, d] of step j for a network with streams (si, sz, st)
// training on data set xs = x + set * n * d.  Uniform element e uses words
// (2(e%2), 2(e%2)+1) of Philox block e / 2 (uniform_at), normal element e normal e % 4 of
// block e / 4 (normal_at); each block is computed once for the elements that share it.
template <class T>
BIGSTEP_HD void draw_batch(const Problem& pr, const double* xs, const PhiloxStream& si, const PhiloxStream& sz,
                           const PhiloxStream& st, std::uint64_t j, index_t B, T* u, T* c) {
  Philox4 bu{}, bt{}, bz{};
  const index_t d = pr.d;
  for (index_t b = 0; b < B; ++b) {
    const std::uint64_t e = j * static_cast<std::uint64_t>(B) + static_cast<std::uint64_t>(b);
    const int h = static_cast<int>(e & 1u) * 2;
    if (b == 0 || h == 0) {
      bu = philox_block(si, e >> 1);
      if (pr.diffusion) bt = philox_block(st, e >> 1);
    }
    const double uu = u01_53(bu.v[h], bu.v[h + 1]);
    index_t i = static_cast<index_t>(uu * static_cast<double>(pr.n));  // floor: uu >= 0
    if (i > pr.n - 1) i = pr.n - 1;
    double mu = pr.mu, sigma = pr.sigma;
    if (pr.diffusion) {
      const index_t k = time_index(pr.cdf, pr.n_times, u01_53(bt.v[h], bt.v[h + 1]));
      mu = pr.mus[k];
      sigma = pr.sigmas[k];
      u[b * pr.p + d] = static_cast<T>(pr.times[k]);
    }
    const double* xi = xs + i * d;
    for (index_t k = 0; k < d; ++k) {
      const std::uint64_t f = e * static_cast<std::uint64_t>(d) + static_cast<std::uint64_t>(k);
      if ((b == 0 && k == 0) || (f & 3u) == 0) bz = philox_block(sz, f >> 2);
      const double z = block_normal(bz, static_cast<unsigned>(f & 3u));
      u[b * pr.p + k] = static_cast<T>(mu * xi[k] + sigma * z);
      c[b * d + k] = static_cast<T>(pr.diffusion ? -z : z / sigma);
    }
  }
}

BIGSTEP_HD bool loss_blown(double loss) { return !(loss <= kLossLimit); }

}  // namespace bigstep::sgd_nd

#if !defined(__CUDACC__)
namespace bigstep::cpu {

// One chunk of steps [k0, k1) for R networks trained side by side (the launcher in
// csrc/cpu/sgd_nd_kernels.cpp, compiled once per instruction set; its entry point
// sgd_nd_train is listed in csrc/cpu/kernels.hpp).  Network r: learning
// rate lr[r], Philox seed seed[r], data set data_of[r], step count steps[r] (it trains
// steps [k0, min(k1, steps[r]))), parameters w1t [R, p, m], b [R, m], w2 [R, d, m]
// updated in place.  diverged_step[r] >= 0 marks a network that stopped (skipped); a
// network that blows up at step j keeps the parameters before step j and gets
// diverged_step[r] = j.  loss_sum[r] / loss_count[r] accumulate the accepted steps'
// batch losses (in step order).
template <class T>
struct SgdNdChunk {
  sgd_nd::Problem pr;
  double norm;
  index_t networks, m, batch;
  const double* lr;              // [R]
  const std::uint64_t* seed;     // [R]
  const std::int64_t* data_of;   // [R]
  const std::int64_t* steps;     // [R]
  T *w1t, *b, *w2;
  double max_abs;
  index_t k0, k1;
  std::int64_t* diverged_step;   // [R], -1 while training
  double* loss_sum;              // [R]
  std::int64_t* loss_count;      // [R]
};

}  // namespace bigstep::cpu
#endif

