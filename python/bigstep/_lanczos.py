"""Largest eigenvalue of a symmetric operator by Lanczos with full reorthogonalisation."""

from __future__ import annotations

import numpy as np


def largest_eigenvalue(matvec, size: int, *, tol: float = 1e-10, max_iter: int | None = None, seed: int = 0) -> float:
    """lambda_max of the symmetric operator v -> matvec(v) on R^size.

    Runs Lanczos from a fixed random start (numpy Generator ``seed``), reorthogonalising
    every new vector against the whole basis (twice), and stops when the top Ritz
    pair's residual |beta_k e_k^T s| is below tol * max(|theta_max|, |theta_min|)
    (the Ritz value is then within that residual of an eigenvalue, and within
    residual^2 / gap of it).  An invariant subspace found early (beta = 0) ends the run
    with exact eigenvalues.  Raises RuntimeError if max_iter (default min(size, 600))
    is reached first.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    max_iter = min(size, 600) if max_iter is None else min(max_iter, size)
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(size)
    q /= np.linalg.norm(q)
    Q = np.empty((max_iter, size))
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    for k in range(max_iter):
        Q[k] = q
        w = matvec(q)
        a = float(q @ w)
        alphas.append(a)
        w -= a * q
        if k:
            w -= beta * Q[k - 1]
        for _ in range(2):  # full reorthogonalisation (classical Gram-Schmidt, twice)
            w -= Q[:k + 1].T @ (Q[:k + 1] @ w)
        beta = float(np.linalg.norm(w))
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta, s = np.linalg.eigh(T)
        scale = max(abs(theta[0]), abs(theta[-1]), np.finfo(float).tiny)
        if beta <= 1e-14 * scale or abs(beta * s[-1, -1]) <= tol * scale:
            return float(theta[-1])
        betas.append(beta)
        q = w / beta
    raise RuntimeError(f"Lanczos did not converge to tol={tol} in {max_iter} iterations")
