// CPU launchers of the exact ReLU-network DSM risk (csrc/include/bigstep/relu_risk.hpp).
#include <algorithm>
#include <vector>

#include "kernels.hpp"
#include "bigstep/relu_risk.hpp"

namespace bigstep::cpu {

namespace {
constexpr index_t kChunk = 256;  // segments per parallel task
}

void relu_segment_moments(const double* t, index_t K, const double* c, index_t n, double sigma, double* S,
                          double* T, double* P) {
  const index_t nseg = K + 1;
  const index_t chunks = (nseg + kChunk - 1) / kChunk;
  std::fill(S, S + 3 * nseg, 0.0);
  std::fill(T, T + 2 * nseg, 0.0);
  std::fill(P, P + 2 * K, 0.0);
  const double inf = std::numeric_limits<double>::infinity();
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads()) if (chunks > 1)
  for (index_t ch = 0; ch < chunks; ++ch) {
    const index_t k0 = ch * kChunk, k1 = std::min(k0 + kChunk, nseg);
    for (index_t i = 0; i < n; ++i) {
      const double ci = c[i];
      relu::Endpoint l = relu::endpoint(k0 == 0 ? -inf : (t[k0 - 1] - ci) / sigma);
      for (index_t k = k0; k < k1; ++k) {
        const relu::Endpoint h = relu::endpoint(k == K ? inf : (t[k] - ci) / sigma);
        relu::SegmentSums acc;
        relu::add_interval(acc, ci, sigma, l, h);
        S[k] += acc.s0;
        S[nseg + k] += acc.s1;
        S[2 * nseg + k] += acc.s2;
        T[k] += acc.t0;
        T[nseg + k] += acc.t1;
        if (k < K) {
          P[k] += h.ph / sigma;
          P[K + k] += h.zph;
        }
        l = h;
      }
    }
  }
}

void relu_hessian_gauss_newton(const signed char* cls, const index_t* jpos, const double* w1, const double* w2,
                               const double* b, index_t m, const double* L, const double* U, const double* total,
                               index_t K, double scale, bool wrt_all, double* H) {
  const index_t P = (wrt_all ? 3 : 2) * m;
  const index_t o2 = wrt_all ? m : 0, ob = o2 + m;
#pragma omp parallel for schedule(dynamic, 8) num_threads(num_threads()) if (m > 16)
  for (index_t l = 0; l < m; ++l) {
    const int ca = cls[l];
    const index_t ja = jpos[l];
    const double a1 = w1[l], a2 = w2[l], ab = b[l];
    double* h2 = H + (o2 + l) * P;  // row of w2_l
    double* hb = H + (ob + l) * P;  // row of b_l
    double* h1 = wrt_all ? H + l * P : nullptr;
    for (index_t r = 0; r < m; ++r) {
      double s[3];
      relu::region_sums(ca, ja, cls[r], jpos[r], L, U, total, K, s);
      const double s0 = s[0] * scale, s1 = s[1] * scale, s2 = s[2] * scale;
      const double r1 = w1[r], r2 = w2[r], rb = b[r];
      h2[o2 + r] = a1 * r1 * s2 + (a1 * rb + r1 * ab) * s1 + ab * rb * s0;
      h2[ob + r] = r2 * (a1 * s1 + ab * s0);
      hb[o2 + r] = a2 * (r1 * s1 + rb * s0);
      hb[ob + r] = a2 * r2 * s0;
      if (wrt_all) {
        h1[r] = a2 * r2 * s2;
        h1[o2 + r] = a2 * (r1 * s2 + rb * s1);
        h1[ob + r] = a2 * r2 * s1;
        h2[r] = r2 * (a1 * s2 + ab * s1);
        hb[r] = a2 * r2 * s1;
      }
    }
  }
}

}  // namespace bigstep::cpu
