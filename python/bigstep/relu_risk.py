"""Exact denoising score-matching risk of two-layer ReLU networks (paper Sections 4-6).

Network (:class:`bigstep.ReLUNet1D`, m = width):  s_theta(y) = (1/m) sum_l w2_l relu(w1_l y + b_l),
kinks tau_l = -b_l / w1_l, with w1, b, w2 the network's W1, b1, W2 (the paper's symbols).

DSM risk at noise level (mu, sigma) on 1-D data x (n,), exact (no sampling):

    R_n(theta) = (1/n) sum_i E_{Y ~ N(mu x_i, sigma^2)} [ f_i(Y)^2 ],
    f_i(y) = s_theta(y) + (y - mu x_i) / sigma^2.

s_theta is piecewise linear, s = alpha_k y + beta_k between consecutive sorted kinks,
so with Stein's identity E_i[s(Y)(Y - mu x_i)] = sigma^2 E_i[s'(Y)],

    R_n = (1/n) sum_k [ alpha_k^2 S2_k + 2 alpha_k beta_k S1_k + beta_k^2 S0_k + 2 alpha_k S0_k ] + 1/sigma^2,

where S_pk = sum_i E_i[Y^p 1{Y in segment k}] are truncated Gaussian moments.  These
(and two more sums for the gradient) are the only O(n m) work; the gradient, the
Hessian-vector product and the Hessian's O(1)-per-entry assembly follow from prefix
and suffix sums over the segments:

    grad R = (2/n) sum_i E_i[f_i grad s],
    Hess R = (2/n) sum_i E_i[grad s grad s^T]                     (Gauss-Newton)
           + (2/n) sum_i E_i[f_i grad^2 s]                          (w2-b, w2-w1 of one neuron)
           + Dirac terms from the moving indicator 1{w1 y + b > 0}:
             D_l = (2/(n m)) (w2_l / |w1_l|) sum_i f_i(tau_l) p_i(tau_l)
             on (b_l, b_l), tau_l D_l on (b_l, w1_l), tau_l^2 D_l on (w1_l, w1_l),

p_i the N(mu x_i, sigma^2) density.  The paper's printed eq. (15) has the opposite sign
on the Dirac term for w1 = +1; differentiating int_{tau}^{inf} g(y) dy in b gives
+g(tau)/|w1| (see docs/design.md section 2 and the finite-difference tests).

Parameters: ``wrt="outer_bias"`` (default; the theory setting) is theta = (W2, b1), 2m
entries; ``wrt="all"`` is theta = (W1, W2, b1), 3m entries (:meth:`bigstep.ReLUNet1D.theta`).

Accuracy: each truncated moment comes from the Gaussian tail that keeps it accurate
(erfc, not 1 - Phi), so far-out segments are exact to rounding.  The risk is a sum of
O(1/sigma^2) terms whose total can be much smaller near the optimum; its absolute error
is ~1e-16 / sigma^2 times a modest factor.  Hessian entries of kinks at |tau| >> sigma
lose about log10(tau^2 / sigma^2) digits to the raw-moment form (1e-9 relative at
tau = 3, sigma = 1e-3).
"""

from __future__ import annotations

import functools

import numpy as np

from . import _backend
from ._arrays import as_numpy, is_torch, wrap_like
from ._validate import check_wrt, real_scalar, training_data
from .nets import ReLUNet1D

__all__ = [
    "DSMRisk",
    "dsm_risk",
    "dsm_risk_grad",
    "dsm_risk_hessian",
    "dsm_risk_hvp",
    "sharpness",
    "is_linearly_stable",
    "excess_risk",
]

_DENSE_MAX = 1024  # sharpness: dense eigensolver up to this many parameters, Lanczos above


# ------------------------------------------------------------------- arguments


def _check_net(net) -> None:
    if not isinstance(net, ReLUNet1D):
        raise TypeError(f"net must be a bigstep.ReLUNet1D, got {type(net).__name__}")


def _data(x) -> np.ndarray:
    return np.ascontiguousarray(training_data(x, ndim=1), dtype=np.float64)


def _kernels(backend: str):
    return _backend.kernels("relu_risk", _backend.resolve(backend, family="relu_risk"))


# --------------------------------------------------------------- the prepared state


class _Exact:
    """Everything about (net, x, mu, sigma) that the risk, gradient, HVP and Hessian share.

    Built in O(n m + m log m); afterwards the risk is O(m), the gradient O(m), each
    Hessian-vector product O(m) and the Hessian O(m^2).
    """

    def __init__(self, net: ReLUNet1D, c: np.ndarray, sigma: float, kernels):
        self.kernels = kernels
        self.n = c.shape[0]
        self.m = net.width
        self.sigma = sigma
        # writable copies: the kernels take plain (not read-only) arrays
        self.w1, self.w2, self.b = w1, w2, b = net.W1.copy(), net.W2.copy(), net.b1.copy()
        all_tau = net.kinks
        kinked = np.flatnonzero(~np.isnan(all_tau))
        tau = all_tau[kinked]
        order = np.argsort(tau, kind="stable")
        self.neuron = kinked[order]  # neuron at sorted kink j
        self.t = np.ascontiguousarray(tau[order])
        K = self.t.shape[0]
        self.jpos = np.zeros(self.m, dtype=np.int64)
        self.jpos[self.neuron] = np.arange(K)
        cls = np.where(b > 0, 2, 0).astype(np.int8)  # no kink: constant relu(b)
        cls[kinked] = np.where(w1[kinked] > 0, 1, -1)
        self.cls = cls
        self.S, self.T, self.P = kernels.segment_moments(self.t, c, sigma)
        # s = alpha_k y + beta_k on segment k
        self.alpha, self.beta = self._segment_lines(w2 * w1 / self.m, w2 * b / self.m)
        inv_s2 = 1.0 / (sigma * sigma)
        S0, S1, S2 = self.S
        # F_p[k] = sum_i E_i[f_i Y^p 1_k]
        self.F0 = self.alpha * S1 + self.beta * S0 + self.T[0] * inv_s2
        self.F1 = self.alpha * S2 + self.beta * S1 + self.T[1] * inv_s2

    @functools.cached_property
    def F0a(self) -> np.ndarray:
        """Per neuron: sum_i E_i[f_i 1{neuron active}] (not needed by the risk alone)."""
        return self._active(self.F0)

    @functools.cached_property
    def F1a(self) -> np.ndarray:
        """Per neuron: sum_i E_i[f_i Y 1{neuron active}]."""
        return self._active(self.F1)

    # -- sums over the neurons active on each segment, and over the segments where a neuron is active

    def _segment_lines(self, a, d):
        """Per-segment sums over the active neurons of per-neuron values a (slope) and d (offset).

        Segment k sees the w1 > 0 neurons with sorted kink j < k and the w1 < 0 neurons
        with j >= k (a prefix and a suffix sum, no add-then-subtract), plus the
        always-active ones (w1 = 0, b > 0)."""
        cls = self.cls
        always = cls == 2
        out = []
        for v in (a, d):
            vs = v[self.neuron]
            pos = np.where(cls[self.neuron] == 1, vs, 0.0)
            neg = np.where(cls[self.neuron] == -1, vs, 0.0)
            prefix = np.concatenate(([0.0], np.cumsum(pos)))
            suffix = np.concatenate((np.cumsum(neg[::-1])[::-1], [0.0]))
            out.append(prefix + suffix + v[always].sum())
        return out

    def _active(self, F):
        """Per neuron: sum of F over the segments where the neuron is active."""
        suffix = np.concatenate((np.cumsum(F[::-1])[::-1], [0.0]))  # suffix[k] = sum_{k' >= k}
        prefix = np.cumsum(F)  # prefix[k] = sum_{k' <= k}
        j, cls = self.jpos, self.cls
        out = np.where(cls == 1, suffix[j + 1], 0.0)  # w1 > 0: segments right of the kink
        out = np.where(cls == -1, prefix[j], out)  # w1 < 0: segments left of it
        return np.where(cls == 2, suffix[0], out)  # w1 = 0 < b: everywhere

    # -- public quantities

    def risk(self) -> float:
        S0, S1, S2 = self.S
        a, d = self.alpha, self.beta
        e = (a * a * S2 + 2 * a * d * S1 + d * d * S0 + 2 * a * S0).sum()
        return float(e / self.n + 1.0 / (self.sigma * self.sigma))

    def grad(self, wrt: str) -> np.ndarray:
        k1 = 2.0 / (self.n * self.m)
        w1, w2, b = self.w1, self.w2, self.b
        g_w2 = k1 * (w1 * self.F1a + b * self.F0a)
        g_b = k1 * w2 * self.F0a
        if wrt == "outer_bias":
            return np.concatenate((g_w2, g_b))
        return np.concatenate((k1 * w2 * self.F1a, g_w2, g_b))

    def dirac(self) -> tuple[np.ndarray, np.ndarray]:
        """(D_l, tau_l) per neuron (0 where w1 == 0); computed once (Lanczos calls hvp often)."""
        return self._dirac

    @functools.cached_property
    def _dirac(self) -> tuple[np.ndarray, np.ndarray]:
        w1, w2 = self.w1, self.w2
        D = np.zeros(self.m)
        tau = np.zeros(self.m)
        if self.t.shape[0]:
            j = np.arange(self.t.shape[0])
            seen = self.P[0] > 0  # kinks where some data density is left (far-out kinks have none)
            with np.errstate(over="ignore", invalid="ignore"):
                s_tau = self.alpha[j] * self.t + self.beta[j]
                fp = np.where(seen, s_tau * self.P[0] + self.P[1] / (self.sigma * self.sigma), 0.0)
            nl = self.neuron
            # numerator first: w2 = 0 gives 0 even where |w1| is tiny (fp / |w1| alone
            # would overflow and 0 * inf make a NaN); inf only where D is beyond float64
            with np.errstate(over="ignore"):
                D[nl] = (2.0 / (self.n * self.m) * w2[nl] * fp) / np.abs(w1[nl])
            tau[nl] = np.where(seen, self.t, 0.0)  # tau only enters multiplied by D
            if not np.isfinite(D).all():  # D ~ w2 / |w1|: beyond float64 for |w1| < ~1e-300
                l = int(np.flatnonzero(~np.isfinite(D))[0])
                raise ValueError(f"net: the Hessian's kink term of neuron {l} is beyond float64 "
                                 f"(w1 = {w1[l]:.3g}, w2 = {w2[l]:.3g}; it grows as w2/|w1|); "
                                 "the risk and its gradient are finite")
        return D, tau

    def hvp(self, v: np.ndarray, wrt: str) -> np.ndarray:
        m = self.m
        w1, w2, b = self.w1, self.w2, self.b
        if wrt == "outer_bias":
            v1, v2, vb = np.zeros(m), v[:m], v[m:]
        else:
            v1, v2, vb = v[:m], v[m:2 * m], v[2 * m:]
        # grad s . v = gamma_k y + delta_k on segment k
        gamma, delta = self._segment_lines((v2 * w1 + w2 * v1) / m, (v2 * b + w2 * vb) / m)
        S0, S1, S2 = self.S
        G0a = self._active(gamma * S1 + delta * S0)
        G1a = self._active(gamma * S2 + delta * S1)
        k1 = 2.0 / (self.n * m)
        c0, c1 = k1 * self.F0a, k1 * self.F1a  # curvature term: (w2_l, b_l) and (w2_l, w1_l)
        D, tau = self.dirac()
        dv = D * (vb + tau * v1)
        h_w2 = k1 * (w1 * G1a + b * G0a) + c0 * vb + c1 * v1
        h_b = k1 * w2 * G0a + c0 * v2 + dv
        if wrt == "outer_bias":
            return np.concatenate((h_w2, h_b))
        h_w1 = k1 * w2 * G1a + c1 * v2 + tau * dv
        return np.concatenate((h_w1, h_w2, h_b))

    def hessian(self, wrt: str) -> np.ndarray:
        m = self.m
        wrt_all = wrt == "all"
        P = (3 if wrt_all else 2) * m
        S = self.S
        L = np.ascontiguousarray(np.cumsum(S, axis=1)[:, :-1])  # L[:, j] = sum_{k <= j}
        U = np.ascontiguousarray(np.cumsum(S[:, ::-1], axis=1)[:, ::-1][:, 1:])  # U[:, j] = sum_{k > j}
        total = np.ascontiguousarray(S.sum(axis=1))
        H = np.empty((P, P))
        self.kernels.hessian_gauss_newton(self.cls, self.jpos, self.w1, self.w2, self.b, L, U, total,
                                          2.0 / (self.n * m * m), wrt_all, H)
        k1 = 2.0 / (self.n * m)
        idx = np.arange(m)
        o2 = m if wrt_all else 0
        ob = o2 + m
        c0 = k1 * self.F0a
        H[o2 + idx, ob + idx] += c0
        H[ob + idx, o2 + idx] += c0
        D, tau = self.dirac()
        H[ob + idx, ob + idx] += D
        if wrt_all:
            c1 = k1 * self.F1a
            H[o2 + idx, idx] += c1
            H[idx, o2 + idx] += c1
            H[ob + idx, idx] += tau * D
            H[idx, ob + idx] += tau * D
            H[idx, idx] += tau * tau * D
        return H


class DSMRisk:
    """The exact DSM risk of 1-D two-layer ReLU networks on fixed data, prepared once.

    For a :class:`bigstep.ReLUNet1D` ``s_theta`` of width m:

        R_n(theta) = (1/n) sum_i E_{Y ~ N(mu x_i, sigma^2)} [(s_theta(Y) + (Y - mu x_i)/sigma^2)^2]

    The data are checked and the kernels chosen when the object is built; each method
    takes a network.  The O(n m + m log m) state of the last network asked about is
    kept, so its risk, gradient, Hessian-vector products, Hessian and sharpness share it
    (then O(m) per product, O(m^2) for the Hessian).  The trainers' records use one
    DSMRisk per run; :func:`dsm_risk`, :func:`dsm_risk_grad`, ... are one-call
    shortcuts.

    Parameters
    ----------
    x : array
        The 1-D training data, shape (n,) (numpy, torch or any DLPack producer).
    mu, sigma : float
        The noise level, positive.
    wrt : str
        "outer_bias" (theta = (W2, b1), P = 2 width, the theory setting) or "all"
        (theta = (W1, W2, b1), P = 3 width): the layout of
        :meth:`bigstep.ReLUNet1D.theta`.
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Attributes
    ----------
    x : numpy.ndarray
        The training data, float64, shape (n,).
    mu, sigma : float
        The noise level.
    wrt : str
        The parameter layout.

    Notes
    -----
    Arrays come back as the type of ``x`` (of ``v`` for :meth:`hvp`), scalars as floats.

    Examples
    --------
    >>> import bigstep, numpy as np
    >>> risk = bigstep.DSMRisk([-1.0, 0.0, 1.0], 0.9, 0.5)
    >>> net = bigstep.ReLUNet1D.init(4, seed=0)
    >>> H = risk.hessian(net)
    >>> bool(np.allclose(risk.hvp(net, np.ones(8)), H @ np.ones(8)))
    True
    >>> op = risk.operator(net)                   # a scipy LinearOperator, products by hvp
    >>> op.shape, bool(np.allclose(op @ np.ones(8), H @ np.ones(8)))
    ((8, 8), True)
    """

    def __init__(self, x, mu, sigma, *, wrt: str = "outer_bias", backend: str = "auto"):
        xa = _data(x)
        self.mu = real_scalar(mu, "mu")
        self.sigma = real_scalar(sigma, "sigma")
        check_wrt(wrt)
        self.wrt = wrt
        self.x = xa
        self._c = np.ascontiguousarray(self.mu * xa)
        self._kernels = _kernels(backend)
        self._like = x if is_torch(x) else None
        self._last = None  # (net, its _Exact state)
        self._optimal = None

    def _state(self, net) -> _Exact:
        last = self._last
        if last is not None and last[0] is net:  # networks are immutable: identity is enough
            return last[1]
        _check_net(net)
        state = _Exact(net, self._c, self.sigma, self._kernels)
        self._last = (net, state)
        return state

    def _out(self, arr, like=None):
        return wrap_like(arr, self._like if like is None else like)

    def n_params(self, net) -> int:
        """P, the length of theta: 2 width (``wrt="outer_bias"``) or 3 width (``"all"``)."""
        _check_net(net)
        return (2 if self.wrt == "outer_bias" else 3) * net.width

    def risk(self, net) -> float:
        """R_n(theta), O(n m + m log m) (O(m) when the network's state is kept)."""
        return self._state(net).risk()

    def grad(self, net):
        """The gradient, shape (P,), with ``f_i(y) = s_theta(y) + (y - mu x_i) / sigma^2``:

            grad R_n(theta) = (2/n) sum_i E_i[f_i(Y) grad_theta s_theta(Y)]

        O(m) when the network's state is kept."""
        return self._out(self._state(net).grad(self.wrt))

    def hvp(self, net, v):
        """The Hessian-vector product ``(Hess R_n) v`` without forming the Hessian, shape
        (P,), for v of shape (P,); O(m) when the network's state is kept."""
        ex = self._state(net)
        return self._out(ex.hvp(_vector(v, self.n_params(net)), self.wrt), like=v)

    def hessian(self, net):
        """The exact Hessian, shape (P, P): Gauss-Newton part from cumulative Gaussian moments
        at the kinks (O(1) per entry) plus the curvature and (corrected-sign) Dirac terms on
        each neuron's own block (module docstring).  Memory O(m^2) for the output only."""
        return self._out(self._state(net).hessian(self.wrt))

    def sharpness(self, net, *, method: str = "auto", tol: float = 1e-10) -> float:
        """lambda_max, the largest eigenvalue of the Hessian.

        ``method="dense"``: numpy.linalg.eigvalsh of the Hessian; ``"lanczos"``: Lanczos
        with full reorthogonalisation on exact Hessian-vector products until the top Ritz
        pair's residual is below ``tol |lambda|``; ``"auto"``: dense up to 1024
        parameters, Lanczos above."""
        if method not in ("auto", "dense", "lanczos"):
            raise ValueError(f"method must be 'auto', 'dense' or 'lanczos', got {method!r}")
        tol = float(tol)
        if not (0 < tol < 1):
            raise ValueError(f"tol must lie in (0, 1), got {tol!r}")
        ex = self._state(net)
        P = self.n_params(net)
        if method == "dense" or (method == "auto" and P <= _DENSE_MAX):
            return float(np.linalg.eigvalsh(ex.hessian(self.wrt))[-1])
        from ._lanczos import largest_eigenvalue

        return largest_eigenvalue(lambda v: ex.hvp(v, self.wrt), P, tol=tol)

    @property
    def optimal_risk(self) -> float:
        """``R_n(s*)`` of these data (:func:`bigstep.optimal_risk`, computed once)."""
        if self._optimal is None:
            from .optimal_risk import optimal_risk

            self._optimal = optimal_risk(self.x, self.mu, self.sigma)
        return self._optimal

    def excess_risk(self, net) -> float:
        """The excess risk over the optimal score, non-negative:

            R_n(theta) - R_n(s*) = (1/n) sum_i E_i[(s_theta(Y) - s*(Y))^2]

        ``R_n(s*)`` is :attr:`optimal_risk`."""
        return self.risk(net) - self.optimal_risk

    def operator(self, net):
        """The Hessian at ``net`` as a ``scipy.sparse.linalg.LinearOperator`` (P, P),
        symmetric, float64, each product one exact HVP (for scipy's eigsh, cg, minres, ...).
        Needs scipy."""
        try:
            from scipy.sparse.linalg import LinearOperator
        except ImportError:
            raise ImportError("DSMRisk.operator returns a scipy LinearOperator: pip install scipy") from None
        ex = self._state(net)
        P = self.n_params(net)
        wrt = self.wrt

        def matvec(v):
            return ex.hvp(np.ascontiguousarray(np.asarray(v, dtype=np.float64).reshape(P)), wrt)

        return LinearOperator((P, P), matvec=matvec, rmatvec=matvec, dtype=np.float64)

    def __repr__(self):
        return f"DSMRisk(n={self.x.shape[0]}, mu={self.mu!r}, sigma={self.sigma!r}, wrt={self.wrt!r})"


# -------------------------------------------------------------------- public API


def dsm_risk(net, x, mu, sigma, *, backend: str = "auto") -> float:
    """Exact DSM risk of a 1-D network (no sampling):

        R_n(theta) = (1/n) sum_i E_{Y ~ N(mu x_i, sigma^2)} [(s_theta(Y) + (Y - mu x_i)/sigma^2)^2]

    Cost O(n m + m log m).  For several quantities of one network, or of many networks
    on the same data, build a :class:`DSMRisk` once.

    Parameters
    ----------
    net : ReLUNet1D
        The network ``s_theta``.
    x : array
        The 1-D training data, shape (n,).
    mu, sigma : float
        The noise level, positive.
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Returns
    -------
    float

    Examples
    --------
    >>> import bigstep
    >>> net = bigstep.ReLUNet1D(W1=[1.0], b1=[0.0], W2=[0.0])     # s = 0: risk = E[(Y - mu x)^2] / sigma^4
    >>> round(bigstep.dsm_risk(net, [0.0, 1.0], 1.0, 0.5), 12)   # = 1 / sigma^2
    4.0
    """
    _check_net(net)
    return DSMRisk(x, mu, sigma, backend=backend).risk(net)


def dsm_risk_grad(net, x, mu, sigma, *, wrt: str = "outer_bias", backend: str = "auto"):
    """The exact risk and its gradient, with ``f_i(y) = s_theta(y) + (y - mu x_i) / sigma^2``:

        grad R_n(theta) = (2/n) sum_i E_i[f_i(Y) grad_theta s_theta(Y)]

    Cost O(n m + m log m).

    Parameters
    ----------
    net : ReLUNet1D
        The network.
    x : array
        The 1-D training data, shape (n,).
    mu, sigma : float
        The noise level, positive.
    wrt : str
        "outer_bias" (theta = (W2, b1)) or "all" (theta = (W1, W2, b1)), as in
        :class:`DSMRisk`.
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Returns
    -------
    risk : float
        ``R_n(theta)``.
    grad : array
        Shape (2m,) for ``wrt="outer_bias"`` (order W2, b1) or (3m,) for ``wrt="all"``
        (order W1, W2, b1), in the array type of x.

    Examples
    --------
    >>> import bigstep
    >>> net = bigstep.ReLUNet1D.init(3, seed=1)
    >>> r, g = bigstep.dsm_risk_grad(net, [-1.0, 1.0], 0.9, 0.4)
    >>> g.shape
    (6,)
    """
    _check_net(net)
    ev = DSMRisk(x, mu, sigma, wrt=wrt, backend=backend)
    return ev.risk(net), ev.grad(net)


def dsm_risk_hessian(net, x, mu, sigma, *, wrt: str = "outer_bias", backend: str = "auto"):
    """Exact Hessian of ``R_n(theta)`` (:meth:`DSMRisk.hessian`).

    The Gauss-Newton part, the curvature part and the Dirac terms of the moving kinks,
    with the sign of the Dirac term corrected from the paper's eq. (15) (docs/design.md
    section 2.3).  Cost O(n m + m^2); memory O(m^2) for the output only.

    Parameters
    ----------
    net : ReLUNet1D
        The network.
    x : array
        The 1-D training data, shape (n,).
    mu, sigma : float
        The noise level, positive.
    wrt : str
        "outer_bias" or "all", as in :class:`DSMRisk`.
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Returns
    -------
    array
        Shape (P, P), P = 2m (``"outer_bias"``) or 3m (``"all"``), symmetric, float64.

    Examples
    --------
    >>> import bigstep, numpy as np
    >>> net = bigstep.ReLUNet1D.init(5, seed=0)
    >>> H = bigstep.dsm_risk_hessian(net, [-1.0, 0.0, 1.0], 0.8, 0.6)
    >>> H.shape, bool(np.allclose(H, H.T))
    ((10, 10), True)
    """
    _check_net(net)
    return DSMRisk(x, mu, sigma, wrt=wrt, backend=backend).hessian(net)


def _vector(v, P: int) -> np.ndarray:
    va = as_numpy(v, "v")
    if va.shape != (P,):
        raise ValueError(f"v must have shape ({P},) (the parameter count), got shape {va.shape}")
    va = np.ascontiguousarray(va, dtype=np.float64)
    if not np.isfinite(va).all():
        raise ValueError("v must be finite")
    return va


def dsm_risk_hvp(net, x, mu, sigma, v, *, wrt: str = "outer_bias", backend: str = "auto"):
    """Hessian-vector product ``(Hess R_n) v`` without forming the Hessian.

    Cost O(n m + m log m) for the product; a :class:`DSMRisk` reuses the O(n m) part
    across products (O(m) each).

    Parameters
    ----------
    net : ReLUNet1D
        The network.
    x : array
        The 1-D training data, shape (n,).
    mu, sigma : float
        The noise level, positive.
    v : array
        Shape (P,), finite.
    wrt : str
        "outer_bias" or "all", as in :class:`DSMRisk`.
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Returns
    -------
    array
        Shape (P,), in the array type of v.

    Examples
    --------
    >>> import bigstep, numpy as np
    >>> net, x = bigstep.ReLUNet1D.init(4, seed=2), [-1.0, 0.5]
    >>> v = np.arange(8.0)
    >>> hv = bigstep.dsm_risk_hvp(net, x, 0.9, 0.5, v)
    >>> bool(np.allclose(hv, bigstep.dsm_risk_hessian(net, x, 0.9, 0.5) @ v))
    True
    """
    _check_net(net)
    return DSMRisk(x, mu, sigma, wrt=wrt, backend=backend).hvp(net, v)


def sharpness(net, x, mu, sigma, *, wrt: str = "outer_bias", method: str = "auto", tol: float = 1e-10,
              backend: str = "auto") -> float:
    """Sharpness lambda_max, the largest eigenvalue of the exact Hessian of ``R_n`` at theta.

    Parameters
    ----------
    net : ReLUNet1D
        The network.
    x : array
        The 1-D training data, shape (n,).
    mu, sigma : float
        The noise level, positive.
    wrt : str
        "outer_bias" or "all", as in :class:`DSMRisk`.
    method : str
        "dense" forms the Hessian and calls numpy.linalg.eigvalsh; "lanczos" runs
        Lanczos with full reorthogonalisation on the exact Hessian-vector product (O(m)
        per product after one O(n m) set-up) until the top Ritz pair's residual is below
        ``tol |lambda|``; "auto" is dense up to 1024 parameters, Lanczos above.
    tol : float
        Lanczos' relative residual, in (0, 1).
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Returns
    -------
    float

    Examples
    --------
    >>> import bigstep, numpy as np
    >>> net, x = bigstep.ReLUNet1D.init(6, seed=3), [-1.0, 0.2, 1.0]
    >>> H = bigstep.dsm_risk_hessian(net, x, 0.9, 0.5)
    >>> bool(np.isclose(bigstep.sharpness(net, x, 0.9, 0.5, method="lanczos"), np.linalg.eigvalsh(H)[-1]))
    True
    """
    _check_net(net)
    return DSMRisk(x, mu, sigma, wrt=wrt, backend=backend).sharpness(net, method=method, tol=tol)


def is_linearly_stable(net, x, mu, sigma, *, lr, wrt: str = "outer_bias", backend: str = "auto") -> bool:
    """Whether ``lambda_max <= 2 / (m lr)``, the linear stability of SGD with step ``m lr`` (eq. 8).

    Parameters
    ----------
    net : ReLUNet1D
        The network.
    x : array
        The 1-D training data, shape (n,).
    mu, sigma : float
        The noise level, positive.
    lr : float
        The learning rate (the trainers' step is m lr).
    wrt : str
        "outer_bias" or "all": the parameters trained.
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Returns
    -------
    bool

    Examples
    --------
    >>> import bigstep
    >>> net = bigstep.ReLUNet1D.init(4, seed=0)
    >>> bigstep.is_linearly_stable(net, [-1.0, 1.0], 0.9, 0.5, lr=1e-6)
    True
    """
    lr_v = real_scalar(lr, "lr")
    lam = sharpness(net, x, mu, sigma, wrt=wrt, backend=backend)
    return bool(lam <= 2.0 / (net.width * lr_v))


def excess_risk(net, x, mu, sigma, *, backend: str = "auto") -> float:
    """Excess risk of a 1-D network over the optimal score, non-negative:

        R_n(theta) - R_n(s*) = (1/n) sum_i E_i[(s_theta(Y) - s*(Y))^2]

    ``R_n(s*)`` comes from :func:`bigstep.optimal_risk` (adaptive quadrature, 1e-10
    relative).

    Parameters
    ----------
    net : ReLUNet1D
        The network.
    x : array
        The 1-D training data, shape (n,).
    mu, sigma : float
        The noise level, positive.
    backend : str
        "auto" (cpp, then numba), "cpp" or "numba".

    Returns
    -------
    float

    Examples
    --------
    >>> import bigstep
    >>> net = bigstep.ReLUNet1D.init(8, seed=0)
    >>> bigstep.excess_risk(net, [-1.0, 1.0], 0.9, 0.5) > 0
    True
    """
    _check_net(net)
    return DSMRisk(x, mu, sigma, backend=backend).excess_risk(net)
