// exp(x) for x <= 0 as a branch-free polynomial, so that loops over it vectorise
// (no libm call).  Range reduction x = k ln2 + r, |r| <= ln2/2 (Cody-Waite, two-part
// ln2), exp(r) by a near-minimax polynomial (Chebyshev-node fit in 40-digit
// arithmetic; max relative error 4e-18 for double, 2.5e-9 for float before
// rounding), 2^k assembled in the exponent bits.  Arguments below the clamp give a
// tiny positive normal number instead of 0; callers only add such terms to sums
// that are >= 1, so they are harmless.
#pragma once
#include <cstring>

#include "bigstep/config.hpp"

namespace bigstep {

BIGSTEP_HD double exp_nonpos(double x) {
  x = x < -700.0 ? -700.0 : x;  // exp(-700) ~ 1e-304, still normal
  const double magic = 6755399441055744.0;  // 1.5 * 2^52: rounds to nearest integer
  double t = x * 1.4426950408889634 + magic;
  double k = t - magic;
  double r = x - k * 0.693147180559890330187;  // ln2 high part (exact product)
  r = r - k * 5.4979230187083711552e-14;         // ln2 low part
  double p = 2.5110037605963777712e-8;
  p = p * r + 2.7632639639041029749e-7;
  p = p * r + 2.7557240918578969823e-6;
  p = p * r + 2.4801485482328492419e-5;
  p = p * r + 1.9841269890047113707e-4;
  p = p * r + 1.3888888952314774652e-3;
  p = p * r + 8.3333333333196006109e-3;
  p = p * r + 4.1666666666488095495e-2;
  p = p * r + 1.6666666666666680806e-1;
  p = p * r + 5.0000000000000183855e-1;
  p = p * r + 9.9999999999999999976e-1;
  p = p * r + 1.0;
  std::int64_t bits;
  std::memcpy(&bits, &t, sizeof bits);  // low bits of t hold k + 2^51
  bits = static_cast<std::int64_t>(static_cast<std::uint64_t>(bits + 1023) << 52);
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

BIGSTEP_HD float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;  // exp(-87) ~ 1.6e-38, still normal
  const float magic = 12582912.0f;  // 1.5 * 2^23
  float t = x * 1.44269504f + magic;
  float k = t - magic;
  float r = x - k * 0.693145752f;  // ln2 high part (exact product for |k| < 2^8)
  r = r - k * 1.42860682e-6f;      // ln2 low part
  float p = 1.3941108433972674608e-3f;
  p = p * r + 8.375126398153335682e-3f;
  p = p * r + 4.1666352896775156786e-2f;
  p = p * r + 1.6666415514653275427e-1f;
  p = p * r + 5.0000000471177576744e-1f;
  p = p * r + 1.0000000377162138425f;
  p = p * r + 1.0f;
  std::int32_t bits;
  std::memcpy(&bits, &t, sizeof bits);  // low bits of t hold k + 2^22
  bits = static_cast<std::int32_t>(static_cast<std::uint32_t>(bits + 127) << 23);
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace bigstep
