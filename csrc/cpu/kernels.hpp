// The CPU kernel registry: every entry point, declared once, by family.
//
// Per-instruction-set kernels.  The kernel files (BIGSTEP_KERNEL_SOURCES in CMakeLists.txt:
// csrc/cpu/*_kernels.cpp, optimal_score_nd_flash.cpp, optimal_score_nd_screened.cpp) are compiled
// once per instruction set, each into its own namespace (BIGSTEP_ISA_NS, set by CMake:
// isa_baseline, isa_avx2, isa_avx512 or isa_native).  Each family lists its entry points
// below as KERNEL(name, return type, (parameters)):
//   - TYPED lists: templates on the float type T, instantiated for float and double by
//     BIGSTEP_EXPORT_TYPED(name) at the end of the kernel file that defines them;
//   - PLAIN lists: ordinary functions.
// From these lists come the declarations in every ISA namespace, the table of entry
// points of each ISA (kernel_table.cpp, compiled per ISA) and the members of that table.
// dispatch.cpp only detects the CPU and returns the active ISA's table, so a caller
// writes
//     cpu::kernels<T>().optimal_score_1d(...)   // typed entry, T = float or double
//     cpu::kernels().rf_gram(...)               // plain entry
// Adding a kernel: one line in its family's list, the definition (plus its
// BIGSTEP_EXPORT_TYPED line if typed), and the binding in src/register_<family>.cpp.
//
// Conventions: row-major contiguous arrays (shapes in the comments); per-query noise
// levels as a pointer and a stride (stride 0 broadcasts a scalar).  Kernels never throw
// for data-dependent reasons and never abort; the bindings validate arguments first.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "bigstep/config.hpp"
#include "bigstep/isa.hpp"

namespace bigstep {
struct SamplerSteps;  // bigstep/sampler.hpp
}  // namespace bigstep
namespace bigstep::cpu {
struct SgdChunk;  // bigstep/sgd.hpp
template <class T>
struct SgdNdChunk;  // bigstep/sgd_nd.hpp
}  // namespace bigstep::cpu

// --- optimal-score family (optimal_score_1d_kernels.cpp, optimal_score_nd_*.cpp,
//     optimal_score_vjp_kernels.cpp) ---------------------------------------------------
// optimal_score_1d: x_sorted ascending [n], y [q]; writes whichever of score, log_density,
//   mean, d1 (s*'), d2 (s*'') [q] are non-null.
// optimal_score_nd: y [q, d], x [n, d]; score [q, d], log_density [q], mean [q, d] or null.
// exp_nonpos_array: exp(x) for x <= 0 with the kernels' polynomial (fast_exp.hpp), over
//   an array, threaded: the exp-throughput ceiling the benchmarks compare s* with.
#define BIGSTEP_OPTIMAL_SCORE_TYPED(KERNEL)                                                         \
  KERNEL(optimal_score_1d, void,                                                                    \
    (const T* y, index_t q, const T* x_sorted, index_t n, const T* mu, index_t mu_stride,           \
     const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean, T* d1, T* d2))        \
  KERNEL(optimal_score_nd, void,                                                                    \
    (const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,       \
     const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean))                      \
  KERNEL(exp_nonpos_array, void, (const T* x, T* out, index_t n))

// --- fast Gauss transform family (fgt_kernels.cpp, math and bound in bigstep/fgt.hpp) ----
// The s* family for one noise level (mu, sigma) by the fast Gauss transform; mode 0: the
// FGT where its cost model prefers it to the pairwise kernel, else the pairwise kernel;
// mode 1: the FGT always.  fgt_1d: x_sorted ascending [n], y [q], outputs as
// optimal_score_1d; fgt_nd: d <= 3 (else the pairwise kernel), y [q, d], x [n, d], outputs
// as optimal_score_nd.  stats [8] or null: used FGT, boxes, boxes expanded, targets summed
// directly, largest order, largest bound, estimated cost of the FGT and of the pairwise
// kernel (units of one term of a direct sum).
#define BIGSTEP_FGT_TYPED(KERNEL)                                                                   \
  KERNEL(fgt_1d, void,                                                                              \
    (const T* y, index_t q, const T* x_sorted, index_t n, double mu, double sigma, int mode,        \
     T* score, T* log_density, T* mean, T* d1, T* d2, double* stats))                               \
  KERNEL(fgt_nd, void,                                                                              \
    (const T* y, index_t q, const T* x, index_t n, index_t d, double mu, double sigma, int mode,    \
     T* score, T* log_density, T* mean, double* stats))
// sampler_empirical_fgt: steps st.k0 .. st.k1 - 1 of the fused sampler (sampler family)
//   with s* by the FGT (mode 1), or per step by whichever of the FGT and the fused pairwise
//   loop the cost model prefers (mode 0); d <= 3 (else the pairwise loop); stats[0] += the
//   steps that used the FGT.
#define BIGSTEP_FGT_PLAIN(KERNEL)                                                                   \
  KERNEL(sampler_empirical_fgt, void,                                                               \
    (const SamplerSteps& st, const double* data, index_t n_data, bool one_d, int mode, double* stats))
// optimal_score_vjp_y / optimal_score_vjp_x: the backward pass (bigstep/optimal_score.hpp,
//   vjp): with w_qi = exp(-||y_q - mu_q x_i||^2 / (2 sigma_q^2) - lse_q), y [q, d], x [n, d],
//   lse [q], mean (E[W|y_q]), g, a, b, u [q, d], e, f [q]:
//   vjp_y: out [q, d], out_q = sum_i w_qi (g_q . (x_i - mean_q)) (x_i - mean_q) = Cov(W|y_q) g_q;
//   vjp_x: out [n, d], out_j = sum_q w_qj (a_q + t u_q + (e_q + f_q t) x_j), t = b_q . x_j.
#define BIGSTEP_OPTIMAL_SCORE_PLAIN(KERNEL)                                                         \
  KERNEL(optimal_score_vjp_y, void,                                                                 \
    (const double* y, index_t q, const double* x, index_t n, index_t d, const double* mu,           \
     index_t mu_stride, const double* sigma, index_t sigma_stride, const double* lse,               \
     const double* mean, const double* g, double* out))                                             \
  KERNEL(optimal_score_vjp_x, void,                                                                 \
    (const double* y, index_t q, const double* x, index_t n, index_t d, const double* mu,           \
     index_t mu_stride, const double* sigma, index_t sigma_stride, const double* lse,               \
     const double* a, const double* b, const double* u, const double* e, const double* f,           \
     double* out))

// --- metrics family (metrics_kernels.cpp, math in bigstep/metrics.hpp) -----------------
// gaussian_kernel_sum: sum over all pairs of exp(-||x_i - y_j||^2 / (2 bandwidth^2)) in
//   double, x [n, d], y [m, d]; symmetric: y is x and one triangle of tiles is evaluated.
// nearest_neighbors: the k nearest rows of y [m, d] for each row of x [n, d], ascending,
//   ties to the lower index: dist [n, k], idx [n, k].
#define BIGSTEP_METRICS_TYPED(KERNEL)                                                               \
  KERNEL(gaussian_kernel_sum, double,                                                               \
    (const T* x, index_t n, const T* y, index_t m, index_t d, double bandwidth, bool symmetric))    \
  KERNEL(nearest_neighbors, void,                                                                   \
    (const T* x, index_t n, const T* y, index_t m, index_t d, int k, T* dist, index_t* idx))

// --- random-features family (random_features_kernels.cpp, bigstep/random_features.hpp) -
// rf_gram: over the n n_noise samples y_s = mu x_{s / n_noise} + sigma xi_s (xi_s[k] =
//   normal s d + k of (seed, stream)), features f_i(y) = rho(<w_i, y> / sqrt(d)):
//   K = sum_s f f^T [p, p], R = sum_s f xi_s^T [p, d], *xi2 = sum_s ||xi_s||^2;
//   x [n, d], w [p, d].
// rf_features: out [q, p] = rho(y w^T / sqrt(d)), y [q, d], w [p, d].
#define BIGSTEP_RANDOM_FEATURES_PLAIN(KERNEL)                                                       \
  KERNEL(rf_gram, void,                                                                             \
    (const double* x, index_t n, index_t d, const double* w, index_t p, double mu, double sigma,    \
     index_t n_noise, std::uint64_t seed, std::uint64_t stream, int rho, double* K, double* R,      \
     double* xi2))                                                                                  \
  KERNEL(rf_features, void,                                                                         \
    (const double* y, index_t q, index_t d, const double* w, index_t p, int rho, double* out))

// --- sampler family (sampler_kernels.cpp, bigstep/sampler.hpp) -------------------------
// Steps st.k0 .. st.k1 - 1 of the fused Euler-Maruyama / probability-flow loop, state
// st.x updated in place, with the score of:
//   sampler_empirical: s* of data [n_data, d] (1-D: [n_data] sorted ascending, d = 1);
//   sampler_gaussian: a noised Gaussian, mean [d], eigenvectors vecs [d, d] (columns),
//     eigenvalues lam [d];
//   sampler_relu: a time-conditional ReLU net, w1 [width, d + 1], b1 [width],
//     w2t = W2^T [width, d], b2 [d].
// sampler_normals: the sampler's vectorised normals at counters offset .. offset +
//   count - 1 of (seed, stream): gaussian_noise's values up to a few ulp (fast_normal.hpp).
#define BIGSTEP_SAMPLER_PLAIN(KERNEL)                                                               \
  KERNEL(sampler_empirical, void, (const SamplerSteps& st, const double* data, index_t n_data, bool one_d)) \
  KERNEL(sampler_gaussian, void,                                                                    \
    (const SamplerSteps& st, const double* mean, const double* vecs, const double* lam))            \
  KERNEL(sampler_relu, void,                                                                        \
    (const SamplerSteps& st, const double* w1, const double* b1, const double* w2t,                 \
     const double* b2, index_t width))                                                              \
  KERNEL(sampler_normals, void,                                                                     \
    (std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, double* out, index_t count))

// --- SGD family (sgd_kernels.cpp, bigstep/sgd.hpp; sgd_nd_kernels.cpp, bigstep/sgd_nd.hpp) ---
// sgd_train: one chunk of steps of many 1-D networks trained side by side (SgdChunk).
#define BIGSTEP_SGD_PLAIN(KERNEL) KERNEL(sgd_train, void, (const SgdChunk& c))
// sgd_nd_train: one chunk of steps of many d-D networks (DSM or time-conditional
//   diffusion, SgdNdChunk<T>: parameters in T, data and draws in double; sgd_nd_kernels.cpp).
#define BIGSTEP_SGD_TYPED(KERNEL) KERNEL(sgd_nd_train, void, (const SgdNdChunk<T>& c))

// --- local family (local_kernels.cpp, math in bigstep/local.hpp) ----------------------
// local_posterior_mean: the local (equivariant = false) or equivariant local posterior mean
//   of queries y [q, H, W, C] given training images x [n, H, W, C], windows of half-widths
//   rh, rw (P = 2 r + 1), padding (LocalPadding: zeros or reflect, r <= side - 1); writes
//   whichever of mean (E[y]) and score ((mu E - y) / sigma^2) [q, H, W, C] are non-null.
#define BIGSTEP_LOCAL_TYPED(KERNEL)                                                                 \
  KERNEL(local_posterior_mean, void,                                                                \
    (const T* y, index_t q, const T* x, index_t n, index_t H, index_t W, index_t C, index_t rh,     \
     index_t rw, int padding, bool equivariant, const T* mu, index_t mu_stride, const T* sigma,     \
     index_t sigma_stride, T* mean, T* score))

// --- every family ----------------------------------------------------------------------
#define BIGSTEP_TYPED_KERNELS(KERNEL)                                                               \
  BIGSTEP_OPTIMAL_SCORE_TYPED(KERNEL)                                                               \
  BIGSTEP_FGT_TYPED(KERNEL)                                                                         \
  BIGSTEP_METRICS_TYPED(KERNEL)                                                                     \
  BIGSTEP_LOCAL_TYPED(KERNEL)                                                                       \
  BIGSTEP_SGD_TYPED(KERNEL)
#define BIGSTEP_PLAIN_KERNELS(KERNEL)                                                               \
  BIGSTEP_OPTIMAL_SCORE_PLAIN(KERNEL)                                                               \
  BIGSTEP_RANDOM_FEATURES_PLAIN(KERNEL)                                                             \
  BIGSTEP_SAMPLER_PLAIN(KERNEL)                                                                     \
  BIGSTEP_FGT_PLAIN(KERNEL)                                                                         \
  BIGSTEP_SGD_PLAIN(KERNEL)

namespace bigstep::cpu {

#define BIGSTEP_TABLE_MEMBER(name, ret, params) ret(*name) params = nullptr;
// The typed entry points of one instruction set for one float type.
template <class T>
struct TypedKernels {
  BIGSTEP_TYPED_KERNELS(BIGSTEP_TABLE_MEMBER)
};
// The entry points of one instruction set.
struct Kernels {
  TypedKernels<float> f32;
  TypedKernels<double> f64;
  BIGSTEP_PLAIN_KERNELS(BIGSTEP_TABLE_MEMBER)
};
#undef BIGSTEP_TABLE_MEMBER

// The table of each instruction set compiled in (kernel_table.cpp, per ISA).
#define BIGSTEP_DECLARE_TABLE(ns)                                                                   \
  namespace ns {                                                                                    \
  const Kernels& table();                                                                           \
  }
BIGSTEP_DECLARE_TABLE(isa_baseline)
BIGSTEP_DECLARE_TABLE(isa_avx2)
BIGSTEP_DECLARE_TABLE(isa_avx512)
BIGSTEP_DECLARE_TABLE(isa_native)
#undef BIGSTEP_DECLARE_TABLE

// The active instruction set's table (dispatch.cpp; see isa.hpp for set_isa).
const Kernels& kernels();
template <class T>
const TypedKernels<T>& kernels();
template <>
inline const TypedKernels<float>& kernels<float>() {
  return kernels().f32;
}
template <>
inline const TypedKernels<double>& kernels<double>() {
  return kernels().f64;
}

// --- compiled once (not per instruction set) -------------------------------------------
// Philox streams (random.cpp, bigstep/philox.hpp): element i of (seed, stream) at counter
// offset + i, for i < count.
template <class T>
void gaussian_noise(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, T* out, index_t count);
template <class T>
void uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, T* out, index_t count);

// Exact DSM risk of 1-D two-layer ReLU networks (relu_risk.cpp, bigstep/relu_risk.hpp).
// Sorted kinks t [K], data centres c = mu x [n].  Segment sums over the data, segment
// k = (t_{k-1}, t_k): S [3, K+1]: sum_i E_i[Y^p 1_k], p = 0, 1, 2;
// T [2, K+1]: sum_i E_i[(Y - c_i) Y^p 1_k], p = 0, 1;
// P [2, K]: sum_i N(t_j; c_i, sigma^2) and sum_i z_ij phi(z_ij), z_ij = (t_j - c_i)/sigma.
void relu_segment_moments(const double* t, index_t K, const double* c, index_t n, double sigma,
                          double* S, double* T, double* P);
// Gauss-Newton part of the Hessian, H [P, P], P = 2 width (w2, b) or 3 width (w1, w2, b):
// entries scale * polynomial(w) * sum_i E_i[Y^p 1{neurons l, r active}] from the
// cumulative sums L, U [3, K] (segments k <= j, k > j) and total [3].  cls [width]
// (relu::Class), jpos [width] (sorted kink index), w1, w2, b [width].
void relu_hessian_gauss_newton(const signed char* cls, const index_t* jpos, const double* w1,
                               const double* w2, const double* b, index_t width, const double* L,
                               const double* U, const double* total, index_t K, double scale,
                               bool wrt_all, double* H);

// Build and run-time facts for bigstep.info() (dispatch.cpp).
std::string simd_level();     // instruction set the dispatched kernels run with
std::string compiler();       // compiler id and version
int openmp_max_threads();     // threads the kernels use: set_num_threads' value, else OpenMP's default
void set_num_threads(int n);  // process-wide (every calling thread); n <= 0 restores OpenMP's default

}  // namespace bigstep::cpu

// --- inside a kernel file (compiled per ISA) ---------------------------------------------
#if defined(BIGSTEP_ISA_NS)
namespace bigstep::cpu::BIGSTEP_ISA_NS {
#define BIGSTEP_DECLARE_TYPED(name, ret, params)                                                    \
  template <class T>                                                                                \
  ret name params;
#define BIGSTEP_DECLARE_PLAIN(name, ret, params) ret name params;
BIGSTEP_TYPED_KERNELS(BIGSTEP_DECLARE_TYPED)
BIGSTEP_PLAIN_KERNELS(BIGSTEP_DECLARE_PLAIN)
#undef BIGSTEP_DECLARE_TYPED
#undef BIGSTEP_DECLARE_PLAIN
}  // namespace bigstep::cpu::BIGSTEP_ISA_NS

// Explicit instantiation of a typed kernel for float and double (its signature comes
// from the declaration above), at namespace scope of BIGSTEP_ISA_NS.
#define BIGSTEP_EXPORT_TYPED(name)                                                                  \
  template decltype(name<float>) name<float>;                                                       \
  template decltype(name<double>) name<double>;
#endif
