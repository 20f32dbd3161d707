// Run-time choice of the per-ISA kernels and the public CPU launchers.
#include <atomic>
#include <cstdlib>
#include <string>

#include "bigstep/isa.hpp"
#include "bigstep/launch.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace bigstep::cpu {
namespace {

bool compiled(Isa isa) {
  switch (isa) {
#ifdef BIGSTEP_HAVE_NATIVE
    case Isa::native: return true;
#endif
#ifdef BIGSTEP_HAVE_AVX2
    case Isa::avx2: return true;
#endif
#ifdef BIGSTEP_HAVE_AVX512
    case Isa::avx512: return true;
#endif
#ifdef BIGSTEP_HAVE_BASELINE
    case Isa::baseline: return true;
#endif
    default: return false;
  }
}

bool supported(Isa isa) {
  if (!compiled(isa)) return false;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (isa == Isa::avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::avx512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
#endif
  return true;
}

Isa best_isa() {
  for (Isa isa : {Isa::native, Isa::avx512, Isa::avx2, Isa::baseline})
    if (supported(isa)) return isa;
  return Isa::baseline;
}

std::atomic<int> g_isa{-1};

}  // namespace

Isa active_isa() {
  int v = g_isa.load();
  if (v < 0) {
    v = static_cast<int>(best_isa());
    g_isa.store(v);
  }
  return static_cast<Isa>(v);
}

std::string isa_name(Isa isa) {
  switch (isa) {
    case Isa::baseline: return "baseline";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::native: return "native";
  }
  return "unknown";
}

bool set_isa(const std::string& name) {
  if (name == "auto") {
    g_isa.store(static_cast<int>(best_isa()));
    return true;
  }
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512, Isa::native}) {
    if (isa_name(isa) == name) {
      if (!supported(isa)) return false;
      g_isa.store(static_cast<int>(isa));
      return true;
    }
  }
  return false;
}

std::string available_isas() {
  std::string out;
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512, Isa::native})
    if (supported(isa)) out += (out.empty() ? "" : ",") + isa_name(isa);
  return out;
}

std::string simd_level() { return isa_name(active_isa()); }

std::string compiler() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

namespace {
std::atomic<int> g_threads{0};  // 0: OpenMP's default
}  // namespace

int num_threads() {
  const int n = g_threads.load();
#ifdef _OPENMP
  return n > 0 ? n : omp_get_max_threads();
#else
  return n > 0 ? n : 1;
#endif
}

int openmp_max_threads() { return num_threads(); }

void set_num_threads(int n) { g_threads.store(n > 0 ? n : 0); }

// Calls FN<T>(args...) in the namespace of the active instruction set.
#define BIGSTEP_DISPATCH(FN, ...)                                                   \
  switch (active_isa()) {                                                         \
    BIGSTEP_CASE_NATIVE(FN, __VA_ARGS__)                                          \
    BIGSTEP_CASE_AVX512(FN, __VA_ARGS__)                                          \
    BIGSTEP_CASE_AVX2(FN, __VA_ARGS__)                                            \
    default: BIGSTEP_CASE_BASELINE(FN, __VA_ARGS__)                               \
  }

#ifdef BIGSTEP_HAVE_NATIVE
#define BIGSTEP_CASE_NATIVE(FN, ...) \
  case Isa::native: isa_native::FN(__VA_ARGS__); return;
#else
#define BIGSTEP_CASE_NATIVE(FN, ...)
#endif
#ifdef BIGSTEP_HAVE_AVX512
#define BIGSTEP_CASE_AVX512(FN, ...) \
  case Isa::avx512: isa_avx512::FN(__VA_ARGS__); return;
#else
#define BIGSTEP_CASE_AVX512(FN, ...)
#endif
#ifdef BIGSTEP_HAVE_AVX2
#define BIGSTEP_CASE_AVX2(FN, ...) \
  case Isa::avx2: isa_avx2::FN(__VA_ARGS__); return;
#else
#define BIGSTEP_CASE_AVX2(FN, ...)
#endif
#ifdef BIGSTEP_HAVE_BASELINE
#define BIGSTEP_CASE_BASELINE(FN, ...) isa_baseline::FN(__VA_ARGS__); return;
#else  // native-only build
#define BIGSTEP_CASE_BASELINE(FN, ...) isa_native::FN(__VA_ARGS__); return;
#endif

template <class T>
void optimal_score_1d(const T* y, index_t q, const T* x_sorted, index_t n, const T* mu, index_t mu_stride,
                      const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean, T* d1, T* d2) {
  BIGSTEP_DISPATCH(optimal_score_1d<T>, y, q, x_sorted, n, mu, mu_stride, sigma, sigma_stride, score,
                   log_density, mean, d1, d2)
}

template <class T>
void optimal_score_nd(const T* y, index_t q, const T* x, index_t n, index_t d, const T* mu, index_t mu_stride,
                      const T* sigma, index_t sigma_stride, T* score, T* log_density, T* mean) {
  BIGSTEP_DISPATCH(optimal_score_nd<T>, y, q, x, n, d, mu, mu_stride, sigma, sigma_stride, score, log_density,
                   mean)
}

template <class T>
void exp_nonpos_array(const T* x, T* out, index_t n) {
  BIGSTEP_DISPATCH(exp_nonpos_array<T>, x, out, n)
}

// Like BIGSTEP_DISPATCH, for kernels that return a value.
#define BIGSTEP_DISPATCH_RETURN(FN, ...)                                            \
  switch (active_isa()) {                                                         \
    BIGSTEP_RCASE_NATIVE(FN, __VA_ARGS__)                                         \
    BIGSTEP_RCASE_AVX512(FN, __VA_ARGS__)                                         \
    BIGSTEP_RCASE_AVX2(FN, __VA_ARGS__)                                           \
    default: BIGSTEP_RCASE_BASELINE(FN, __VA_ARGS__)                              \
  }

#ifdef BIGSTEP_HAVE_NATIVE
#define BIGSTEP_RCASE_NATIVE(FN, ...) \
  case Isa::native: return isa_native::FN(__VA_ARGS__);
#else
#define BIGSTEP_RCASE_NATIVE(FN, ...)
#endif
#ifdef BIGSTEP_HAVE_AVX512
#define BIGSTEP_RCASE_AVX512(FN, ...) \
  case Isa::avx512: return isa_avx512::FN(__VA_ARGS__);
#else
#define BIGSTEP_RCASE_AVX512(FN, ...)
#endif
#ifdef BIGSTEP_HAVE_AVX2
#define BIGSTEP_RCASE_AVX2(FN, ...) \
  case Isa::avx2: return isa_avx2::FN(__VA_ARGS__);
#else
#define BIGSTEP_RCASE_AVX2(FN, ...)
#endif
#ifdef BIGSTEP_HAVE_BASELINE
#define BIGSTEP_RCASE_BASELINE(FN, ...) return isa_baseline::FN(__VA_ARGS__);
#else  // native-only build
#define BIGSTEP_RCASE_BASELINE(FN, ...) return isa_native::FN(__VA_ARGS__);
#endif

template <class T>
double gaussian_kernel_sum(const T* x, index_t n, const T* y, index_t m, index_t d, double bandwidth,
                           bool symmetric) {
  BIGSTEP_DISPATCH_RETURN(gaussian_kernel_sum<T>, x, n, y, m, d, bandwidth, symmetric)
}

template <class T>
void nearest_neighbors(const T* x, index_t n, const T* y, index_t m, index_t d, int k, T* dist, index_t* idx) {
  BIGSTEP_DISPATCH(nearest_neighbors<T>, x, n, y, m, d, k, dist, idx)
}

void rf_gram(const double* x, index_t n, index_t d, const double* w, index_t p, double mu, double sigma,
             index_t m, std::uint64_t seed, std::uint64_t stream, int rho, double* K, double* R, double* xi2) {
  BIGSTEP_DISPATCH(rf_gram, x, n, d, w, p, mu, sigma, m, seed, stream, rho, K, R, xi2)
}

void rf_features(const double* y, index_t q, index_t d, const double* w, index_t p, int rho, double* out) {
  BIGSTEP_DISPATCH(rf_features, y, q, d, w, p, rho, out)
}

void sampler_empirical(const SamplerSteps& st, const double* data, index_t n_data, bool one_d) {
  BIGSTEP_DISPATCH(sampler_empirical, st, data, n_data, one_d)
}

void sampler_gaussian(const SamplerSteps& st, const double* mean, const double* vecs, const double* lam) {
  BIGSTEP_DISPATCH(sampler_gaussian, st, mean, vecs, lam)
}

void sampler_relu(const SamplerSteps& st, const double* w1, const double* b1, const double* w2t, const double* b2,
                  index_t m) {
  BIGSTEP_DISPATCH(sampler_relu, st, w1, b1, w2t, b2, m)
}

void sampler_normals(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, double* out, index_t count) {
  BIGSTEP_DISPATCH(sampler_normals, seed, stream, offset, out, count)
}

template <class T>
void local_posterior_mean(const T* y, index_t q, const T* x, index_t n, index_t H, index_t W, index_t C,
                          index_t rh, index_t rw, int padding, bool equivariant, const T* mu, index_t mu_stride,
                          const T* sigma, index_t sigma_stride, T* mean, T* score) {
  BIGSTEP_DISPATCH(local_posterior_mean<T>, y, q, x, n, H, W, C, rh, rw, padding, equivariant, mu, mu_stride,
                   sigma, sigma_stride, mean, score)
}

#define BIGSTEP_INSTANTIATE(T)                                                                                 \
  template void optimal_score_1d<T>(const T*, index_t, const T*, index_t, const T*, index_t, const T*, index_t, \
                                    T*, T*, T*, T*, T*);                                                       \
  template void optimal_score_nd<T>(const T*, index_t, const T*, index_t, index_t, const T*, index_t, const T*, \
                                    index_t, T*, T*, T*);                                                      \
  template void exp_nonpos_array<T>(const T*, T*, index_t);                                              \
  template double gaussian_kernel_sum<T>(const T*, index_t, const T*, index_t, index_t, double, bool);   \
  template void nearest_neighbors<T>(const T*, index_t, const T*, index_t, index_t, int, T*, index_t*);  \
  template void local_posterior_mean<T>(const T*, index_t, const T*, index_t, index_t, index_t, index_t,  \
                                        index_t, index_t, int, bool, const T*, index_t, const T*, index_t, T*, T*);
BIGSTEP_INSTANTIATE(float)
BIGSTEP_INSTANTIATE(double)

}  // namespace bigstep::cpu
