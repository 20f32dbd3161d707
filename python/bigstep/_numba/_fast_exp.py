"""exp(x) for x <= 0 as a branch-free polynomial: mirror of csrc/include/bigstep/fast_exp.hpp.

Range reduction x = k ln2 + r, |r| <= ln2/2 (Cody-Waite, two-part ln2), exp(r) by a
near-minimax polynomial (max relative error 4e-18 for double, 2.5e-9 for float before
rounding), 2^k assembled in the exponent bits.  Arguments below the clamp give a tiny
positive normal number instead of 0; callers only add such terms to sums that are
>= 1.  No libm call, so the loops that use it vectorise (Numba's math.exp is a scalar
call).  ``exp_nonpos(x)`` dispatches on the type of x (float32 or float64).
"""

from __future__ import annotations

import numpy as np
from numba.core import types
from numba.extending import overload

from . import jit
from ._intrinsics import float32_as_int32, float64_as_int64, int32_as_float32, int64_as_float64

# float64 constants
_CLAMP64 = -700.0  # exp(-700) ~ 1e-304, still normal
_MAGIC64 = 6755399441055744.0  # 1.5 * 2^52: rounds to nearest integer
_LOG2E64 = 1.4426950408889634
_LN2_HI64 = 0.693147180559890330187  # ln2 high part (exact product)
_LN2_LO64 = 5.4979230187083711552e-14  # ln2 low part
_P64 = (
    2.5110037605963777712e-8,
    2.7632639639041029749e-7,
    2.7557240918578969823e-6,
    2.4801485482328492419e-5,
    1.9841269890047113707e-4,
    1.3888888952314774652e-3,
    8.3333333333196006109e-3,
    4.1666666666488095495e-2,
    1.6666666666666680806e-1,
    5.0000000000000183855e-1,
    9.9999999999999999976e-1,
    1.0,
)
_C64_0, _C64_1, _C64_2, _C64_3, _C64_4, _C64_5, _C64_6, _C64_7, _C64_8, _C64_9, _C64_10, _C64_11 = _P64

# float32 constants (np.float32 globals are float32 constants to Numba)
_CLAMP32 = np.float32(-87.0)  # exp(-87) ~ 1.6e-38, still normal
_MAGIC32 = np.float32(12582912.0)  # 1.5 * 2^23
_LOG2E32 = np.float32(1.44269504)
_LN2_HI32 = np.float32(0.693145752)  # ln2 high part (exact product for |k| < 2^8)
_LN2_LO32 = np.float32(1.42860682e-6)  # ln2 low part
_C32_0 = np.float32(1.3941108433972674608e-3)
_C32_1 = np.float32(8.375126398153335682e-3)
_C32_2 = np.float32(4.1666352896775156786e-2)
_C32_3 = np.float32(1.6666415514653275427e-1)
_C32_4 = np.float32(5.0000000471177576744e-1)
_C32_5 = np.float32(1.0000000377162138425)
_C32_6 = np.float32(1.0)


@jit("float64(float64)", fastmath={"contract"})
def exp_nonpos_f64(x):
    """exp(x) for x <= 0 in double (fast_exp.hpp, exp_nonpos(double))."""
    x = _CLAMP64 if x < _CLAMP64 else x
    t = x * _LOG2E64 + _MAGIC64
    k = t - _MAGIC64
    r = x - k * _LN2_HI64
    r = r - k * _LN2_LO64
    # p = 1 + r (c1 + r (c2 + r h)), h by Estrin's scheme (fast_exp.hpp says why)
    r2 = r * r
    r4 = r2 * r2
    a9 = (_C64_2 + _C64_1 * r) + _C64_0 * r2
    a7 = _C64_4 + _C64_3 * r
    a5 = _C64_6 + _C64_5 * r
    a3 = _C64_8 + _C64_7 * r
    h = (a3 + a5 * r2) + (a7 + a9 * r2) * r4
    p = h * r + _C64_9
    p = p * r + _C64_10
    p = p * r + _C64_11
    # low bits of t hold k + 2^51; shifting by 52 keeps k + 1023 in the exponent field (the
    # C++ masks to 11 bits first; here the shift wraps the higher bits out, the same result)
    bits = (float64_as_int64(t) + 1023) << 52
    return p * int64_as_float64(bits)


@jit("float32(float32)", fastmath={"contract"})
def exp_nonpos_f32(x):
    """exp(x) for x <= 0 in float (fast_exp.hpp, exp_nonpos(float))."""
    x = _CLAMP32 if x < _CLAMP32 else x
    t = x * _LOG2E32 + _MAGIC32
    k = t - _MAGIC32
    r = x - k * _LN2_HI32
    r = r - k * _LN2_LO32
    p = _C32_0
    p = p * r + _C32_1
    p = p * r + _C32_2
    p = p * r + _C32_3
    p = p * r + _C32_4
    p = p * r + _C32_5
    p = p * r + _C32_6
    # low bits of t hold k + 2^22; shifting by 23 keeps k + 127 in the exponent field
    bits = np.int32((np.int64(float32_as_int32(t)) + 127) << 23)
    return p * int32_as_float32(bits)


def exp_nonpos(x):
    """exp(x) for x <= 0 (float32 or float64, result of the same type); Numba-only."""
    raise NotImplementedError("exp_nonpos is only callable from Numba-compiled code")


@overload(exp_nonpos)
def _exp_nonpos_overload(x):
    if x == types.float64:
        return lambda x: exp_nonpos_f64(x)
    if x == types.float32:
        return lambda x: exp_nonpos_f32(x)
    return None
