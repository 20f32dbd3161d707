"""rf.learning_curve: train/test loss versus psi_p = p / d, vectorised over p."""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg

from .._progress import Progress
from .._validate import integer, sequence
from ..random import gaussian_noise
from . import _gaussian, _model


def _pandas():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("rf.learning_curve returns a pandas DataFrame: pip install bigstep[repro]") from exc
    return pd


def regime(p: int, n: int, n_noise) -> str:
    """The regime of a random-features fit: ``"p<n"``, ``"n<=p<n*n_noise"`` or
    ``"p>=n*n_noise"`` (n_noise = inf: never the last)."""
    if p < n:
        return "p<n"
    if p < n * n_noise:
        return "n<=p<n*n_noise"
    return "p>=n*n_noise"


def _curve_losses(K, R, xi2, U, Cy, lam, ps, d, delta):
    """(train, test, score_error) for each p in ps from the leading p-blocks of K, R, U, Cy.

    lam > 0: one Cholesky factor L of K + lam I serves every p (the factor of a leading
    block is the leading block of the factor), and so do Y = L^{-1} R and L^{-1} Cy
    (forward substitution is nested too): train(p) = (xi2 - ||Y_p||^2) / d and
    tr(Z_p^T Cy_p) = <Y_p, (L^{-1} Cy)_p> for all p from running sums; the test loss needs
    Z_p = L_p^{-T} Y_p (one back substitution per p) and tr(Z_p^T U_p Z_p).
    lam = 0 (or a failed factorisation): the minimum-norm solve per p."""
    L = None
    if lam > 0:
        try:
            L = linalg.cholesky(K + lam * np.eye(K.shape[0]), lower=True, check_finite=False)
        except linalg.LinAlgError:
            L = None
    if L is not None:
        Y = linalg.solve_triangular(L, R, lower=True, check_finite=False)
        Yc = linalg.solve_triangular(L, Cy, lower=True, check_finite=False)
        yy = np.concatenate([[0.0], np.cumsum(np.sum(Y * Y, axis=1))])
        yc = np.concatenate([[0.0], np.cumsum(np.sum(Y * Yc, axis=1))])
    for p in ps:
        if L is not None:
            Z = linalg.solve_triangular(L[:p, :p], Y[:p], lower=True, trans="T", check_finite=False)
            train, zc = (xi2 - yy[p]) / d, yc[p]
        else:
            Z = _model.ridge_solve(K[:p, :p], R[:p], lam)
            train = (float(np.sum(Z * (K[:p, :p] @ Z))) - 2 * float(np.sum(Z * R[:p])) + xi2
                     + lam * float(np.sum(Z * Z))) / d
            zc = float(np.sum(Z * Cy[:p]))
        zuz = float(np.sum(Z * (U[:p, :p] @ Z)))
        yield p, train, (zuz - 2 * math.sqrt(delta) * zc + d) / d, (zuz / delta - 2 * zc / math.sqrt(delta) + d) / d


def _training_rows(x, W, U, Cy, K, R, xi2, ps, common, train_times, lr):
    from ._fit import RFModel

    rows = []
    for p in ps:
        model = RFModel(x, W[:p], common["t"], common["n_noise"], common["rho"], common["lam"], common["seed"],
                        K[:p, :p], R[:p], xi2, Z=np.zeros((p, x.shape[1])))
        model._pop = (U[:p, :p], Cy[:p], 0.0)
        dyn = model.dynamics(train_times, lr=lr)
        for j, tau in enumerate(dyn["train_time"]):
            rows.append(dict(common, p=p, psi_p=p / common["d"], train_time=tau, train_loss=dyn["train_loss"][j],
                             test_loss=dyn["test_loss"][j], score_error=dyn["score_error"][j],
                             regime=regime(p, common["n"], common["n_noise"])))
    return rows


def learning_curve(d, psi_n, psi_p, t, *, n_noise, rho="relu", lam=1e-3, train_times=None, lr=None, seed=0,
                   progress=False, backend="auto"):
    """Train loss, test loss and score error of the exact fit versus ``psi_p = p / d``.

    For each seed: training data ``x = gaussian_noise(seed, (n, d), stream=12)``,
    ``n = round(psi_n d)``; weights ``W = gaussian_noise(seed, (p_max, d), stream=10)``,
    so the p-feature model uses the first p rows; noise xi from stream 11 (as
    :func:`bigstep.rf.fit` with the same seed, which gives the same numbers).  One
    streamed Gram matrix at p_max per (seed, n_noise) serves every p (leading blocks),
    with one Cholesky factor when lam > 0.

    Parameters
    ----------
    d : int
        The dimension, >= 1.
    psi_n : float
        n / d > 0.
    psi_p : array
        The values of p / d (``p = max(1, round(psi_p d))``).
    t : float
        Diffusion time > 0.
    n_noise : int, float or list
        Noise samples M per point: an int >= 1 (``n M max(d, p_max) < 2**62``),
        math.inf (the noise averaged exactly), or a list of them.
    rho : str
        The activation (see :func:`fit`).
    lam : float
        The ridge, >= 0.
    train_times : array or None
        Training times: the curves along gradient descent from A = 0 (``lr`` given,
        train_times are step counts) or gradient flow (``lr=None``), one row per time as
        well, from one eigendecomposition per (seed, n_noise, p)
        (:meth:`RFModel.dynamics`); None: the converged fit.
    lr : float or None
        The learning rate of the gradient descent (with ``train_times``).
    seed : int or sequence of int
        Philox seeds, >= 0 (one row per seed, n_noise and psi_p).
    progress : bool
        A progress bar.
    backend : str
        "auto", "cpp" or "numba" (the Gram kernel).

    Returns
    -------
    pandas.DataFrame
        Tidy, one row per (seed, n_noise, p[, train_time]): d, n, p, psi_n, psi_p,
        n_noise, t, lam, rho, seed, [train_time,] train_loss, test_loss, score_error,
        regime (``"p<n"``, ``"n<=p<n*n_noise"``, ``"p>=n*n_noise"``).

    Examples
    --------
    >>> from bigstep import rf
    >>> df = rf.learning_curve(20, 1.0, [0.5, 1.0, 2.0], 0.5, n_noise=[1, 4], lam=1e-3)
    >>> df.shape[0], list(df.regime[:3])
    (6, ['p<n', 'p>=n*n_noise', 'p>=n*n_noise'])
    """
    pd = _pandas()
    d = integer(d, "d", minimum=1)
    psi_n = _model.check_positive(psi_n, "psi_n")
    psi = np.atleast_1d(np.asarray(psi_p, dtype=np.float64))
    if psi.ndim != 1 or psi.size == 0 or not (np.isfinite(psi).all() and (psi > 0).all()):
        raise ValueError(f"psi_p must be a non-empty 1-D array of positive numbers, got {psi_p!r}")
    t = _model.check_positive(t, "t")
    many = isinstance(n_noise, (list, tuple, np.ndarray))
    ms = [_model.check_n_noise(v) for v in (n_noise if many else [n_noise])]
    if not ms:
        raise ValueError("n_noise must not be empty")
    rho = _model.check_rho(rho)
    lam = _model.check_lam(lam)
    seeds = [_model.check_seed(s) for s in sequence(seed, "seed")]
    n = max(1, int(round(psi_n * d)))
    ps = np.maximum(1, np.rint(psi * d).astype(np.int64))
    order = np.argsort(ps, kind="stable")
    pmax = int(ps.max())
    for mm in ms:
        _model.check_size(n, mm, d, pmax)
    _, sigma, delta = _model.schedule(t)
    rows = []
    bar = Progress(len(seeds) * len(ms), progress, "rf.learning_curve", unit="fits")
    done = 0
    for seed in seeds:
        x = gaussian_noise(seed, (n, d), stream=_model.STREAM_DATA)
        W = _model.weights(seed, pmax, d)
        U, _ = _gaussian.population_gram(rho, W)
        Cy = _gaussian.stein_rows(rho, W)
        for mm in ms:
            K, R, xi2, _ = _model.gram(x, W, t, mm, seed, rho, backend)
            if train_times is not None:
                common = dict(d=d, n=n, psi_n=psi_n, n_noise=mm, t=t, lam=lam, rho=rho, seed=seed)
                rows += _training_rows(x, W, U, Cy, K, R, xi2, [int(ps[i]) for i in order], common, train_times,
                                       lr)
                done += 1
                bar.update(done)
                continue
            for p, train, test, err in _curve_losses(K, R, xi2, U, Cy, lam, [int(ps[i]) for i in order], d,
                                                     delta):
                rows.append(dict(d=d, n=n, p=p, psi_n=psi_n, psi_p=p / d, n_noise=mm, t=t, lam=lam, rho=rho,
                                 seed=seed, train_loss=train, test_loss=test, score_error=err,
                                 regime=regime(p, n, mm)))
            done += 1
            bar.update(done)
    return pd.DataFrame(rows)
