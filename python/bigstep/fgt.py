"""The fast Gauss transform (FGT) behind ``method="fgt"`` of the s* family, d <= 3.

With h = sqrt(2) sigma, sources Z_i = mu x_i / h and targets Y = y / h, every weight of s*
is a Gaussian, exp(-|y - mu x_i|^2 / (2 sigma^2)) = exp(-|Y - Z_i|^2), so the sums behind
``s*``, log p, E[W|y] and (1-D) ``s*'``, ``s*''`` are Gauss transforms.  Targets are grouped into
boxes; about the centre c of a box, shifted by the box's own dominant exponent
(rho = the distance from c to the nearest source z*),

    sum_i exp(-|Y - Z_i|^2) = exp(-|t|^2 - rho^2) F(t),   t = Y - c,
    F(t) = sum_i w_i exp(2 t.s_i),   s_i = Z_i - c,   w_i = exp(-(|s_i|^2 - rho^2)) <= 1,

and F is replaced by its Taylor polynomial of total degree P; the posterior moments about
c are its derivatives, E[s] = grad F / (2F) (1-D: E[s^k] = F^(k) / (2^k F)).

The order P of each box comes from a rigorous bound of the truncation error relative to
the box's own sum (not to sum_i |q_i|): source i contributes at most
f(|s_i|) = |s_i|^k (2 tau |s_i|)^(P-k+1)/(P-k+1)! exp(-max(|s_i| - tau, 0)^2) to the error of
the k-th moment sum (tau: the half-diagonal of the box's targets), and the sum is at least
sum_i exp(-(|s_i| + tau)^2); both are evaluated over the exact distances of the sources
within a cut-off radius, binned in 64 shells per box, plus a bound for those beyond.  P is
the smallest order whose bound is below 1.1e-16 (float64; 9.3e-10 for float32 inputs,
computed in double), provided the rounding amplification (the sum of the magnitudes of F's
terms over its value, at most 32) stays small.  Boxes without such an order -- far from
the data, where exp(2 t.s) varies by many orders across the box, or with sums that
underflow -- and boxes whose few targets make it cheaper are summed directly, per target
about its own nearest source with logits in the product form -u.(u - 2e) <= 0: the
relative accuracy holds per query, 1e4 sigma away from the data too.

Derivatives (1-D, ``optimal_score_derivatives``): ``s*'`` and ``s*''`` come from the raw
moments E[s^2], E[s^3] about the box centre, so their error is absolute, ~1e-14 in the
posterior's central moments in h-units (``|error of s*'| <~ 1e-13 / sigma^2``, of ``s*''``
``<~ 1e-13 / sigma^3``),
not relative to those moments where the posterior sits on one data point (Var W ~ 0); boxes
more than one h-unit from the data are summed directly.  ``method="auto"`` therefore keeps
the derivatives on the pairwise kernel; ``method="fgt"`` gives them with that guarantee.

Cost model and ``method="auto"``: a box costs n_in (1 + 0.12 C(P + d, d)) to expand (n_in:
the sources within its cut-off) plus 0.35 C(P + d, d) per target and output channel to
evaluate, or n_in per target summed directly; "auto" runs the FGT when the sum over boxes
is below the pairwise kernel's estimated cost (1-D: each query's window of non-underflowing
terms; d-D: 1.6 q n) and the pairwise kernels otherwise -- small sigma relative to the
data's spread (the windowed 1-D kernel is then cheaper), few queries, d > 3, or a noise
level per query.  See docs/fgt.md for the derivation and measured speed.

:func:`fgt_plan` reports the plan of one call (whether the FGT runs, boxes, orders,
bound, estimated costs).
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend
from ._arrays import prepare, result_dtype
from ._validate import noise_level, queries, training_data

__all__ = ["fgt_plan", "METHODS"]

METHODS = ("auto", "pairwise", "fgt")
"""The values of ``method=`` of the ``s*`` family and of :class:`bigstep.EmpiricalScore`."""
_MODE = {"auto": 0, "fgt": 1}
_SMALL = 131072.0  # q n at or below which "auto" runs the pairwise kernel without planning
_STATS = ("used_fgt", "boxes", "boxes_expanded", "targets_direct", "max_order", "max_bound", "cost_fgt",
          "cost_pairwise")


def check_method(method) -> str:
    """method must be one of METHODS."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    return method


def _impl(name: str):
    """The fgt kernels of backend ``name``, or None where it has none (cuda, torch)."""
    if name not in _backend.backends("fgt"):
        return None
    return _backend.kernels("fgt", name)


def _groups(mu: np.ndarray, sigma: np.ndarray, q: int):
    """Row indices sharing one noise level, with that level: [(rows or None, mu, sigma)]."""
    if mu.shape[0] == 1 and sigma.shape[0] == 1:
        return [(None, float(mu[0]), float(sigma[0]))]
    pairs = np.stack([np.broadcast_to(mu, (q,)), np.broadcast_to(sigma, (q,))], axis=1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    return [(np.flatnonzero(inv == g), float(uniq[g, 0]), float(uniq[g, 1])) for g in range(uniq.shape[0])]


def _windows_cheap(q: int, xs, mu: float, sigma: float) -> bool:
    """1-D, before planning: whether the pairwise kernel's windows (the non-underflowing
    terms, |y - mu x| <= sqrt(745.5) h) hold so few points that it costs less than the FGT's
    least work, ~250 units per query and point (measured; the plan's own estimate needs
    O(q) boxes of memory, which small sigma would make one per query)."""
    n = xs.shape[0]
    extent = mu * (float(xs[-1]) - float(xs[0])) / (math.sqrt(2.0) * sigma)
    frac = 1.0 if extent <= 0 else min(1.0, 2.0 * 27.3 / extent)
    return float(q) * n * frac < 250.0 * (q + n)


def compute(name: str, yk, xk, muk, sigk, what: int, method: str, one_d: bool):
    """The s* family by the FGT for backend ``name`` ("cpp" or "numba"), or None when the
    pairwise kernel should run ("pairwise"; "auto" with a noise level per query or d > 3).
    xk sorted for 1-D data.  Returns the kernel's outputs tuple (without stats)."""
    if method == "pairwise":
        return None
    d = 1 if one_d else xk.shape[1]
    if d > 3:
        if method == "fgt":
            raise ValueError(f"method='fgt' needs data of dimension d <= 3, got d = {d}; use 'auto' or 'pairwise'")
        return None
    mu64 = np.asarray(muk, dtype=np.float64)
    sig64 = np.asarray(sigk, dtype=np.float64)
    varying = (mu64.shape[0] > 1 and np.ptp(mu64) > 0) or (sig64.shape[0] > 1 and np.ptp(sig64) > 0)
    if method == "auto" and (varying or what & 8):  # 8: the 1-D derivatives (see the module docstring)
        return None
    if method == "auto" and float(yk.shape[0]) * float(xk.shape[0]) <= _SMALL:
        return None  # too small to plan (the kernels decide the same)
    if method == "auto" and one_d and _windows_cheap(yk.shape[0], xk, float(mu64[0]), float(sig64[0])):
        return None
    impl = _impl(name)
    if impl is None:
        if method == "fgt":
            raise ValueError(f"method='fgt' runs on the cpp and numba backends, not on {name!r}")
        return None
    fn = impl.fgt_1d if one_d else impl.fgt_nd
    q = yk.shape[0]
    groups = _groups(mu64, sig64, q) if varying else [(None, float(mu64[0]), float(sig64[0]))]
    if len(groups) == 1:
        return fn(yk, xk, groups[0][1], groups[0][2], what, _MODE[method])[:-1]
    outs = None
    for rows, m, s in groups:
        part = fn(np.ascontiguousarray(yk[rows]), xk, m, s, what, _MODE[method])[:-1]
        if outs is None:
            outs = tuple(None if p is None else np.empty((q,) + p.shape[1:], dtype=p.dtype) for p in part)
        for o, p in zip(outs, part):
            if o is not None:
                o[rows] = p
    return outs


def sampler_kernel(score, backend: str):
    """(kernel, extra arguments) of the fused sampler for an EmpiricalScore whose method is
    "auto" or "fgt", d <= 3, on a backend with fgt kernels; else None (the pairwise loop)."""
    if score.method == "pairwise" or score.dim > 3 or backend not in _backend.backends("fgt"):
        return None
    k = _backend.kernels("fgt", backend)
    mode = _MODE[score.method]
    if score.one_d:
        return k.sampler_empirical_fgt_1d, (np.sort(score.x_train, kind="stable"), mode)
    return k.sampler_empirical_fgt_nd, (np.ascontiguousarray(score.x_train), mode)


def fgt_plan(y, x, mu, sigma, *, outputs: str = "score", backend: str = "auto") -> dict:
    """The plan of ``method="fgt"`` for one call, without computing it: a dict with

    - ``used_fgt``: whether ``method="auto"`` would run the FGT (its estimated cost is lower);
    - ``boxes``, ``boxes_expanded``: target boxes, and those expanded (the rest are summed
      directly, per target);
    - ``targets_direct``: targets in boxes summed directly;
    - ``max_order``: the largest total degree P of an expansion (-1 if none);
    - ``max_bound``: the largest bound on the truncation error (relative);
    - ``cost_fgt``, ``cost_pairwise``: the cost model's estimates (units of one term of a
      direct sum).

    Parameters
    ----------
    y, x : array
        Queries and training data, as for :func:`bigstep.optimal_score` (d <= 3).
    mu, sigma : float
        One noise level.
    outputs : str
        "score" (``s*``, E[W|y]), "log_density" or "derivatives" (1-D): the moments the
        bound must cover.
    backend : str
        "auto", "cpp" or "numba".

    Returns
    -------
    dict
        The keys above.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> rng = np.random.default_rng(0)
    >>> plan = bigstep.fgt_plan(rng.standard_normal(20000), rng.standard_normal(20000), 0.9, 0.5)
    >>> plan["used_fgt"], plan["max_bound"] < 1.2e-16
    (True, True)
    """
    xa = training_data(x)
    ya = queries(y, xa)
    if ya.ndim == xa.ndim - 1:
        ya = ya.reshape((1,) + ya.shape)
    d = 1 if xa.ndim == 1 else xa.shape[1]
    if d > 3:
        raise ValueError(f"the FGT needs data of dimension d <= 3, got d = {d}")
    mua = noise_level(mu, "mu", ya.shape[0])
    siga = noise_level(sigma, "sigma", ya.shape[0])
    if mua.shape[0] != 1 or siga.shape[0] != 1:
        raise ValueError("fgt_plan takes one noise level: mu and sigma must be scalars")
    what = {"score": 1, "log_density": 2, "derivatives": 8}.get(outputs)
    if what is None or (what == 8 and xa.ndim != 1):
        raise ValueError(f"outputs must be 'score', 'log_density' or (1-D data) 'derivatives', got {outputs!r}")
    dtype = result_dtype(ya, xa)
    impl = _backend.kernels("fgt", _backend.resolve(backend, ya, xa, family="fgt"))
    yk, xk = prepare(ya, dtype), prepare(xa, dtype)
    if xa.ndim == 1:
        stats = impl.fgt_1d(yk, np.sort(xk, kind="stable"), float(mua[0]), float(siga[0]), what, 0)[-1]
    else:
        stats = impl.fgt_nd(yk, xk, float(mua[0]), float(siga[0]), what, 0)[-1]
    out = {k: float(v) for k, v in zip(_STATS, stats)}
    for k in ("boxes", "boxes_expanded", "targets_direct", "max_order"):
        out[k] = int(out[k])
    out["used_fgt"] = bool(out["used_fgt"])
    return out
