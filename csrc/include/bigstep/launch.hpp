// Declarations of the CPU launchers (csrc/cpu/*.cpp).  The CUDA launchers in
// csrc/cuda/ use the same names in namespace bigstep::cuda.  No Python here.
//
// Conventions: row-major contiguous arrays; per-query noise levels are passed as a
// pointer and a stride (stride 0 broadcasts a scalar).  Launchers never throw for
// data-dependent reasons and never abort; arguments are validated by the caller.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "bigstep/config.hpp"

namespace bigstep {
struct SamplerSteps;  // bigstep/sampler.hpp
}  // namespace bigstep

namespace bigstep::cpu {

// Optimal-score family, 1-D.  x_sorted must be sorted ascending (the launcher does
// not sort).  Writes whichever of the outputs are non-null:
//   score, log_density, mean, d1 (s*'), d2 (s*'').
template <class T>
void optimal_score_1d(const T* y, index_t q,          // [q]
                      const T* x_sorted, index_t n,   // [n], ascending
                      const T* mu, index_t mu_stride,     // [q] or scalar (stride 0)
                      const T* sigma, index_t sigma_stride,
                      T* score, T* log_density, T* mean, T* d1, T* d2);  // each [q] or null

// Optimal-score family, d-D (tiled GEMM form with online log-sum-exp).
template <class T>
void optimal_score_nd(const T* y, index_t q,   // [q, d]
                      const T* x, index_t n,   // [n, d]
                      index_t d,
                      const T* mu, index_t mu_stride,
                      const T* sigma, index_t sigma_stride,
                      T* score,        // [q, d] or null
                      T* log_density,  // [q] or null
                      T* mean);        // [q, d] or null

// exp(x) for x <= 0 with the kernels' vectorised polynomial (fast_exp.hpp), over
// an array, threaded.  The exp-throughput ceiling the benchmarks compare s* with.
template <class T>
void exp_nonpos_array(const T* x, T* out, index_t n);

// Metrics family (metrics.hpp).  Sum over all pairs of the Gaussian kernel
// exp(-||x_i - y_j||^2 / (2 bandwidth^2)), in double; symmetric: y is x (m = n), and
// the kernel is evaluated on one triangle of tiles only.  Returns 0 if n or m is 0.
template <class T>
double gaussian_kernel_sum(const T* x, index_t n,   // [n, d]
                           const T* y, index_t m,   // [m, d]
                           index_t d, double bandwidth, bool symmetric);
// The k (1 <= k <= m) nearest rows of y for each row of x, by Euclidean distance,
// ascending, ties to the lower index: dist [n, k], idx [n, k].
template <class T>
void nearest_neighbors(const T* x, index_t n,   // [n, d]
                       const T* y, index_t m,   // [m, d]
                       index_t d, int k, T* dist, index_t* idx);

// Exact DSM risk of 1-D two-layer ReLU networks (relu_risk.hpp).  Sorted kinks t [K],
// data centres c = mu x [n].  Segment sums over the data, segment k = (t_{k-1}, t_k):
//   S [3, K+1]: sum_i E_i[Y^p 1_k], p = 0, 1, 2;  T [2, K+1]: sum_i E_i[(Y - c_i) Y^p 1_k], p = 0, 1;
//   P [2, K]:   sum_i N(t_j; c_i, sigma^2) and sum_i z_ij phi(z_ij), z_ij = (t_j - c_i)/sigma.
void relu_segment_moments(const double* t, index_t K, const double* c, index_t n, double sigma,
                          double* S, double* T, double* P);
// Gauss-Newton part of the Hessian, H [P, P], P = 2m (w2, b) or 3m (w1, w2, b): entries
// scale * polynomial(w) * sum_i E_i[Y^p 1{neurons l, r active}] from the cumulative
// sums L, U [3, K] (segments k <= j, k > j) and total [3].  cls [m] (relu::Class),
// jpos [m] (sorted kink index), w1, w2, b [m].
void relu_hessian_gauss_newton(const signed char* cls, const index_t* jpos, const double* w1, const double* w2,
                               const double* b, index_t m, const double* L, const double* U,
                               const double* total, index_t K, double scale, bool wrt_all, double* H);

// Random-features family (random_features.hpp), float64.  Over the n m samples
// y_s = mu x_{s / m} + sigma xi_s (xi_s[k] = normal s d + k of (seed, stream)) with
// features f_i(y) = rho(<w_i, y> / sqrt(d)) (rho: RfActivation code), writes
// K = sum_s f f^T [p, p], R = sum_s f xi_s^T [p, d] and *xi2 = sum_s ||xi_s||^2.
void rf_gram(const double* x, index_t n, index_t d,  // x [n, d]
             const double* w, index_t p,              // w [p, d]
             double mu, double sigma, index_t m, std::uint64_t seed, std::uint64_t stream, int rho,
             double* K, double* R, double* xi2);
// out [q, p] = rho(y w^T / sqrt(d)) for y [q, d], w [p, d].
void rf_features(const double* y, index_t q, index_t d, const double* w, index_t p, int rho, double* out);

// Philox streams (csrc/include/bigstep/philox.hpp).
template <class T>
void gaussian_noise(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, T* out, index_t count);
template <class T>
void uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, T* out, index_t count);

// Reverse-diffusion sampler family (sampler.hpp): steps st.k0 .. st.k1 - 1 of the fused
// Euler-Maruyama / probability-flow loop, state st.x updated in place.
// s* of data [n_data, d] (1-D: [n_data], sorted ascending, d = 1).
void sampler_empirical(const SamplerSteps& st, const double* data, index_t n_data, bool one_d);
// Noised Gaussian score: mean [d], eigenvectors vecs [d, d] (columns), eigenvalues lam [d].
void sampler_gaussian(const SamplerSteps& st, const double* mean, const double* vecs, const double* lam);
// Time-conditional ReLU net: w1 [m, d + 1], b1 [m], w2t = W2^T [m, d], b2 [d].
void sampler_relu(const SamplerSteps& st, const double* w1, const double* b1, const double* w2t, const double* b2,
                  index_t m);
// The sampler's vectorised normals at counters offset .. offset + count - 1 of (seed,
// stream): gaussian_noise's values up to a few ulp (fast_normal.hpp).
void sampler_normals(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, double* out, index_t count);

// Local and equivariant local denoisers (bigstep/local.hpp): y [q, H, W, C], x [n, H, W, C],
// window half-widths rh, rw (P = 2 r + 1), padding (LocalPadding); writes whichever of
// mean (the posterior mean E[y]) and score ((mu E - y) / sigma^2) [q, H, W, C] are non-null.
template <class T>
void local_posterior_mean(const T* y, index_t q, const T* x, index_t n, index_t H, index_t W, index_t C,
                          index_t rh, index_t rw, int padding, bool equivariant, const T* mu, index_t mu_stride,
                          const T* sigma, index_t sigma_stride, T* mean, T* score);

// Build and run-time facts for bigstep.info().
std::string simd_level();     // instruction set the dispatched kernels run with
std::string compiler();       // compiler id and version
int openmp_max_threads();     // threads the kernels use: set_num_threads' value, else OpenMP's default
void set_num_threads(int n);  // process-wide (every calling thread); n <= 0 restores OpenMP's default

}  // namespace bigstep::cpu
