"""rf.fit and the fitted model: exact losses, Monte Carlo estimates, training dynamics."""

from __future__ import annotations

import math

import numpy as np

from .._arrays import as_numpy, wrap_like
from .._validate import integer
from ..random import gaussian_noise
from . import _gaussian, _model
from ._model import STREAM_MC, schedule


class RFModel:
    """A fitted random-features score at diffusion time t (what :func:`fit` returns):

        s_A(y) = (A / sqrt(p)) rho(W y / sqrt(d))

    Attributes
    ----------
    x : numpy.ndarray
        The training data (n, d).
    W : numpy.ndarray
        The feature weights (p, d).
    t, n_noise, rho, lam, seed
        The arguments of the fit (n_noise an int or math.inf).
    mu, sigma, delta : float
        ``mu = exp(-t)``, sigma, ``delta = 1 - exp(-2t)`` (Delta in :mod:`bigstep.rf`).
    K, R : numpy.ndarray
        The training sums K (p, p) and R (p, d), averaged over the ``n n_noise`` samples
        (:mod:`bigstep.rf`).
    xi2 : float
        The average of ``||xi||^2`` over the samples.
    Z : numpy.ndarray
        ``Z = (K + lam I)^{-1} R``, shape (p, d).
    A : numpy.ndarray
        ``A = -sqrt(p / delta) Z^T``, shape (d, p): the exact minimiser of the train loss.
    n, d, p : int
        The numbers of training points, dimensions and features.
    backend : str
        The backend of the feature kernel.
    """

    def __init__(self, x, W, t, n_noise, rho, lam, seed, K, R, xi2, *, backend="auto", bound=0.0, Z=None):
        self.x, self.W, self.t, self.n_noise = x, W, t, n_noise
        self.rho, self.lam, self.seed = rho, lam, seed
        self.mu, self.sigma, self.delta = schedule(t)
        self.K, self.R, self.xi2, self.series_bound = K, R, xi2, bound
        self.Z = _model.ridge_solve(K, R, lam) if Z is None else Z
        self.backend = backend
        self._pop = None
        self._eig = None

    n = property(lambda self: self.x.shape[0])
    d = property(lambda self: self.x.shape[1])
    p = property(lambda self: self.W.shape[0])

    @property
    def A(self) -> np.ndarray:
        return -math.sqrt(self.p / self.delta) * self.Z.T

    def __repr__(self):
        return (f"RFModel(n={self.n}, d={self.d}, p={self.p}, n_noise={self.n_noise}, t={self.t}, rho={self.rho!r}, "
                f"lam={self.lam}, seed={self.seed})")

    # ------------------------------------------------------------------ evaluation

    def _features(self, y) -> np.ndarray:
        ya = np.ascontiguousarray(as_numpy(y, "y"), dtype=np.float64)
        if ya.ndim != 2 or ya.shape[1] != self.d:
            if ya.size % self.d:
                raise ValueError(f"y must have shape (q, {self.d}), got shape {ya.shape}")
            ya = ya.reshape(-1, self.d)
        return _model.impl(self.backend).rf_features(ya, self.W, _model._RHO_CODES[self.rho])

    def features(self, y):
        """The features ``rho(y W^T / sqrt(d))``, shape (q, p), through the compiled kernel;
        float64 in y's array type."""
        return wrap_like(self._features(y), y)

    def score(self, y):
        """The score ``s_A(y) = (A / sqrt(p)) rho(W y / sqrt(d))`` for y (q, d): shape
        (q, d), float64 in y's array type."""
        return wrap_like(-(self._features(y) @ self.Z) / math.sqrt(self.delta), y)

    def _population(self):
        if self._pop is None:
            U, bound = _gaussian.population_gram(self.rho, self.W)
            self._pop = (U, _gaussian.stein_rows(self.rho, self.W), bound)
        return self._pop

    # ------------------------------------------------------------------ exact losses

    def _losses(self, Z):
        d, dl = self.d, self.delta
        U, Cy, _ = self._population()
        zuz = float(np.sum(Z * (U @ Z)))
        zc = float(np.sum(Z * Cy))
        train = (float(np.sum(Z * (self.K @ Z))) - 2.0 * float(np.sum(Z * self.R)) + self.xi2
                 + self.lam * float(np.sum(Z * Z))) / d
        test = (zuz - 2.0 * math.sqrt(dl) * zc + d) / d
        score_err = (zuz / dl - 2.0 * zc / math.sqrt(dl) + d) / d
        return train, test, score_err

    def train_loss(self) -> float:
        """The train loss, exact (for n_noise = inf the noise-averaged limit), M = n_noise:

            (1/(n M d)) sum ||sqrt(Delta) s_A(y) + xi||^2 + Delta lam / (p d) ||A||_F^2

        The sum runs over the n M training samples (y, xi) of the fit."""
        return self._losses(self.Z)[0]

    def test_loss(self) -> float:
        """The test loss over fresh data x ~ N(0, I), without sampling:

            (1/d) E_{x, xi} ||sqrt(Delta) s_A(exp(-t) x + sqrt(Delta) xi) + xi||^2

        in closed form (relu, relu_centered, erf, linear) or a Hermite series (tanh)."""
        return self._losses(self.Z)[1]

    def score_error(self) -> float:
        """The score error, exact like :meth:`test_loss` (the true score is -y):

            (1/d) E_y ||s_A(y) + y||^2,   y ~ N(0, I)

        Identity: ``test_loss = 1 - Delta + Delta score_error``."""
        return self._losses(self.Z)[2]

    def noise_averaged_loss(self) -> float:
        """Exact empirical test loss: on the training points, the noise averaged exactly
        (a Hermite series):

            (1/(n d)) sum_nu E_xi ||sqrt(Delta) s_A(mu x_nu + sigma xi) + xi||^2
        """
        K, R, _ = _gaussian.noise_averaged_gram(self.rho, self.x, self.W, self.mu, self.sigma)
        Z = self.Z
        return (float(np.sum(Z * (K @ Z))) - 2.0 * float(np.sum(Z * R)) + self.d) / self.d

    # ------------------------------------------------------------------ Monte Carlo

    def _mc_inputs(self, n_mc, seed, offset):
        n_mc = integer(n_mc, "n_mc", minimum=2)
        seed = _model.check_seed(seed)
        xi = gaussian_noise(seed, (n_mc, self.d), stream=STREAM_MC, offset=offset)
        idx = np.arange(n_mc) % self.n
        return self.mu * self.x[idx] + self.sigma * xi, xi, idx

    def empirical_test_loss(self, *, n_mc=4096, seed=0):
        """Monte Carlo over fresh noise of the empirical test loss, with its standard error:

            (1/(n d)) sum_nu E_xi ||sqrt(Delta) s_A(mu x_nu + sigma xi) + xi||^2

        Draw j uses training point j mod n and the noise
        ``gaussian_noise(seed, (n_mc, d), stream=13)[j]``; the standard error is
        ``std / sqrt(n_mc)`` (conservative: the points are stratified).

        Returns
        -------
        value, standard_error : float
        """
        y, xi, _ = self._mc_inputs(n_mc, seed, 0)
        r = math.sqrt(self.delta) * self.score(y) + xi
        v = np.sum(r * r, axis=1) / self.d
        return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))

    def s_star_distance(self, *, n_mc=4096, seed=0):
        """Monte Carlo distance to the empirical optimal score, with its standard error:

            (1/d) E ||s_A(y) - s*(y)||^2,   y = mu x_nu + sigma xi

        over the noised training distribution (nu uniform, stratified as in
        :meth:`empirical_test_loss`, noise from stream 13 at offset ``n_mc d``);
        ``s*`` is :func:`bigstep.optimal_score` of the training set.  Small when ``s_A``
        has memorized the training set.

        Returns
        -------
        value, standard_error : float
        """
        from ..optimal_score import optimal_score

        y, _, _ = self._mc_inputs(n_mc, seed, n_mc * self.d)
        diff = self.score(y) - optimal_score(y, self.x, self.mu, self.sigma)
        v = np.sum(diff * diff, axis=1) / self.d
        return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))

    # ------------------------------------------------------------------ dynamics

    def _eigen(self):
        if self._eig is None:
            ev, V = np.linalg.eigh(self.K)
            ev = np.maximum(ev, 0.0) + self.lam
            Rt = V.T @ self.R
            U, Cy, _ = self._population()
            M = (Rt @ Rt.T) * (V.T @ U @ V)
            c = np.sum((V.T @ Cy) * Rt, axis=1)
            r2 = np.sum(Rt * Rt, axis=1)
            self._eig = (ev, V, Rt, M, c, r2)
        return self._eig

    def _factors(self, time, lr):
        """D_i(time): Z(time) = V diag(D) V^T R for GD (lr, time = step count) or gradient flow."""
        ev = self._eigen()[0]
        tiny = ev.max() * self.p * np.finfo(float).eps if ev.max() > 0 else 0.0
        safe = np.where(ev > tiny, ev, 1.0)
        if lr is None:
            c = 2.0 * self.delta / (self.d * self.p) * time
            return np.where(ev > tiny, -np.expm1(-c * ev) / safe, c)
        c = 2.0 * lr * self.delta / (self.d * self.p)
        x = c * ev
        with np.errstate(over="ignore", invalid="ignore"):
            small = np.abs(x) < 0.5
            g = np.where(small, -np.expm1(time * np.log1p(-np.where(small, x, 0.0))), 1.0 - (1.0 - x) ** time)
        return np.where(ev > tiny, g / safe, c * time)

    def A_at(self, train_time, *, lr=None) -> np.ndarray:
        """A after gradient descent from A = 0 on the train loss, in closed form from one
        eigendecomposition of K: ``train_time`` steps of ``A <- A - lr grad L(A)`` (lr
        given), or gradient flow ``dA/dtau = -grad L(A)`` up to ``tau = train_time`` (lr
        None)."""
        ev, V, Rt, *_ = self._eigen()
        Z = V @ (self._factors(float(train_time), lr)[:, None] * Rt)
        return -math.sqrt(self.p / self.delta) * Z.T

    def dynamics(self, train_times, *, lr=None) -> dict:
        """Train loss, test loss and score error along the training from A = 0.

        Gradient descent (``lr`` given; ``train_times`` are step counts) or gradient flow
        (``lr=None``; continuous times), each time in O(p^2) after one
        eigendecomposition.  Stable GD needs ``lr < d p / (Delta lambda_max(K + lam I))``.
        (Training time, not the diffusion time t.)

        Returns
        -------
        dict of numpy.ndarray
            train_time, train_loss, test_loss, score_error.
        """
        times = np.asarray(train_times, dtype=np.float64).reshape(-1)
        if (times < 0).any() or not np.isfinite(times).all():
            raise ValueError("train_times must be finite and >= 0")
        if lr is not None:
            lr = _model.check_positive(lr, "lr")
        ev, V, Rt, M, c, r2 = self._eigen()
        d, dl = self.d, self.delta
        out = {k: np.empty(times.size) for k in ("train_loss", "test_loss", "score_error")}
        for j, tau in enumerate(times):
            D = self._factors(tau, lr)
            zz = float(np.sum(D * D * r2))
            zkz = float(np.sum(D * D * (ev - self.lam) * r2))
            zr = float(np.sum(D * r2))
            zuz = float(D @ M @ D)
            zc = float(D @ c)
            out["train_loss"][j] = (zkz - 2 * zr + self.xi2 + self.lam * zz) / d
            out["test_loss"][j] = (zuz - 2 * math.sqrt(dl) * zc + d) / d
            out["score_error"][j] = (zuz / dl - 2 * zc / math.sqrt(dl) + d) / d
        out["train_time"] = times
        return out


def fit(x, t, *, p, n_noise, rho="relu", lam=1e-3, seed=0, backend="auto") -> RFModel:
    """Exact ridge fit of the random-features DSM score (the model of :mod:`bigstep.rf`).

    Memory O(p^2 + p d + n d).

    Parameters
    ----------
    x : array
        Training data (n, d), finite.
    t : float
        Diffusion time > 0; mu = exp(-t), Delta = 1 - exp(-2t).
    p : int
        The number of random features, >= 1; ``W = gaussian_noise(seed, (p, d), stream=10)``.
    n_noise : int or float
        Noise samples M per data point (an int >= 1, ``n M max(d, p) < 2**62``) or
        math.inf (the noise averaged exactly).
    rho : str
        "relu", "relu_centered", "tanh", "erf" or "linear".
    lam : float
        The ridge, >= 0 (lam = 0: the minimum-norm solution).
    seed : int
        The noise xi of sample ``s = nu M + j`` is
        ``gaussian_noise(seed, (n M, d), stream=11)[s]``.
    backend : str
        "auto", "cpp" or "numba" (the Gram kernel; n_noise = inf does not use it).

    Returns
    -------
    RFModel
        The fit: A, the losses, the dynamics.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> from bigstep import rf
    >>> x = bigstep.gaussian_noise(1, (40, 20))
    >>> model = rf.fit(x, t=0.5, p=30, n_noise=4, rho="relu", lam=1e-2, seed=0)
    >>> model.A.shape
    (20, 30)
    >>> bool(model.train_loss() < model.test_loss())
    True
    """
    xa = _model.check_data(x)
    t = _model.check_positive(t, "t")
    p = integer(p, "p", minimum=1)
    n_noise = _model.check_n_noise(n_noise)
    rho = _model.check_rho(rho)
    lam = _model.check_lam(lam)
    seed = _model.check_seed(seed)
    _model.check_size(xa.shape[0], n_noise, xa.shape[1], p)
    W = _model.weights(seed, p, xa.shape[1])
    K, R, xi2, bound = _model.gram(xa, W, t, n_noise, seed, rho, backend)
    return RFModel(xa, W, t, n_noise, rho, lam, seed, K, R, xi2, bound=bound, backend=backend)
