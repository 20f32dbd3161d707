"""Monte Carlo diagnostics of d-D networks: the excess DSM risk with its standard error
(:func:`excess_risk_mc`, Figure 2) and the sharpness of a fixed-sample estimate of the
loss (:func:`sharpness_mc`, :func:`diffusion_sharpness_mc`, Figure 5).

Randomness (Philox): stream 7 for the excess-risk noise, stream 14 for the fixed noise
(and times) of the sharpness estimates; see :mod:`bigstep.random`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _streams as streams
from .._arrays import as_numpy
from .._validate import integer, real_scalar, training_data, uint64
from ..nets import ReLUNet1D, ReLUNetND, TimeReLUScore
from ..random import gaussian_noise, uniform

__all__ = ["excess_risk_mc", "sharpness_mc", "diffusion_sharpness_mc"]

_STREAM_MC, _STREAM_SHARP = streams.EXCESS_RISK_MC, streams.SHARPNESS_MC
_MC_BLOCK_ELEMS = 1 << 20  # excess_risk_mc: numbers in one block of noisy inputs Y (rows * d)


def excess_risk_mc(net, x, mu, sigma, *, n_mc=5000, seed=0):
    """Monte Carlo excess DSM risk with its standard error (paper Appendix E, Figure 2).

    The excess risk

        E(theta) = R_n(theta) - R_n(s*) = (1/n) sum_i E_{Y ~ N(mu x_i, sigma^2 I)} ||s_theta(Y) - s*(Y)||^2

    is estimated with K = ``n_mc`` draws per training point (the estimator is stratified
    over the training points), ``s*`` from :func:`bigstep.optimal_score`:

        Y_ik = mu x_i + sigma Z_ik,   Z[i, k, :] = gaussian_noise(seed, (n, K, d), stream=7)[i, k, :]
        mean = (1/n) sum_i e_i,       e_i = (1/K) sum_k ||s_theta(Y_ik) - s*(Y_ik)||^2
        se   = (1/n) sqrt(sum_i v_i / K),   v_i the sample variance (ddof 1) over k

    The same draws serve every network given the same seed (common random numbers).  In
    1-D, :func:`bigstep.excess_risk` is exact; this estimator exists for d > 1.

    Parameters
    ----------
    net : ReLUNetND, ReLUNet1D, tuple or callable
        A :class:`bigstep.ReLUNetND`, a :class:`bigstep.ReLUNet1D` (then d = 1), a tuple
        (W1 (m, d), b1 (m,), W2 (d, m)), or any callable ``f(y) -> array (N, d)`` for
        y (N, d).
    x : array
        Training data (n, d), or (n,) for d = 1.
    mu, sigma : float
        The noise level, positive and finite.
    n_mc : int
        K >= 2 draws per training point (the paper used 5,000).
    seed : int
        The Philox seed of stream 7, >= 0.

    Returns
    -------
    mean, se : float
        The estimate and its standard error.

    Notes
    -----
    Cost: n K forward passes, O(n K m d).  Memory is bounded whatever n and K: the n K
    rows of Y are drawn, scored and reduced in blocks of about 2**20 numbers, each
    training point's mean and variance merged across blocks (Chan et al.'s pairwise
    update), so the result does not depend on the blocking beyond rounding.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> from bigstep.nets import ReLUNetND
    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0]])
    >>> W1, b1, W2 = np.eye(2), np.zeros(2), np.eye(2)
    >>> mean, se = bigstep.excess_risk_mc(ReLUNetND(W1, b1, W2), x, 0.9, 0.5, n_mc=200)
    >>> bool(mean > 0 and 0 < se < mean)
    True
    """
    from ..optimal_score import optimal_score

    xa = np.asarray(training_data(x), dtype=np.float64)
    one_d = xa.ndim == 1
    x2 = xa.reshape(-1, 1) if one_d else xa
    n, d = x2.shape
    mu = real_scalar(mu, "mu")
    sigma = real_scalar(sigma, "sigma")
    K = integer(n_mc, "n_mc", minimum=2)
    seed = uint64(seed, "seed")
    f = _as_callable(net, d)
    rows = max(1, _MC_BLOCK_ELEMS // d)
    count, mean, m2 = np.zeros(n), np.zeros(n), np.zeros(n)  # per training point: draws, mean, sum of sq. dev.
    for r0 in range(0, n * K, rows):                         # flat row r = i K + k, Z row at offset r d
        r1 = min(n * K, r0 + rows)
        point = np.arange(r0, r1) // K
        Y = mu * x2[point] + sigma * gaussian_noise(seed, (r1 - r0, d), stream=_STREAM_MC, offset=r0 * d)
        star = optimal_score(Y[:, 0] if one_d else Y, xa, mu, sigma).reshape(r1 - r0, d)
        s = np.asarray(as_numpy(f(Y), "net(y)"), dtype=np.float64)
        if s.shape != Y.shape:
            raise ValueError(f"net(y) must return shape {Y.shape} for y of shape {Y.shape}, got {s.shape}")
        _merge_moments(count, mean, m2, point, ((s - star) ** 2).sum(axis=1))
    mean_out = float(mean.mean())
    se = float(math.sqrt((m2 / (K - 1)).sum() / K) / n)
    return mean_out, se


def _merge_moments(count, mean, m2, point, e):
    """Fold the values e of the consecutive training points ``point`` (sorted) into the
    running per-point count, mean and sum of squared deviations (pairwise update)."""
    i0 = int(point[0])
    local = point - i0
    nb = np.bincount(local).astype(np.float64)
    mb = np.bincount(local, weights=e) / nb
    m2b = np.bincount(local, weights=(e - mb[local]) ** 2)
    sl = slice(i0, i0 + nb.shape[0])
    na = count[sl]
    tot = na + nb
    delta = mb - mean[sl]
    mean[sl] += delta * (nb / tot)
    m2[sl] += m2b + delta * delta * (na * nb / tot)
    count[sl] = tot


def _as_callable(net, d: int):
    if isinstance(net, ReLUNetND):
        if net.dim != d:
            raise ValueError(f"net has dimension {net.dim} but x has {d} columns")
        return net
    if isinstance(net, ReLUNet1D):
        if d != 1:
            raise ValueError(f"a ReLUNet1D needs 1-D data, got x with {d} columns")
        return lambda y: net(y[:, 0]).reshape(-1, 1)
    if isinstance(net, tuple) and len(net) == 3:
        return _as_callable(ReLUNetND(*net), d)
    if callable(net):
        return net
    raise TypeError("net must be a ReLUNetND, a ReLUNet1D, a tuple (W1, b1, W2) or a callable, "
                    f"got {type(net).__name__}")


def _sharpness_args(n_mc, seed, tol, max_iter, num_threads):
    K = integer(n_mc, "n_mc", minimum=1)
    seed = uint64(seed, "seed")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (0 < float(tol) < 1):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if max_iter is not None:
        max_iter = integer(max_iter, "max_iter", minimum=1)
    if num_threads is not None:
        integer(num_threads, "num_threads", minimum=1)
    return K, seed, float(tol), max_iter


def _fixed_sample_sharpness(W1, b1, W2, u, zc, norm, tol, max_iter, out_bias=None):
    """lambda_max of the Hessian wrt theta = (W1, b1, W2) (flattened in that order) of
    L(theta) = sum ||(1/m) W2 relu(W1 u + b1) [+ out_bias] + zc||^2 / norm over the rows of
    u (N, p), zc (N, d): Lanczos on exact closed-form Hessian-vector products in numpy,
    float64 (:mod:`bigstep.training._fixed_sample`; no torch needed)."""
    from ._fixed_sample import sharpness

    return sharpness(W1, b1, W2, u, zc if out_bias is None else zc + out_bias, norm, tol=tol, max_iter=max_iter)


def _dsm_params(net, d):
    if isinstance(net, tuple) and len(net) == 3:
        net = ReLUNetND(*net)
    if isinstance(net, ReLUNetND):
        if net.dim != d:
            raise ValueError(f"net has dimension {net.dim} but x has {d} columns")
        return net.W1, net.b1, net.W2
    if isinstance(net, ReLUNet1D):
        if d != 1:
            raise ValueError(f"a ReLUNet1D needs 1-D data, got x with {d} columns")
        w1, w2, b = (np.asarray(a, dtype=np.float64) for a in (net.W1, net.W2, net.b1))
        return w1.reshape(-1, 1), b, w2.reshape(1, -1)
    raise TypeError("net must be a ReLUNetND, a ReLUNet1D or a tuple (W1, b1, W2), "
                    f"got {type(net).__name__}")


def sharpness_mc(net, x, mu, sigma, *, coordinates="sum", n_mc=100, seed=0, tol=1e-10, max_iter=None,
                 num_threads=None):
    """Sharpness of a DSM network in d dimensions, on a fixed Monte Carlo sample.

    lambda_max of the Hessian, with respect to all parameters theta = (W1, b1, W2), of a
    FIXED-SAMPLE Monte Carlo estimate of the DSM risk (paper Figure 5 middle):

        R_K(theta) = (1/(n K c)) sum_i sum_k ||s_theta(Y_ik) + Z_ik / sigma||^2
        Y_ik = mu x_i + sigma Z_ik,   Z[i, k, :] = gaussian_noise(seed, (n, K, d), stream=14)[i, k, :]

    c = 1 (``coordinates="sum"``, the paper's eq. (5)) or c = d (``"mean"``, the loss
    :func:`train_dsm` trains with ``coordinates="mean"``).  The draws are fixed (common
    random numbers: the same Z for every network given the same seed), so R_K is one
    deterministic function of theta and its Hessian is computed exactly: Lanczos
    (:mod:`bigstep._lanczos`, full reorthogonalisation, stops at relative residual
    ``tol``) on exact closed-form Hessian-vector products (numpy, no torch), never forming
    the Hessian.  The authors' notebook did the same on a fixed noise
    sample, by power iteration.

    Parameters
    ----------
    net : ReLUNetND, ReLUNet1D or tuple
        A :class:`bigstep.ReLUNetND` (e.g. ``TrainResult.network(r)``), a
        :class:`bigstep.ReLUNet1D` (d = 1) or a tuple (W1 (m, d), b1 (m,), W2 (d, m)).
    x : array
        Training data (n, d), or (n,) for d = 1.
    mu, sigma : float
        The noise level, positive and finite.
    coordinates : str
        "sum" or "mean" (above).
    n_mc : int
        K >= 1 noise draws per training point.
    seed : int
        The Philox seed of stream 14.
    tol, max_iter : float, int or None
        Lanczos' stopping rule (max_iter None: min(number of parameters, 600)).
    num_threads : int or None
        Accepted for compatibility (the products are numpy matrix products).

    Returns
    -------
    float

    Notes
    -----
    This is the Hessian of an estimate, not of ``R_n``: relu'' = 0 almost everywhere, so
    the Dirac terms of the exact Hessian (the kinks moving through the Gaussian mass,
    see :mod:`bigstep.relu_risk`) have no counterpart in ``R_K``; as K grows, the
    Hessian of ``R_K`` tends to the exact Hessian of ``R_n`` WITHOUT those terms.  In
    d = 1 (tests/test_training_nd.py) a width-20 net agrees with
    :func:`bigstep.sharpness` (``wrt="all"``) within 1.5% at K = 2000 (the Dirac term is
    0.1% of lambda_max there), but for a width-200 net at initialisation the Dirac term
    is large: lambda_max 0.033 exact, 0.0195 without it, and ``R_K`` gives 0.0195.  At
    small K the top eigenvalue of the sample Hessian is also biased upward by a few per
    cent (K = 100 vs 1600 on a Figure 5 diffusion net: +3%).

    Linear stability: the trainers update ``theta <- theta - m lr grad L``, so GD on L is
    stable at a minimum only if ``lambda_max(Hess L) <= 2 / (m lr)`` (paper eq. (8)),
    with L the loss actually trained.  With ``coordinates="mean"`` that loss is 1/d of
    the summed one, and so is this sharpness: compare ``coordinates="mean"`` with
    ``2 / (m lr)`` for networks trained with ``coordinates="mean"`` (equivalently the
    "sum" sharpness with ``2 d / (m lr)``).

    Cost: each product is O(n K m d); Lanczos needs tens to a few hundred of them.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> from bigstep.nets import ReLUNetND
    >>> from bigstep.training import sharpness_mc
    >>> net = ReLUNetND(np.eye(2), np.zeros(2), np.eye(2))
    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0]])
    >>> s = sharpness_mc(net, x, 0.9, 0.5, n_mc=50)
    >>> bool(np.isclose(sharpness_mc(net, x, 0.9, 0.5, n_mc=50, coordinates="mean"), s / 2))
    True
    """
    xa = np.asarray(training_data(x), dtype=np.float64)
    x2 = xa.reshape(-1, 1) if xa.ndim == 1 else xa
    n, d = x2.shape
    mu = real_scalar(mu, "mu")
    sigma = real_scalar(sigma, "sigma")
    K, seed, tol, max_iter = _sharpness_args(n_mc, seed, tol, max_iter, num_threads)
    if coordinates not in ("sum", "mean"):
        raise ValueError(f"coordinates must be 'sum' or 'mean', got {coordinates!r}")
    W1, b, W2 = _dsm_params(net, d)
    z = gaussian_noise(seed, (n, K, d), stream=_STREAM_SHARP).reshape(n * K, d)
    u = np.repeat(mu * x2, K, axis=0) + sigma * z
    norm = float(n * K * (d if coordinates == "mean" else 1))
    return _fixed_sample_sharpness(W1, b, W2, u, z / sigma, norm, tol, max_iter)


def diffusion_sharpness_mc(score, x, *, n_times=None, T=None, delta=None, time_weights=None, schedule=None,
                           n_mc=100, seed=0, tol=1e-10, max_iter=None, num_threads=None):
    """Sharpness of the time-conditional diffusion network (paper Figure 5 right).

    lambda_max of the Hessian, with respect to theta = (W1, b1, W2), of a FIXED-SAMPLE
    estimate of the loss :func:`train_diffusion` trains:

        L_K(theta) = (1/(n K d)) sum_i sum_k ||r_theta(t_ik, mu(t_ik) x_i + sigma(t_ik) Z_ik) - Z_ik||^2

    with, from Philox stream 14 of ``seed``, the noise and the times (the inverse-cdf
    rule of the trainer, on its grid and probabilities, :func:`time_grid`):

        Z[i, k, :] = gaussian_noise(seed, (n, K, d), stream=14)[i, k, :]
        U = uniform(seed, (n, K), stream=14, offset=n K d)
        t_ik = times[#{k' : cdf[k'] <= U_ik}]

    Computed as in :func:`sharpness_mc`: Lanczos on exact Hessian-vector products of
    this deterministic function of theta (the Hessian of an estimate: relu'' = 0 drops
    the kinks' Dirac terms of the expected loss).  ``L_K`` is the loss trained with
    ``theta <- theta - m lr grad L`` (mean over the batch and the d coordinates), so the
    linear-stability bound is directly ``lambda_max <= 2 / (m lr)``.

    Parameters
    ----------
    score : TimeReLUScore, TrainResult or tuple
        A :class:`bigstep.TimeReLUScore` (its b2, if any, enters as a constant), a
        one-network :class:`TrainResult` of :func:`train_diffusion` (its time grid and
        schedule are then the defaults), or a tuple (W1 (m, d + 1), b1 (m,), W2 (d, m)).
    x : array
        Training data (n, d).
    n_times, T, delta, time_weights, schedule
        The time grid (None: the result's, else train_diffusion's defaults 100, 1.0,
        0.01, "sigma", and the score's schedule).
    n_mc : int
        K >= 1 draws per training point.
    seed : int
        The Philox seed of stream 14, >= 0.
    tol, max_iter, num_threads
        As in :func:`sharpness_mc`.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> from bigstep.training import diffusion_sharpness_mc
    >>> x = 2 * bigstep.gaussian_noise(0, (10, 2))
    >>> res = bigstep.train_diffusion(x, lr=0.5, steps=20, batch_size=64, width=16)
    >>> bool(diffusion_sharpness_mc(res, x, n_mc=20) > 0)
    True
    """
    from ..scores import noise_schedule
    from .problems import time_grid
    from .result import TrainResult

    xa = np.asarray(training_data(x, ndim=2), dtype=np.float64)
    n, d = xa.shape
    K, seed, tol, max_iter = _sharpness_args(n_mc, seed, tol, max_iter, num_threads)
    grid = dict(n_times=100, T=1.0, delta=0.01, time_weights="sigma", schedule="ou")
    b2 = None
    if isinstance(score, TrainResult):
        if score.kind != "diffusion":
            raise ValueError("score must come from train_diffusion, got a train_dsm result")
        info = score.info
        t_ = info["times"]
        grid.update(n_times=t_.shape[0], T=float(t_[-1]), delta=float(t_[0]), time_weights=info["time_weights"],
                    schedule=info["schedule"])
        probs_given = info["probs"]
        score = score.score
    else:
        probs_given = None
    if isinstance(score, tuple) and len(score) == 3:
        score = TimeReLUScore(*score, schedule=grid["schedule"] if schedule is None else schedule)
    if not isinstance(score, TimeReLUScore):
        raise TypeError("score must be a TimeReLUScore, a train_diffusion TrainResult or a tuple (W1, b1, W2), "
                        f"got {type(score).__name__}")
    if score.dim != d:
        raise ValueError(f"score has dimension {score.dim} but x has {d} columns")
    if probs_given is None:
        grid["schedule"] = score.schedule
    for name, v in (("n_times", n_times), ("T", T), ("delta", delta), ("time_weights", time_weights),
                    ("schedule", schedule)):
        if v is not None:
            grid[name] = v
            probs_given = None
    times, probs = time_grid(**grid)
    if probs_given is not None:
        probs = probs_given
    mus, sigmas = noise_schedule(times, kind=grid["schedule"])
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    z = gaussian_noise(seed, (n, K, d), stream=_STREAM_SHARP).reshape(n * K, d)
    uu = uniform(seed, (n, K), stream=_STREAM_SHARP, offset=n * K * d).reshape(n * K)
    kt = np.minimum(np.searchsorted(cdf, uu, side="right"), times.shape[0] - 1)
    u = np.empty((n * K, d + 1))
    u[:, :d] = mus[kt][:, None] * np.repeat(xa, K, axis=0) + sigmas[kt][:, None] * z
    u[:, d] = times[kt]
    b2 = np.asarray(score.b2, dtype=np.float64)
    return _fixed_sample_sharpness(score.W1, score.b1, score.W2, u, -z, float(n * K * d), tol, max_iter,
                                   out_bias=b2 if np.any(b2) else None)
