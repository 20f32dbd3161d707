// Per-element math of the sample-quality metrics (docs/design.md section 2, "Metrics").
//
// Squared MMD with the Gaussian kernel k(u, v) = exp(-||u - v||^2 / (2 h^2)) between
// samples a_1..a_N and b_1..b_M, from the three kernel sums
//   S_aa = sum_{i,j} k(a_i, a_j),  S_bb = sum_{i,j} k(b_i, b_j),  S_ab = sum_{i,j} k(a_i, b_j):
//   biased (V-statistic):    S_aa / N^2 + S_bb / M^2 - 2 S_ab / (N M),
//   unbiased (U-statistic):  (S_aa - N) / (N (N - 1)) + (S_bb - M) / (M (M - 1)) - 2 S_ab / (N M)
// (k(u, u) = 1 exactly, so removing the diagonal subtracts N and M).
//
// Squared distances are formed in difference form, sum_k (u_k - v_k)^2, in double:
// never negative, exact to a few ulps for close pairs wherever they sit.  (The GEMM
// form ||u||^2 + ||v||^2 - 2 <u, v> would save at most a factor 2 in flops at d = 64,
// but its absolute error eps (||u||^2 + ||v||^2) swamps the squared distance of close
// pairs away from the origin, which are the pairs that carry the kernel sum at small h.)
//
// Nearest neighbours: the k smallest squared distances of one sample, kept sorted
// ascending in (distance, index) order, so ties go to the lower training index (the
// memorization ratio d1 / d2 is formed from them in python/bigstep/metrics.py).
#pragma once
#include <cmath>

#include "bigstep/config.hpp"
#include "bigstep/fast_exp.hpp"

namespace bigstep {

// k(u, v) from r2 = ||u - v||^2 >= 0 and neg_inv_2h2 = -1 / (2 h^2).  V: double or a
// vector of double (through EXP, the matching exp_nonpos).
template <class V, class Exp>
BIGSTEP_HD V gaussian_kernel(V r2, V neg_inv_2h2, Exp exp_nonpos_v) {
  return exp_nonpos_v(r2 * neg_inv_2h2);
}

// Squared MMD from the kernel sums (see above).  Needs n, m >= 1, and >= 2 when unbiased.
BIGSTEP_HD double mmd2_from_sums(double s_aa, double s_bb, double s_ab, double n, double m, bool unbiased) {
  const double cross = 2.0 * s_ab / (n * m);
  if (unbiased) return (s_aa - n) / (n * (n - 1.0)) + (s_bb - m) / (m * (m - 1.0)) - cross;
  return s_aa / (n * n) + s_bb / (m * m) - cross;
}

// Inserts (r2, j) into the sorted list (dist[0..count), idx[0..count)) of capacity k,
// keeping (distance, index) order when candidates arrive in increasing j.  Returns the
// new count.  Candidates no smaller than a full list's last entry are dropped.
BIGSTEP_HD int topk_insert(double* dist, index_t* idx, int count, int k, double r2, index_t j) {
  if (count == k) {
    if (!(r2 < dist[k - 1])) return count;
    --count;
  }
  int p = count;
  while (p > 0 && dist[p - 1] > r2) {  // after equal distances: they have lower indices
    dist[p] = dist[p - 1];
    idx[p] = idx[p - 1];
    --p;
  }
  dist[p] = r2;
  idx[p] = j;
  return count + 1;
}

}  // namespace bigstep
