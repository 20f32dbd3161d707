"""Exact Hessian-vector products of a fixed-sample loss of a two-layer ReLU network, in
numpy (no torch): the sharpness of Figure 5's d-D and diffusion panels.

    L(theta) = (1/c) sum_r ||(1/m) W2 relu(W1 u_r + b) + z_r||^2,   theta = (W1 (m, p), b (m,), W2 (d, m))

over N fixed rows u (N, p), z (N, d).  With P = U W1^T + b, D = 1{P > 0}, H = relu(P),
F = H W2^T / m + Z, G = 2 F / c:

    grad:  dW2 = G^T H / m,   A = (G W2) * D / m,   dW1 = A^T U,   db = sum_r A_r;
    Hessian-vector product along V = (V1, vb, V2) (relu'' = 0 almost everywhere, so D is
    constant along V): dP = U V1^T + vb, dH = D * dP, dF = (dH W2^T + H V2^T) / m,
    dG = 2 dF / c,  H.V = (dA^T U,  sum_r dA_r,  (dG^T H + G^T dH) / m)  with
    dA = (dG W2 + G V2) * D / m.

Rows are processed in blocks (memory O(block m), whatever N).  theta is flattened as
(W1 row-major, b, W2 row-major).
"""

from __future__ import annotations

import numpy as np

_BLOCK_ELEMS = 1 << 21  # hidden-layer numbers per block of rows


class FixedSampleLoss:
    """L(theta) above for fixed rows; ``grad(theta)`` and ``hvp(v)`` at the point given to
    the constructor (float64)."""

    def __init__(self, W1, b, W2, U, Z, norm):
        self.W1 = np.ascontiguousarray(W1, dtype=np.float64)
        self.b = np.ascontiguousarray(b, dtype=np.float64)
        self.W2 = np.ascontiguousarray(W2, dtype=np.float64)
        self.U = np.ascontiguousarray(U, dtype=np.float64)
        self.Z = np.ascontiguousarray(Z, dtype=np.float64)
        self.norm = float(norm)
        self.m, self.p = self.W1.shape
        self.d = self.W2.shape[0]
        self.size = self.m * self.p + self.m + self.d * self.m
        self.rows = max(1, _BLOCK_ELEMS // self.m)

    def _split(self, v):
        n1, n2 = self.m * self.p, self.m * self.p + self.m
        return v[:n1].reshape(self.m, self.p), v[n1:n2], v[n2:].reshape(self.d, self.m)

    def _blocks(self):
        for r0 in range(0, self.U.shape[0], self.rows):
            U, Z = self.U[r0:r0 + self.rows], self.Z[r0:r0 + self.rows]
            P = U @ self.W1.T + self.b
            D = P > 0
            H = np.where(D, P, 0.0)
            F = H @ self.W2.T / self.m + Z
            yield U, D, H, F

    def value(self) -> float:
        return float(sum((F * F).sum() for _, _, _, F in self._blocks()) / self.norm)

    def grad(self) -> np.ndarray:
        g1, gb, g2 = np.zeros((self.m, self.p)), np.zeros(self.m), np.zeros((self.d, self.m))
        for U, D, H, F in self._blocks():
            G = 2.0 * F / self.norm
            g2 += G.T @ H / self.m
            A = (G @ self.W2) * D / self.m
            g1 += A.T @ U
            gb += A.sum(0)
        return np.concatenate([g1.ravel(), gb, g2.ravel()])

    def hvp(self, v) -> np.ndarray:
        V1, vb, V2 = self._split(np.asarray(v, dtype=np.float64))
        h1, hb, h2 = np.zeros((self.m, self.p)), np.zeros(self.m), np.zeros((self.d, self.m))
        for U, D, H, F in self._blocks():
            G = 2.0 * F / self.norm
            dH = (U @ V1.T + vb) * D
            dG = 2.0 * (dH @ self.W2.T + H @ V2.T) / (self.m * self.norm)
            h2 += (dG.T @ H + G.T @ dH) / self.m
            dA = (dG @ self.W2 + G @ V2) * D / self.m
            h1 += dA.T @ U
            hb += dA.sum(0)
        return np.concatenate([h1.ravel(), hb, h2.ravel()])


def sharpness(W1, b, W2, U, Z, norm, *, tol=1e-10, max_iter=None) -> float:
    """lambda_max of the Hessian of the fixed-sample loss: Lanczos (bigstep._lanczos) on
    the exact Hessian-vector products above."""
    from .._lanczos import largest_eigenvalue

    loss = FixedSampleLoss(W1, b, W2, U, Z, norm)
    return largest_eigenvalue(loss.hvp, loss.size, tol=tol, max_iter=max_iter)
