// Portable SIMD through GCC/Clang vector extensions: the width follows the
// instruction set a kernel translation unit is compiled for (16 bytes baseline,
// 32 with AVX, 64 with AVX-512), the arithmetic is written once.
#pragma once
#include <cstdint>
#include <cstring>

#include "bigstep/fast_exp.hpp"

namespace bigstep::cpu::simd {

#if defined(__AVX512F__)
constexpr int kBytes = 64;
#elif defined(__AVX__)
constexpr int kBytes = 32;
#else
constexpr int kBytes = 16;
#endif

template <class T>
struct Traits;
template <>
struct Traits<double> {
  typedef double V __attribute__((vector_size(kBytes)));
  typedef std::int64_t I __attribute__((vector_size(kBytes)));
  static V exp_nonpos(V x) { return exp_nonpos_f64<V, I>(x); }
};
template <>
struct Traits<float> {
  typedef float V __attribute__((vector_size(kBytes)));
  typedef std::int32_t I __attribute__((vector_size(kBytes)));
  static V exp_nonpos(V x) { return exp_nonpos_f32<V, I>(x); }
};

template <class T>
using vec = typename Traits<T>::V;

template <class T>
constexpr int width = kBytes / static_cast<int>(sizeof(T));

template <class T>
inline vec<T> load(const T* p) {
  vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// An unaligned store through a vector type of element alignment (a memcpy from a local
// vector would make the compiler keep that vector in memory, not in a register).
template <class T>
inline void store(T* p, vec<T> v) {
  typedef vec<T> U __attribute__((aligned(sizeof(T))));
  *reinterpret_cast<U*>(p) = v;
}

// s - 0 (not 0 + s, which is not s for s = -0.0 and so is not folded away).
template <class T>
inline vec<T> broadcast(T s) {
  return s - vec<T>{};
}

template <class T>
inline T hsum(vec<T> v) {
  T s = 0;
  for (int i = 0; i < width<T>; ++i) s += v[i];
  return s;
}

}  // namespace bigstep::cpu::simd
