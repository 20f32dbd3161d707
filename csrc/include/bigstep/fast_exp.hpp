// exp(x) for x <= 0 as a branch-free polynomial, so that loops over it vectorise
// (no libm call).  Range reduction x = k ln2 + r, |r| <= ln2/2 (Cody-Waite, two-part
// ln2), exp(r) by a near-minimax polynomial (Chebyshev-node fit in 40-digit
// arithmetic; max relative error 4e-18 for double, 2.5e-9 for float before
// rounding), 2^k assembled in the exponent bits.  Measured against mpmath: within
// 2 ulp over [-700, 0] (tests/test_fast_exp.py).  Arguments below the clamp give a
// tiny positive normal number instead of 0; callers only add such terms to sums
// that are >= 1, so they are harmless.
//
// The same template serves scalars (V = double/float, CPU and CUDA) and GCC vector
// extension types (V = a vector of double/float, csrc/cpu/simd.hpp): only
// arithmetic, one select and a bit cast.
#pragma once
#include <cstring>

#include "bigstep/config.hpp"

namespace bigstep {

namespace detail {
template <class To, class From>
BIGSTEP_HD To bit_cast(const From& v) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
  To out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}
}  // namespace detail

// V: double or a vector of double; I: std::int64_t or the matching integer vector.
template <class V, class I>
BIGSTEP_HD V exp_nonpos_f64(V x) {
  const V lo = V{} - 700.0;         // exp(-700) ~ 1e-304, still normal
  x = lo > x ? lo : x;
  const V magic = V{} + 6755399441055744.0;  // 1.5 * 2^52: rounds to nearest integer
  const V t = x * 1.4426950408889634 + magic;
  const V k = t - magic;
  V r = x - k * 0.693147180559890330187;  // ln2 high part (exact product for |k| < 2^11)
  r = r - k * 5.4979230187083711552e-14;    // ln2 low part
  // p = 1 + r (c1 + r (c2 + r h)), h = c3 + c4 r + ... + c11 r^8 by Estrin's scheme
  // (pairs, then r^2, r^4): a dependency chain of 7 operations instead of Horner's 11,
  // so that more exps overlap in flight, while the terms that set the rounding (degrees
  // 0..3) keep Horner's order.
  const V r2 = r * r;
  const V r4 = r2 * r2;
  const V a9 = (2.7557240918578969823e-6 + 2.7632639639041029749e-7 * r) + 2.5110037605963777712e-8 * r2;
  const V a7 = 1.9841269890047113707e-4 + 2.4801485482328492419e-5 * r;
  const V a5 = 8.3333333333196006109e-3 + 1.3888888952314774652e-3 * r;
  const V a3 = 1.6666666666666680806e-1 + 4.1666666666488095495e-2 * r;
  const V h = (a3 + a5 * r2) + (a7 + a9 * r2) * r4;
  V p = h * r + 5.0000000000000183855e-1;
  p = p * r + 9.9999999999999999976e-1;
  p = p * r + 1.0;
  // the low bits of t hold k + 2^51; (k + 1023) << 52 = 2^k.  The mask keeps the
  // biased exponent (k + 1023 < 2^11) and drops the bits the shift would push past
  // the sign bit (a signed overflow, undefined behaviour; UBSan, tools/sanitize.sh)
  const I bits = ((detail::bit_cast<I>(t) + 1023) & 0x7FF) << 52;
  return p * detail::bit_cast<V>(bits);
}

// V: float or a vector of float; I: std::int32_t or the matching integer vector.
template <class V, class I>
BIGSTEP_HD V exp_nonpos_f32(V x) {
  const V lo = V{} - 87.0f;  // exp(-87) ~ 1.6e-38, still normal
  x = x < lo ? lo : x;
  const V magic = V{} + 12582912.0f;  // 1.5 * 2^23
  const V t = x * 1.44269504f + magic;
  const V k = t - magic;
  V r = x - k * 0.693145752f;  // ln2 high part (exact product for |k| < 2^7)
  r = r - k * 1.42860682e-6f;  // ln2 low part
  V p = V{} + 1.3941108433972674608e-3f;
  p = p * r + 8.375126398153335682e-3f;
  p = p * r + 4.1666352896775156786e-2f;
  p = p * r + 1.6666415514653275427e-1f;
  p = p * r + 5.0000000471177576744e-1f;
  p = p * r + 1.0000000377162138425f;
  p = p * r + 1.0f;
  // low bits of t hold k + 2^22; the mask as in exp_nonpos_f64 (k + 127 < 2^8)
  const I bits = ((detail::bit_cast<I>(t) + 127) & 0xFF) << 23;
  return p * detail::bit_cast<V>(bits);
}

BIGSTEP_HD double exp_nonpos(double x) { return exp_nonpos_f64<double, std::int64_t>(x); }
BIGSTEP_HD float exp_nonpos(float x) { return exp_nonpos_f32<float, std::int32_t>(x); }

}  // namespace bigstep
