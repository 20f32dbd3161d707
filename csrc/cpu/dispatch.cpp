// CPU detection and the active instruction set's kernel table (kernels.hpp).
#include <atomic>
#include <cstdlib>
#include <string>

#include "kernels.hpp"

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

const Kernels& kernels() {
  switch (active_isa()) {
#ifdef BIGSTEP_HAVE_NATIVE
    case Isa::native: return isa_native::table();
#endif
#ifdef BIGSTEP_HAVE_AVX512
    case Isa::avx512: return isa_avx512::table();
#endif
#ifdef BIGSTEP_HAVE_AVX2
    case Isa::avx2: return isa_avx2::table();
#endif
    default:
#ifdef BIGSTEP_HAVE_BASELINE
      return isa_baseline::table();
#else  // native-only build
      return isa_native::table();
#endif
  }
}

}  // namespace bigstep::cpu
