// Per-element math of the local and equivariant local empirical denoisers.
//
// Images y (query) and x_1..x_n (training) of shape (H, W, C); patch size P = 2r + 1;
// Omega_u the P x P window centred at pixel u, read through a padding rule (zeros, or
// reflect: numpy's and torch's 'reflect', the edge pixel not repeated).  At a noise
// level (mu, sigma) the patch distance of a query window and a training window is
//   D(u, i, v) = sum_{delta in [-r, r]^2} sum_c (y(u + delta, c) - mu x_i(v + delta, c))^2
// and the logit l = -D / (2 sigma^2) <= 0.
//   local:        the softmax at pixel u runs over i, with v = u;
//   equivariant:  it runs over every (i, v), v any pixel of x_i.
// E_u[y] = sum w x_i(v) (the centre pixel of the training window), and the score is
// (mu E - y) / sigma^2.
//
// Algorithm (csrc/cpu/local_kernels.cpp, python/bigstep/_numba/local.py).  For a
// displacement t = v - u, D(u, i, u + t) is a P x P box sum over u of the per-pixel
// squared differences e_t(w) = sum_c (y(w, c) - mu x_i(w + t, c))^2: a vertical pass of
// P terms then a horizontal pass of P terms, O(H W (C + 2P)) for all u at once, never a
// patch matrix.  The local machine is the shift t = 0; the equivariant one loops over
// all (2H - 1)(2W - 1) shifts, restricted to the u for which u + t is a pixel.  Every
// pixel keeps an online softmax (running max m, sum S, accumulators A_c), rescaled
// exactly when its maximum grows; partial states (SIMD lanes, threads, blocks of
// images) are combined by merge_states, the exact log-sum-exp combination, so no part
// of the sum is ever normalised on its own.
//
// Accuracy: every term of D is a square (y - mu x)^2, formed with one rounding of the
// difference where FMA is available, and the sums have nonnegative terms, so D has a
// relative error of at most about (C + 2P) units of roundoff whatever sigma is; the
// logits inherit it as an absolute error (C + 2P) u |l|, the same order as the effect
// of rounding the inputs themselves.  There is no cancellation of the expanded form
// |y|^2 - 2 mu <y, x> + mu^2 |x|^2.
#pragma once
#include <cmath>

#include "bigstep/config.hpp"

namespace bigstep {

// Padding rule of the windows near the border.
enum LocalPadding : int {
  kPadZeros = 0,    // pixels outside the image are 0 (in y and in x)
  kPadReflect = 1,  // mirrored about the edge pixel: -1 -> 1, n -> n - 2 (needs r <= n - 1)
};

// Outputs a call wants (bit mask), as in optimal_score.hpp.
enum LocalOutput : int {
  kLocalScore = 1,
  kLocalMean = 4,
};

// Source index of padded coordinate i (in [-r, n + r)) of an axis of length n: i itself
// inside, its mirror image for reflect padding, -1 (a zero) for zero padding.
BIGSTEP_HD index_t pad_source(index_t i, index_t n, int padding) {
  if (i >= 0 && i < n) return i;
  if (padding != kPadReflect) return -1;
  return i < 0 ? -i : 2 * (n - 1) - i;
}

// Half-width actually needed along an axis of n pixels.  With zero padding a window
// reaching more than n - 1 pixels beyond its centre only adds zeros (0 - mu 0)^2 in the
// local case and pairs in which both pixels are padding in the equivariant case, so
// r is clamped to n - 1: a patch of P >= 2 max(H, W) - 1 covers the whole image from
// every centre.  Reflect padding needs r <= n - 1 and is not clamped.
BIGSTEP_HD index_t effective_radius(index_t r, index_t n, int padding) {
  return (padding == kPadZeros && r > n - 1) ? n - 1 : r;
}

// (y - mu x)^2 in the compute type (V: a float type or a vector of one): the difference
// is formed as y - mu x, one rounding with FMA contraction.
template <class V, class A>
BIGSTEP_HD V squared_difference(V y, V x, A mu) {
  const V d = y - mu * x;
  return d * d;
}

// Online-softmax state of one pixel: running max m, S = sum exp(l - m), acc_c = sum
// exp(l - m) x_c.  merge_states folds (m2, s2, acc2) into (m1, s1, acc1) exactly:
// both are rescaled to the larger maximum.  A state with s = 0 is empty.
BIGSTEP_HD void merge_states(double& m1, double& s1, double* acc1, double m2, double s2, const double* acc2,
                             index_t C) {
  if (!(s2 > 0)) return;
  if (!(s1 > 0)) {
    m1 = m2;
    s1 = s2;
    for (index_t c = 0; c < C; ++c) acc1[c] = acc2[c];
    return;
  }
  if (m2 > m1) {
    const double f = std::exp(m1 - m2);
    s1 = s1 * f + s2;
    for (index_t c = 0; c < C; ++c) acc1[c] = acc1[c] * f + acc2[c];
    m1 = m2;
  } else {
    const double f = std::exp(m2 - m1);
    s1 += s2 * f;
    for (index_t c = 0; c < C; ++c) acc1[c] += acc2[c] * f;
  }
}

// The outputs of one pixel from its merged state: E_c = acc_c / S and the score
// (mu E_c - y_c) / sigma^2.
BIGSTEP_HD double local_mean(double s, double acc) { return acc / s; }
BIGSTEP_HD double local_score(double mean, double y, double mu, double sigma) {
  return (mu * mean - y) / (sigma * sigma);
}

}  // namespace bigstep
