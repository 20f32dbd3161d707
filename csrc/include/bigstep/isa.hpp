// Run-time instruction-set dispatch for the CPU kernels.
//
// The kernel translation units (csrc/cpu/*_kernels.cpp) are compiled once per
// instruction set with different flags, each into its own namespace
// (BIGSTEP_ISA_NS, set by CMake: isa_baseline, isa_avx2, isa_avx512 or
// isa_native).  csrc/cpu/dispatch.cpp picks one at run time.
#pragma once
#include <cstdint>
#include <string>

#include "bigstep/config.hpp"

namespace bigstep {
struct SamplerSteps;  // bigstep/sampler.hpp
}  // namespace bigstep

namespace bigstep::cpu {

enum class Isa { baseline = 0, avx2 = 1, avx512 = 2, native = 3 };

// The instruction set in use: the best one compiled in and supported by this CPU,
// unless set_isa() chose another.
Isa active_isa();
std::string isa_name(Isa isa);
// Forces an instruction set by name ("baseline", "avx2", "avx512", "native", or
// "auto"); returns false (and changes nothing) if it is not compiled in or not
// supported by this CPU.  For tests and benchmarks.
bool set_isa(const std::string& name);
// Names of the instruction sets compiled in and runnable on this CPU.
std::string available_isas();
// Thread count for the kernels' parallel regions (num_threads clause), process-wide.
int num_threads();
// Work (multiply-adds, exps or elements) below which a kernel runs on the calling thread
// alone (the parallel regions' if clause): starting a team costs ~10 us on an idle
// machine and up to ~0.2 ms while other processes hold the cores, more than such calls.
constexpr double kParallelWork = 65536.0;
inline bool parallel_worth(double work) { return work > kParallelWork; }

#define BIGSTEP_DECLARE_KERNELS(ns)                                                              \
  namespace ns {                                                                                 \
  template <class T>                                                                             \
  void optimal_score_1d(const T* y, index_t q, const T* x_sorted, index_t n, const T* mu,       \
                        index_t mu_stride, const T* sigma, index_t sigma_stride, T* score,       \
                        T* log_density, T* mean, T* d1, T* d2);                                  \
  template <class T>                                                                             \
  void optimal_score_nd(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu,   \
                        index_t mu_stride, const T* sigma, index_t sigma_stride, T* score,       \
                        T* log_density, T* mean);                                                \
  template <class T>                                                                             \
  void exp_nonpos_array(const T* x, T* out, index_t n);                                          \
  template <class T>                                                                             \
  double gaussian_kernel_sum(const T* x, index_t n, const T* y, index_t m, index_t d,            \
                             double bandwidth, bool symmetric);                                  \
  template <class T>                                                                             \
  void nearest_neighbors(const T* x, index_t n, const T* y, index_t m, index_t d, int k,         \
                         T* dist, index_t* idx);                                                 \
  void rf_gram(const double* x, index_t n, index_t d, const double* w, index_t p, double mu,      \
               double sigma, index_t m, std::uint64_t seed, std::uint64_t stream, int rho,       \
               double* K, double* R, double* xi2);                                               \
  void rf_features(const double* y, index_t q, index_t d, const double* w, index_t p, int rho,   \
                   double* out);                                                                 \
  void sampler_empirical(const SamplerSteps& st, const double* data, index_t n_data, bool one_d);      \
  void sampler_gaussian(const SamplerSteps& st, const double* mean, const double* vecs,               \
                        const double* lam);                                                      \
  void sampler_relu(const SamplerSteps& st, const double* w1, const double* b1, const double* w2t,    \
                    const double* b2, index_t m);                                                \
  void sampler_normals(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, double* out,    \
                       index_t count);                                                           \
  template <class T>                                                                             \
  void local_posterior_mean(const T* y, index_t q, const T* x, index_t n, index_t H, index_t W,   \
                            index_t C, index_t rh, index_t rw, int padding, bool equivariant,    \
                            const T* mu, index_t mu_stride, const T* sigma, index_t sigma_stride, \
                            T* mean, T* score);                                                  \
  }

BIGSTEP_DECLARE_KERNELS(isa_baseline)
BIGSTEP_DECLARE_KERNELS(isa_avx2)
BIGSTEP_DECLARE_KERNELS(isa_avx512)
BIGSTEP_DECLARE_KERNELS(isa_native)

}  // namespace bigstep::cpu
