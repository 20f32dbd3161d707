"""Low-level helpers for the Numba mirrors: bit casts, fused multiply-add, casts.

These are the Numba counterparts of the ``std::memcpy`` bit casts and ``std::fma``
used by the shared C++ headers (csrc/include/bigstep/*.hpp).  Each one compiles to
a single LLVM instruction, so loops that use them still vectorise.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic


@intrinsic
def int64_as_float64(typingctx, bits):
    """Reinterpret the bits of an int64 as a float64 (std::memcpy in fast_exp.hpp)."""
    if not isinstance(bits, types.Integer) or bits.bitwidth != 64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(bits), codegen


@intrinsic
def float64_as_int64(typingctx, value):
    """Reinterpret the bits of a float64 as an int64."""
    if value != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(value), codegen


@intrinsic
def int32_as_float32(typingctx, bits):
    """Reinterpret the bits of an int32 as a float32."""
    if not isinstance(bits, types.Integer) or bits.bitwidth != 32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def float32_as_int32(typingctx, value):
    """Reinterpret the bits of a float32 as an int32."""
    if value != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(value), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma, std::fma), for float64 arguments."""
    if not (a == b == c == types.float64):
        return None

    def codegen(context, builder, sig, args):
        return builder.fma(*args)

    return types.float64(a, b, c), codegen


@intrinsic
def as_dtype_of(typingctx, arr, value):
    """``value`` converted to the element type of array ``arr`` (static_cast<T>).

    Lets one kernel body serve float32 and float64 arrays without Python-float
    literals promoting float32 arithmetic to float64.
    """
    if not isinstance(arr, types.Array) or not isinstance(value, (types.Number, types.Boolean)):
        return None
    sig = arr.dtype(arr, value)

    def codegen(context, builder, sig, args):
        return context.cast(builder, args[1], sig.args[1], sig.return_type)

    return sig, codegen
