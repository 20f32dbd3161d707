"""rf.learning_curve: train/test loss versus psi_p = p / d, vectorised over p."""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg

from .._progress import Progress
from .._validate import integer
from ..random import gaussian_noise
from . import _gaussian, _model


def _pandas():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("rf.learning_curve returns a pandas DataFrame: pip install bigstep[repro]") from exc
    return pd


def regime(p: int, n: int, m) -> str:
    """'p<n', 'n<=p<nm' or 'p>=nm' (m = inf: never the last)."""
    if p < n:
        return "p<n"
    if p < n * m:
        return "n<=p<nm"
    return "p>=nm"


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


def _training_rows(x, W, U, Cy, K, R, xi2, ps, common, times, lr):
    from ._fit import RFModel

    rows = []
    for p in ps:
        model = RFModel(x, W[:p], common["t"], common["m"], common["rho"], common["lam"], common["seed"],
                        K[:p, :p], R[:p], xi2, Z=np.zeros((p, x.shape[1])))
        model._pop = (U[:p, :p], Cy[:p], 0.0)
        dyn = model.dynamics(times, lr)
        for j, tau in enumerate(dyn["time"]):
            rows.append(dict(common, p=p, psi_p=p / common["d"], time=tau, train_loss=dyn["train_loss"][j],
                             test_loss=dyn["test_loss"][j], score_error=dyn["score_error"][j],
                             regime=regime(p, common["n"], common["m"])))
    return rows


def learning_curve(d, psi_n, psi_p, m, t, lam=1e-3, rho="relu", seeds=(0,), *, times=None, lr=None,
                   backend="auto", progress=False):
    """Train loss, test loss and score error of the exact fit versus psi_p = p / d.

    For each seed: training data x = gaussian_noise(seed, (n, d), stream=12), n = round(psi_n d);
    weights W = gaussian_noise(seed, (p_max, d), stream=10), so the p-feature model uses the
    first p rows; noise xi from stream 11 (as :func:`bigstep.rf.fit` with the same seed, which
    gives the same numbers).  One streamed Gram matrix at p_max per (seed, m) serves every p
    (leading blocks), with one Cholesky factor when lam > 0.

    Parameters
    ----------
    d : dimension >= 1;  psi_n : n / d > 0;  psi_p : array of p / d (p = max(1, round(psi_p d)))
    m : int >= 1 (n m max(d, p_max) < 2**62), math.inf (noise averaged exactly), or a list of them
    t : diffusion time > 0;  lam : ridge >= 0;  rho : activation (see fit)
    seeds : iterable of ints >= 0 (one row per seed, m and psi_p)
    times, lr : optional training times: the curves along gradient descent from A = 0 (lr
        given, times = step counts) or gradient flow (lr None), one row per time as well, from
        one eigendecomposition per (seed, m, p) (RFModel.dynamics); None: the converged fit.

    Returns a pandas DataFrame (tidy), one row per (seed, m, p[, time]): d, n, p, psi_n, psi_p,
    m, t, lam, rho, seed, [time,] train_loss, test_loss, score_error, regime ('p<n',
    'n<=p<nm', 'p>=nm').

    Example
    -------
    >>> from bigstep import rf
    >>> df = rf.learning_curve(20, 1.0, [0.5, 1.0, 2.0], [1, 4], t=0.5, lam=1e-3)
    >>> df.shape[0], list(df.regime[:3])
    (6, ['p<n', 'p>=nm', 'p>=nm'])
    """
    pd = _pandas()
    d = integer(d, "d", minimum=1)
    psi_n = _model.check_positive(psi_n, "psi_n")
    psi = np.atleast_1d(np.asarray(psi_p, dtype=np.float64))
    if psi.ndim != 1 or psi.size == 0 or not (np.isfinite(psi).all() and (psi > 0).all()):
        raise ValueError(f"psi_p must be a non-empty 1-D array of positive numbers, got {psi_p!r}")
    ms = [_model.check_m(v) for v in (m if isinstance(m, (list, tuple, np.ndarray)) else [m])]
    t = _model.check_positive(t, "t")
    lam = _model.check_lam(lam)
    rho = _model.check_rho(rho)
    seeds = [_model.check_seed(s) for s in (seeds if hasattr(seeds, "__iter__") else [seeds])]
    if not seeds:
        raise ValueError("seeds must not be empty")
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
            if times is not None:
                rows += _training_rows(x, W, U, Cy, K, R, xi2, [int(ps[i]) for i in order],
                                       dict(d=d, n=n, psi_n=psi_n, m=mm, t=t, lam=lam, rho=rho, seed=seed), times, lr)
                done += 1
                bar.update(done)
                continue
            for p, train, test, err in _curve_losses(K, R, xi2, U, Cy, lam, [int(ps[i]) for i in order], d,
                                                     delta):
                rows.append(dict(d=d, n=n, p=p, psi_n=psi_n, psi_p=p / d, m=mm, t=t, lam=lam, rho=rho,
                                 seed=seed, train_loss=train, test_loss=test, score_error=err,
                                 regime=regime(p, n, mm)))
            done += 1
            bar.update(done)
    return pd.DataFrame(rows)
