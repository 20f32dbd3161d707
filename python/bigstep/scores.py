"""Time-dependent score functions s(x, t) for the reverse diffusion (paper Section 3,
Section 7 and Appendix E).

Each built-in score is callable as ``score(x, t)`` with x of shape (N, d) and t a
scalar or an array of shape (N,) (one time per row), and returns an array (N, d).
The noise level at time t is (mu(t), sigma(t)) of the forward process
``X_t = mu(t) X_0 + sigma(t) xi``:

- ``schedule="ou"`` (default, the paper's text): mu(t) = exp(-t),
  sigma(t) = sqrt(1 - exp(-2t)) (the Ornstein-Uhlenbeck process);
- ``schedule="notebook"`` (the authors' notebooks, docs/design.md section 2b):
  mu(t) = exp(-2t), sigma(t) = sqrt(1 - exp(-2t)) (not an OU pair).

Built-in scores (:class:`EmpiricalScore`, :class:`GaussianScore`,
:class:`bigstep.TimeReLUScore`) run fused in compiled code inside
:func:`bigstep.sample_reverse`; any other callable ``f(x, t) -> (N, d)`` works too, on
a slower Python loop with the same noise.  Everything is computed in float64.
"""

from __future__ import annotations

import numpy as np

from ._arrays import as_numpy, is_torch, result_dtype, wrap_like
from ._torch import device_route
from ._validate import as_float64, schedule_rate, training_data

__all__ = ["Score", "EmpiricalScore", "GaussianScore", "noise_schedule"]

def noise_schedule(t, *, kind: str = "ou"):
    """Noise level (mu(t), sigma(t)) of the forward process ``X_t = mu(t) X_0 + sigma(t) xi``.

    The one schedule function of bigstep; the scores and samplers choose the kind with
    their ``schedule=`` argument.  sigma is computed as ``sqrt(-expm1(-2t))``, accurate
    at tiny t.

    Parameters
    ----------
    t : float or array
        Diffusion times, positive and finite (numpy, torch or any DLPack producer).
    kind : str
        ``"ou"`` (default, the paper's text): (exp(-t), sqrt(1 - exp(-2t))), the
        Ornstein-Uhlenbeck process; ``"notebook"`` (the authors' notebooks):
        (exp(-2t), sqrt(1 - exp(-2t))).

    Returns
    -------
    mu, sigma : array or scalar
        Of t's shape and type: float32 for a float32 array (or tensor), float64 for
        anything else; torch tensors for a torch tensor, numpy scalars for a scalar.

    Examples
    --------
    >>> import bigstep
    >>> mu, sigma = bigstep.noise_schedule(0.2)
    >>> round(float(mu), 4), round(float(sigma), 4)
    (0.8187, 0.5742)
    >>> bigstep.noise_schedule(np.float32(0.2), kind="notebook")[0].dtype
    dtype('float32')
    """
    rate = schedule_rate(kind, "kind")
    if device_route("auto", {"t": t}):  # t on a device: mu and sigma there, in t's array type and dtype
        from ._torch._api import noise_schedule as device_schedule

        return tuple(wrap_like(v, t) for v in device_schedule(t, rate))
    ta = as_numpy(t, "t")
    tf = ta.astype(result_dtype(ta), copy=False)
    if not np.isfinite(tf).all() or (tf <= 0).any():
        bad = tf[~(np.isfinite(tf) & (tf > 0))]
        raise ValueError(f"t must be positive and finite, got {bad.flat[0]!r}")
    mu = np.exp(tf.dtype.type(-rate) * tf)
    sigma = np.sqrt(-np.expm1(-2 * tf))
    if tf.ndim == 0 and not is_torch(t):
        return tf.dtype.type(mu), tf.dtype.type(sigma)
    return wrap_like(mu, t), wrap_like(sigma, t)


def _points(x, dim: int, convert=as_numpy):
    arr = as_float64(convert(x, "x"))
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"x must have shape (N, {dim}), got shape {tuple(arr.shape)}")
    return arr


def _times(t, n: int, convert=as_numpy):
    """t as shape (1,) or (n,)."""
    ta = as_float64(convert(t, "t"))
    if ta.ndim == 0:
        return ta.reshape(1)
    if tuple(ta.shape) != (n,):
        raise ValueError(f"t must be a scalar or have shape ({n},) (one time per row), got shape {tuple(ta.shape)}")
    return ta


class Score:
    """Base of the built-in scores (:class:`EmpiricalScore`, :class:`GaussianScore`,
    :class:`bigstep.TimeReLUScore`): the schedule and the call convention.

    ``score(x, t)`` takes x of shape (N, dim) and t a scalar or an array of shape (N,),
    and returns the score, float64 of shape (N, dim), in x's array type.

    Attributes
    ----------
    dim : int
        The dimension d of the points.
    schedule : str
        The noise schedule, "ou" or "notebook" (:func:`noise_schedule`).
    """

    dim: int
    schedule: str
    _device = None  # {name: torch tensor} of a score built from device arrays
    _like = None  # then an empty array of the caller's type on that device

    def _arrays(self) -> dict:
        """The arrays a call of this score reads (their device must be the call's)."""
        return {}

    @staticmethod
    def _check_schedule(schedule) -> None:
        schedule_rate(schedule)

    def _inputs(self, x, t):
        """x as float64 (N, dim) and t as (1,) or (N,)."""
        xa = _points(x, self.dim)
        return xa, _times(t, xa.shape[0])

    def noise_level(self, t):
        """(mu(t), sigma(t)) of this score's schedule, float64 arrays of t's shape."""
        return noise_schedule(t, kind=self.schedule)

    def __call__(self, x, t):
        if device_route("auto", {"x": x, "t": t, **self._arrays()}):  # device arrays: torch on their device
            from ._torch._api import call_score

            return call_score(self, x, t)
        xa, ta = self._inputs(x, t)
        mu, sigma = self.noise_level(ta)
        return wrap_like(self._evaluate(xa, ta, mu, sigma), x)


class EmpiricalScore(Score):
    """The empirical optimal score of training data at the noise level of time t (eq. 6):

        s*(x, t) = (mu(t) sum_i w_i x_i - x) / sigma(t)^2
        w_i      = softmax_i(-||x - mu(t) x_i||^2 / (2 sigma(t)^2))

    Sampling with it reproduces the training points (memorization).

    Parameters
    ----------
    x_train : array
        Shape (n, d), or (n,) for 1-D data (then dim = 1 and x has shape (N, 1));
        finite, n >= 1.
    schedule : str
        "ou" (default) or "notebook" (see :mod:`bigstep.scores`).
    method : str
        How ``s*`` is evaluated, here and in :func:`bigstep.sample_reverse`'s fused loop:
        "auto" (the fast Gauss transform at the steps where its cost model prefers it,
        d <= 3), "pairwise" or "fgt" (see :func:`bigstep.optimal_score`).

    Attributes
    ----------
    x_train : numpy.ndarray
        The training data, float64.
    dim : int
        d (1 for 1-D data).
    schedule : str
        The noise schedule.
    method : str
        How ``s*`` is evaluated.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> s = bigstep.EmpiricalScore(np.array([[1.0, 0.0], [-1.0, 0.0]]))
    >>> s(np.zeros((1, 2)), 0.5).shape
    (1, 2)
    """

    def __init__(self, x_train, *, schedule: str = "ou", method: str = "auto"):
        from .fgt import check_method

        schedule_rate(schedule)
        self.method = check_method(method)
        if device_route("auto", {"x_train": x_train}):  # device data stays there: x_train a float64 torch tensor
            from ._torch._api import empirical_data

            self.x_train, self._like = empirical_data(x_train)
        else:
            xa = training_data(x_train)
            self.x_train = np.array(xa, dtype=np.float64)  # a private copy: later edits by the caller do not leak in
        self.one_d = self.x_train.ndim == 1
        self.dim = 1 if self.one_d else self.x_train.shape[1]
        self.schedule = schedule
        if method == "fgt" and self.dim > 3:
            raise ValueError(f"method='fgt' needs data of dimension d <= 3, got d = {self.dim}")

    def _arrays(self) -> dict:
        return {"x_train": self.x_train}

    def _evaluate(self, x, t, mu, sigma):
        from .optimal_score import optimal_score

        if mu.shape[0] == 1:  # one time for every row
            mu, sigma = mu[0], sigma[0]
        if self.one_d:
            return optimal_score(np.ascontiguousarray(x[:, 0]), self.x_train, mu, sigma,
                                 method=self.method).reshape(-1, 1)
        return optimal_score(x, self.x_train, mu, sigma, method=self.method)

    def __repr__(self):
        return f"EmpiricalScore(n={self.x_train.shape[0]}, dim={self.dim}, schedule={self.schedule!r})"


class GaussianScore(Score):
    """Exact score of N(mean, cov) pushed through the forward process to time t:

        s(x, t) = -C_t^{-1} (x - mu(t) mean),   C_t = mu(t)^2 cov + sigma(t)^2 I

    computed through the eigendecomposition ``cov = U diag(lam) U^T`` (cov symmetric
    positive semi-definite; a singular cov is fine since sigma(t) > 0).
    :meth:`GaussianScore.fit` fits mean and covariance to training data: the paper's
    "Gaussian fitted on the training data".

    Parameters
    ----------
    mean : array
        Shape (d,), finite.
    cov : array or float
        Shape (d, d), symmetric positive semi-definite, or a scalar v for v I.
    schedule : str
        "ou" (default) or "notebook".

    Attributes
    ----------
    mean, cov : numpy.ndarray
        The Gaussian, float64.
    eigenvalues, eigenvectors : numpy.ndarray
        ``lam`` (d,) and ``U`` (d, d) (columns) of cov.
    dim : int
        d.
    schedule : str
        The noise schedule.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> s = bigstep.GaussianScore(np.zeros(2), np.eye(2))
    >>> s(np.ones((1, 2)), 1.0)   # N(0, I) is invariant: s(x) = -x
    array([[-1., -1.]])
    """

    def __init__(self, mean, cov, *, schedule: str = "ou"):
        schedule_rate(schedule)
        dev = None
        if device_route("auto", {"mean": mean, "cov": cov}):  # checked and decomposed on the host, kept on the device
            from ._torch._api import to_host

            dev, (mean, cov) = to_host(mean=mean, cov=cov)
        m = np.array(as_numpy(mean, "mean"), dtype=np.float64)
        if m.ndim != 1 or m.shape[0] == 0:
            raise ValueError(f"mean must have shape (d,) with d >= 1, got shape {m.shape}")
        if not np.isfinite(m).all():
            raise ValueError("mean must be finite, got NaN or infinity")
        d = m.shape[0]
        c = np.array(as_numpy(cov, "cov"), dtype=np.float64)
        if c.ndim == 0:
            c = c * np.eye(d)
        if c.shape != (d, d):
            raise ValueError(f"cov must be a scalar or have shape ({d}, {d}) to match mean, got shape {c.shape}")
        if not np.isfinite(c).all():
            raise ValueError("cov must be finite, got NaN or infinity")
        scale = max(np.abs(c).max(), np.finfo(np.float64).tiny)
        if np.abs(c - c.T).max() > 1e-10 * scale:
            raise ValueError("cov must be symmetric")
        lam, vecs = np.linalg.eigh(0.5 * (c + c.T))
        if lam.min() < -1e-10 * scale:
            raise ValueError(f"cov must be positive semi-definite, got eigenvalue {lam.min()!r}")
        self.mean = m
        self.cov = c
        self.eigenvalues = np.clip(lam, 0.0, None)
        self.eigenvectors = np.ascontiguousarray(vecs)
        self.dim = d
        self.schedule = schedule
        if dev is not None:
            from ._torch._api import to_device

            self._device, self._like = to_device(dev, mean=m, vecs=self.eigenvectors, lam=self.eigenvalues)

    def _arrays(self) -> dict:
        return {"mean": self.mean if self._device is None else self._device["mean"]}

    @classmethod
    def fit(cls, x_train, *, schedule: str = "ou"):
        """GaussianScore with the sample mean and covariance of x_train (n, d).

        Maximum likelihood: the covariance has divisor n.  ``schedule`` as in the
        constructor."""
        if device_route("auto", {"x_train": x_train}):  # moments on the device
            from ._torch._api import gaussian_moments

            return cls(*gaussian_moments(x_train), schedule=schedule)
        xa = np.asarray(training_data(x_train, ndim=2), dtype=np.float64)
        m = xa.mean(axis=0)
        xc = xa - m
        return cls(m, xc.T @ xc / xa.shape[0], schedule=schedule)

    def _evaluate(self, x, t, mu, sigma):
        u = self.eigenvectors
        v = x - mu[:, None] * self.mean
        w = (v @ u) / (mu[:, None] ** 2 * self.eigenvalues + sigma[:, None] ** 2)
        return -(w @ u.T)

    def __repr__(self):
        return f"GaussianScore(dim={self.dim}, schedule={self.schedule!r})"
