// Branch-free log, cos and sin for Box-Muller normals, so that loops over them vectorise
// (no libm call).  Used by the fused sampler (csrc/cpu/sampler_kernels.cpp), whose
// normals must equal bigstep.gaussian_noise (libm log/cos/sin, philox.hpp box_muller) up to
// rounding: these functions are fdlibm's algorithms (as in musl), accurate to < 1 ulp,
// so a normal differs from gaussian_noise's by a few ulp at most
// (tests/test_sampler.py::test_fast_normals_match_gaussian_noise).
//
//   log: x = 2^k m, m in [sqrt(2)/2, sqrt(2)), f = m - 1, s = f/(2 + f),
//        log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)), R the degree-7 fdlibm polynomial.
//   cos and sin of 2 pi u, 0 < u < 1: x = 2 pi u rounded as libm's argument, k = round(x 2/pi),
//        x - k pi/2 as a pair (y0, y1) with pi/2 in 33 + 53 bits (exact first product,
//        Fast2Sum tail), then fdlibm's kernel cos and sin, swapped and signed by quadrant.  Since
//        u = (w + 1/2) 2^-32, |x - k pi/2| >= 7e-10, so the reduction keeps the full
//        relative accuracy.
//
// V is double or a GCC vector of double; U the matching std::uint64_t type (lanes of
// the same count).  Only arithmetic, selects and bit casts, as fast_exp.hpp.
#pragma once
#include <cstdint>

#include "bigstep/config.hpp"
#include "bigstep/fast_exp.hpp"

namespace bigstep {

// log(x) for positive normal finite x (the uniforms of Box-Muller, in [2^-33, 1)).
template <class V, class U>
BIGSTEP_HD V log_positive(V x) {
  U ix = detail::bit_cast<U>(x);
  ix = ix + (0x3ff0000000000000ull - 0x3fe6a09e667f3bcdull);  // m >= sqrt(2)/2 moves k up by one
  const U biased = ix >> 52;                                  // k + 1023
  ix = (ix & 0x000fffffffffffffull) + 0x3fe6a09e667f3bcdull;  // m in [sqrt(2)/2, sqrt(2))
  const V k = detail::bit_cast<V>(biased | 0x4330000000000000ull) - (4503599627370496.0 + 1023.0);
  const V f = detail::bit_cast<V>(ix) - 1.0;
  const V hfsq = 0.5 * f * f;
  const V s = f / (2.0 + f);
  const V z = s * s;
  const V w = z * z;
  const V t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
  const V t2 = z * (6.666666666666735130e-01 +
                    w * (2.857142874366239149e-01 + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
  const V R = t2 + t1;
  return s * (hfsq + R) + k * 1.90821492927058770002e-10 - hfsq + f + k * 6.93147180369123816490e-01;
}

// fdlibm kernel cos on [-pi/4, pi/4]: x + y is the argument (y the tail).
template <class V>
BIGSTEP_HD V kernel_cos(V x, V y) {
  const V z = x * x;
  const V w = z * z;
  const V r = z * (4.16666666666666019037e-02 + z * (-1.38888888888741095749e-03 + z * 2.48015872894767294178e-05)) +
              w * w * (-2.75573143513906633035e-07 + z * (2.08757232129817482790e-09 + z * -1.13596475577881948265e-11));
  const V hz = 0.5 * z;
  const V one_minus = 1.0 - hz;
  return one_minus + (((1.0 - one_minus) - hz) + (z * r - x * y));
}

// fdlibm kernel sin on [-pi/4, pi/4] with tail y.
template <class V>
BIGSTEP_HD V kernel_sin(V x, V y) {
  const V z = x * x;
  const V w = z * z;
  const V r = 8.33333333332248946124e-03 + z * (-1.98412698298579493134e-04 + z * 2.75573137070700676789e-06) +
              z * w * (-2.50507602534068634195e-08 + z * 1.58969099521155010221e-10);
  const V v = z * x;
  return x - ((z * (0.5 * y - v * r) - y) - v * -1.66666666666666324348e-01);
}

// cos(x) and sin(x) for x = 2 pi u rounded, 0 < u < 1 (so 0 < x < 2 pi).
template <class V, class U>
BIGSTEP_HD void sincos_turn(V x, V& cos_x, V& sin_x) {
  const V magic = V{} + 6755399441055744.0;  // 1.5 * 2^52: rounds to nearest integer
  const V t = x * 6.36619772367581382433e-01 + magic;  // x 2/pi
  const V k = t - magic;                               // 0 .. 4
  const U quadrant = detail::bit_cast<U>(t) & 3ull;
  const V z = x - k * 1.57079632673412561417e+00;      // exact: 33-bit pi/2 part, Sterbenz
  const V tail = k * 6.07710050650619224932e-11;       // the rest of pi/2
  const V y0 = z - tail;
  const V y1 = (z - y0) - tail;                        // |z| > |tail|: Fast2Sum
  const V c = kernel_cos(y0, y1);
  const V s = kernel_sin(y0, y1);
  // quadrant 0: (c, s), 1: (-s, c), 2: (-c, -s), 3: (s, -c)
  const auto odd = (quadrant & 1ull) != 0ull;
  const V cos_abs = odd ? s : c;
  const V sin_abs = odd ? c : s;
  cos_x = ((quadrant == 1ull) | (quadrant == 2ull)) ? V{} - cos_abs : cos_abs;
  sin_x = quadrant >= 2ull ? V{} - sin_abs : sin_abs;
}

// Uniform in (0, 1) from a 32-bit word held in a 64-bit lane: (w + 0.5) 2^-32, as
// philox.hpp u01_open (exact in both).
template <class V, class U>
BIGSTEP_HD V u01_open_lanes(U w) {
  return (detail::bit_cast<V>(w | 0x4330000000000000ull) - 4503599627370496.0 + 0.5) * 2.3283064365386963e-10;
}

// Box-Muller, both branches, on two words: r cos(2 pi u2) and r sin(2 pi u2),
// r = sqrt(-2 log u1), as philox.hpp box_muller.  sqrt_fn: the correctly rounded square
// root of V (an intrinsic for vectors).
template <class V, class U, class Sqrt>
BIGSTEP_HD void box_muller_fast(U w1, U w2, Sqrt sqrt_fn, V& z_cos, V& z_sin) {
  const V radius = sqrt_fn(-2.0 * log_positive<V, U>(u01_open_lanes<V, U>(w1)));
  V c, s;
  sincos_turn<V, U>(6.283185307179586 * u01_open_lanes<V, U>(w2), c, s);
  z_cos = radius * c;
  z_sin = radius * s;
}

}  // namespace bigstep
