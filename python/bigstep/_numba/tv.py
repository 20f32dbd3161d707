"""The compiled loop of :func:`bigstep.theory.tv_weight`: pi at each node as the sum of
its linear pieces integrated against the Gaussian (see :mod:`bigstep.theory.tv`)."""

from __future__ import annotations

import math

import numpy as np

from . import jit

_INV_SQRT_2PI = 0.39894228040143267794
_INV_SQRT_2 = 0.70710678118654752440
_REACH = 40.0  # pieces further than 40 sigma from y contribute < 1e-348 of their size


@jit()
def gauss_mass(ul, ur):
    """P(ul < Z < ur) for ul <= ur, Z ~ N(0, 1), from the tail that avoids cancellation."""
    if ul >= 0.0:
        return 0.5 * (math.erfc(ul * _INV_SQRT_2) - math.erfc(ur * _INV_SQRT_2))
    if ur <= 0.0:
        return 0.5 * (math.erfc(-ur * _INV_SQRT_2) - math.erfc(-ul * _INV_SQRT_2))
    return 1.0 - 0.5 * (math.erfc(-ul * _INV_SQRT_2) + math.erfc(ur * _INV_SQRT_2))


@jit()
def weight_kernel(anchor, t, l, r, gl, gr, lo, hi, sigma, out):
    """pi at the nodes anchor + t: sum over the pieces within 40 sigma of the node, each
    piece's offsets l - anchor, r - anchor rounded once per (anchor, piece)."""
    for q in range(t.shape[0]):
        aq = anchor[q]
        tq = t[q]
        yq = aq + tq
        if yq != yq:
            out[q] = math.nan
            continue
        if yq < lo or yq > hi:
            out[q] = 0.0
            continue
        a = np.searchsorted(r, yq - _REACH * sigma)
        b = np.searchsorted(l, yq + _REACH * sigma)
        acc = 0.0
        for p in range(a, b):
            width = r[p] - l[p]
            if width <= 0.0:
                continue
            dl = (l[p] - aq) - tq          # l - y
            dr = (r[p] - aq) - tq          # r - y
            slope = (gr[p] - gl[p]) / width
            cval = gl[p] - slope * dl      # the piece's line at y
            ul = dl / sigma
            ur = dr / sigma
            acc += cval * gauss_mass(ul, ur) + slope * sigma * _INV_SQRT_2PI * (
                math.exp(-0.5 * ul * ul) - math.exp(-0.5 * ur * ur))
        out[q] = acc
