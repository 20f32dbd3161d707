// CPU detection and the active instruction set's kernel table (kernels.hpp).
#include <atomic>
#include <cstdlib>
#include <string>

#include "kernels.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
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

#if defined(__x86_64__) || defined(__i386__)
// The CPU's and the OS's support, from cpuid and xgetbv directly: __builtin_cpu_supports
// needs the compiler runtime's cpu model, which the release wheel's toolchain (zig's
// clang, tools/zig-cxx) does not fill in (every feature reads as absent there).
struct X86Features {
  bool avx2 = false;    // AVX2 + FMA, YMM state enabled by the OS
  bool avx512 = false;  // AVX-512 F, DQ, VL, BW, ZMM state enabled by the OS
};

X86Features x86_features() {
  X86Features f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool ymm = (xcr0_lo & 0x6u) == 0x6u;    // SSE + AVX state
  const bool zmm = (xcr0_lo & 0xe6u) == 0xe6u;  // + opmask, ZMM0-15 upper halves, ZMM16-31
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const bool avx2 = b & (1u << 5), f512 = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30),
             vl = b & (1u << 31);
  f.avx2 = ymm && avx2 && fma;
  f.avx512 = ymm && zmm && f512 && dq && vl && bw;
  return f;
}
#endif

bool supported(Isa isa) {
  if (!compiled(isa)) return false;
#if defined(__x86_64__) || defined(__i386__)
  static const X86Features features = x86_features();
  if (isa == Isa::avx2) return features.avx2;
  if (isa == Isa::avx512) return features.avx512;
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
