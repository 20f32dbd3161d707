"""The empirical optimal score s* and its family (paper eq. 6 and 9).

For training data x_1..x_n and a noise level (mu, sigma), the weights

    w_i(y) = softmax_i( -||y - mu x_i||^2 / (2 sigma^2) )

give the empirical optimal score, the minimiser of the DSM risk,

    s*(y) = (mu sum_i w_i x_i - y) / sigma^2,

the posterior mean (optimal denoiser) E[W|y] = sum_i w_i x_i, and the log-density of
the noised empirical distribution log p(y) = log((1/n) sum_i N(y; mu x_i, sigma^2 I)).
All are computed with a streaming log-sum-exp: memory O(q + n), finite and accurate
for any sigma > 0 and for queries far from the data.

Accuracy.  float64: a few ulps times the conditioning of s* (tested against 50-digit
mpmath values down to sigma = 1e-4).  float32, 1-D: the logits are formed in a
shifted product form whose error is that of rounding the inputs, at every sigma, and
sums are blocked into float64, so s* is within ~1e-5 relative of the exact value at the
float32 inputs where s* is well conditioned (midway between two data points at tiny
sigma, within what a few float32 ulps of input perturbation allow).  float32, d-D: the
matrix-product form of the logits is summed in float32 when a rounding-error bound
keeps the weights' error below 1e-4 (measured: ~3e-6 at d = 64, sigma = 1); otherwise
(small sigma) the C++ kernel screens with float logits and recomputes the points within
40 (plus the float error bound) of the largest logit in float64, and Numba sums in
float64: float64 accuracy at the float32 inputs.
"""

from __future__ import annotations

import numpy as np

import functools

from . import _autograd, _backend
from . import fgt as _fgt
from ._arrays import as_numpy, prepare, result_dtype, wrap_like
from ._torch import device_route
from ._validate import first_true, noise_level, queries, training_data

__all__ = [
    "optimal_score",
    "log_density",
    "posterior_mean",
    "optimal_score_derivatives",
]

_SCORE, _LOGP, _MEAN, _DERIV = 1, 2, 4, 8


def _compute(y, x, mu, sigma, what: int, backend: str, *, one_d_only: bool = False, method: str = "pairwise"):
    """Validate, convert and run one call: the outputs (score, log_density, mean[, d1,
    d2]), each None unless asked for by ``what``."""
    return _run(y, x, mu, sigma, what, backend, one_d_only=one_d_only, method=method)[0]


def _run(y, x, mu, sigma, what: int, backend: str, *, one_d_only: bool = False, method: str = "pairwise"):
    """(outputs, backend used, (mu, sigma) as validated float64 arrays of shape (1,) or (q,));
    ``method`` as in :func:`optimal_score` (bigstep.fgt)."""
    method = _fgt.check_method(method)
    if device_route(backend, {"y": y, "x": x, "mu": mu, "sigma": sigma}):  # device arrays, or backend torch/cuda
        from ._torch._api import optimal_score_family

        return optimal_score_family(y, x, mu, sigma, what, backend, one_d_only, method)
    name = _backend.resolve(backend, family="optimal_score", y=y, x=x, mu=mu, sigma=sigma)
    xa = training_data(x, ndim=1 if one_d_only else None)
    ya = queries(y, xa)
    single = ya.ndim == xa.ndim - 1  # one query: a scalar for 1-D data, a (d,) vector in d-D
    q = 1 if single else ya.shape[0]
    mua = noise_level(mu, "mu", q)
    siga = noise_level(sigma, "sigma", q)
    dtype = result_dtype(ya, xa)
    if dtype == np.float32:
        _check_float32_levels(mua, "mu")
        _check_float32_levels(siga, "sigma")
    impl = _backend.kernels("optimal_score", name)
    yk = prepare(ya.reshape((1,) + ya.shape) if single else ya, dtype)
    xk = prepare(xa, dtype)
    muk = prepare(mua, dtype)
    sigk = prepare(siga, dtype)
    if q == 0:
        outs = _empty(yk, what, xa.ndim)
    elif xa.ndim == 1:
        xs = np.sort(xk, kind="stable")
        outs = _fgt.compute(name, yk, xs, muk, sigk, what, method, True)
        outs = impl.optimal_score_1d(yk, xs, muk, sigk, what) if outs is None else outs
    else:
        outs = _fgt.compute(name, yk, xk, muk, sigk, what, method, False)
        outs = impl.optimal_score_nd(yk, xk, muk, sigk, what) if outs is None else outs
    if single:
        outs = tuple(None if o is None else o[0] for o in outs)
    return outs, name, (mua, siga)


def _one(kind: int, y, x, mu, sigma, backend: str, method: str = "auto"):
    """One output of the family in the caller's array type; a torch graph to y and x when
    they require grad (bigstep._autograd)."""
    if _autograd.wants_graph(y, x):
        return _autograd.apply(kind, y, x, mu, sigma, backend, functools.partial(_run, method=method))
    return wrap_like(_compute(y, x, mu, sigma, kind, backend, method=method)[{_SCORE: 0, _LOGP: 1, _MEAN: 2}[kind]], y)


def _check_float32_levels(v, name: str) -> None:
    """float32 calls compute with float32 mu and sigma: they must round to normal numbers
    (v: a float64 numpy array, or a torch tensor on the device-array path)."""
    f = np.finfo(np.float32)
    bad = (v > f.max) | (v < f.tiny)
    if bad.any():
        raise ValueError(f"{name} must lie in [{f.tiny:.3g}, {f.max:.3g}] for float32 inputs, "
                         f"got {np.float64(float(v[first_true(bad)]))!r}; pass float64 arrays for a wider range")


def _empty(yk, what, ndim):
    shape_vec = yk.shape
    z = lambda shape: np.empty(shape, dtype=yk.dtype)  # noqa: E731
    if ndim == 1:
        d = bool(what & _DERIV)
        return (z(shape_vec) if what & (_SCORE | _DERIV) else None, z((0,)) if what & _LOGP else None,
                z(shape_vec) if what & _MEAN else None, z(shape_vec) if d else None, z(shape_vec) if d else None)
    return (z(shape_vec) if what & _SCORE else None, z((0,)) if what & _LOGP else None,
            z(shape_vec) if what & _MEAN else None)


def optimal_score(y, x, mu, sigma, *, method: str = "auto", backend: str = "auto"):
    """Empirical optimal score ``s*(y)`` of data x at noise level (mu, sigma) (eq. 6).

    The minimiser of the denoising score-matching risk over all functions:

        s*(y)  = (mu sum_i w_i(y) x_i - y) / sigma^2
        w_i(y) = softmax_i(-||y - mu x_i||^2 / (2 sigma^2))

    computed with a streaming log-sum-exp (memory O(q + n), finite at any sigma > 0).

    Parameters
    ----------
    y : array
        The queries: shape (q,) for 1-D data, (q, d) or (d,) for d-D data.
    x : array
        The training data: shape (n,) or (n, d), finite, n >= 1.
    mu, sigma : float or array
        The noise level: positive, a scalar or one per query (shape (q,)).
    method : str
        "auto" (the fast Gauss transform where its cost model says it is faster and its
        error bound meets the target, the pairwise kernel elsewhere), "pairwise" (every
        pair, streamed) or "fgt" (the fast Gauss transform, d <= 3; per query relative
        error of ``s*`` ~1e-15 where ``s*`` is well conditioned, see :mod:`bigstep.fgt`).
    backend : str
        "auto" (cpp, then numba, for host arrays; a device backend for device arrays
        where one is built), "cpp" or "numba".

    Returns
    -------
    array
        The shape of y; float32 for float32 inputs, float64 otherwise, in the array
        type of y (a torch tensor with a graph to y and x when they require grad).  NaN
        in a query gives NaN in that row only.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> float(bigstep.optimal_score(np.array([0.5]), np.array([-1.0, 1.0]), 1.0, 1.0)[0])  # doctest: +ELLIPSIS
    -0.0378...
    """
    return _one(_SCORE, y, x, mu, sigma, backend, method)


def log_density(y, x, mu, sigma, *, method: str = "auto", backend: str = "auto"):
    """Log-density of the noised empirical distribution, ``log p(y)``, with

        p(y) = (1/n) sum_i N(y; mu x_i, sigma^2 I)

    Parameters
    ----------
    y, x : array
        The queries and the training data, as in :func:`optimal_score`.
    mu, sigma : float or array
        The noise level, as in :func:`optimal_score`.
    method : str
        As in :func:`optimal_score` (``method="fgt"``: log p within ~1e-14 of the exact
        value, also where every term underflows).
    backend : str
        As in :func:`optimal_score`.

    Returns
    -------
    array
        Shape (q,): ``log p`` of each query (a scalar for one d-D query); dtype and
        array type as in :func:`optimal_score`.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> float(bigstep.log_density(np.array([0.0]), np.array([0.0]), 1.0, 1.0)[0])  # doctest: +ELLIPSIS
    -0.9189...
    """
    return _one(_LOGP, y, x, mu, sigma, backend, method)


def posterior_mean(y, x, mu, sigma, *, method: str = "auto", backend: str = "auto"):
    """Posterior mean ``E[W | y] = sum_i w_i(y) x_i``, the optimal denoiser.

    ``s*(y) = (mu E[W|y] - y) / sigma^2``, with the weights of :func:`optimal_score`.

    Parameters
    ----------
    y, x : array
        The queries and the training data, as in :func:`optimal_score`.
    mu, sigma : float or array
        The noise level, as in :func:`optimal_score`.
    method, backend : str
        As in :func:`optimal_score`.

    Returns
    -------
    array
        The shape of y; dtype and array type as in :func:`optimal_score`.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> float(bigstep.posterior_mean(np.array([0.9]), np.array([-1.0, 1.0]), 1.0, 0.1)[0])  # doctest: +ELLIPSIS
    1.0...
    """
    return _one(_MEAN, y, x, mu, sigma, backend, method)


def optimal_score_derivatives(y, x, mu, sigma, *, method: str = "auto", backend: str = "auto"):
    """The 1-D optimal score and its first two derivatives in y (eq. 9).

    With ``W(y)`` taking the value x_i with probability ``w_i(y)``:

        s*'(y)  = (-1 + mu^2 Var[W(y)] / sigma^2) / sigma^2
        s*''(y) = mu^3 E[(W - E W)^3] / sigma^6

    Parameters
    ----------
    y : array
        The queries, shape (q,).
    x : array
        1-D training data, shape (n,): finite, n >= 1.
    mu, sigma : float or array
        The noise level, as in :func:`optimal_score`.
    method : str
        As in :func:`optimal_score` (``method="fgt"``: an absolute error bound on the
        derivatives, see :mod:`bigstep.fgt`; "auto" keeps them pairwise).
    backend : str
        As in :func:`optimal_score`.

    Returns
    -------
    tuple of arrays
        ``(s*, s*', s*'')``, each of shape (q,),, dtype and array type as in :func:`optimal_score`.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> s, ds, dds = bigstep.optimal_score_derivatives(np.array([0.0]), np.array([-1.0, 1.0]), 1.0, 1.0)
    >>> round(float(ds[0]), 6)   # -1 + Var = -1 + 1 = 0
    0.0
    """
    outs = _compute(y, x, mu, sigma, _DERIV, backend, one_d_only=True, method=method)
    return wrap_like(outs[0], y), wrap_like(outs[3], y), wrap_like(outs[4], y)
