"""A time-dependent random-features score for the reverse sampler, and the memorization of
the samples it generates."""

from __future__ import annotations

import numpy as np

from .._validate import integer
from . import _fit


class RFScore:
    """A time-dependent score ``s(x, t)`` from one exact fit per time of a grid.

    The fits share W and the seed; ``s(x, t)`` is the fit at the grid time nearest to t
    in log t.  A plain callable ``f(x, t)``, so :func:`bigstep.sample_reverse` runs it
    through its generic path.

    Parameters
    ----------
    x : array
        Training data (n, d).
    times : array
        The grid of diffusion times, positive.
    p, n_noise, rho, lam, seed, backend
        As in :func:`fit`.

    Attributes
    ----------
    times : numpy.ndarray
        The grid, sorted.
    fits : list of RFModel
        One fit per grid time.
    dim : int
        d.

    Examples
    --------
    >>> import bigstep
    >>> from bigstep import rf
    >>> x = bigstep.gaussian_noise(0, (10, 3))
    >>> s = rf.RFScore(x, [0.05, 0.5, 1.0], p=8, n_noise=2)
    >>> s(x, 0.4).shape
    (10, 3)
    """

    def __init__(self, x, times, *, p, n_noise, rho="relu", lam=1e-3, seed=0, backend="auto"):
        times = np.sort(np.atleast_1d(np.asarray(times, dtype=np.float64)))
        if times.size == 0 or not (np.isfinite(times).all() and (times > 0).all()):
            raise ValueError(f"times must be positive finite numbers, got {times!r}")
        self.times = times
        self.fits = [_fit.fit(x, float(tk), p=p, n_noise=n_noise, rho=rho, lam=lam, seed=seed, backend=backend)
                     for tk in times]
        self.dim = self.fits[0].d

    def __call__(self, x, t):
        """s(x, t) for x (N, dim), in x's array type."""
        k = int(np.argmin(np.abs(np.log(self.times) - np.log(max(float(t), 1e-300)))))
        return self.fits[k].score(x)


def sample_memorization(score: RFScore, *, n_samples=500, T=1.0, delta=0.01, n_steps=100, seed=0,
                        threshold=1 / 3):
    """Draw reverse-diffusion samples with an :class:`RFScore` and measure their memorization.

    The samples come from :func:`bigstep.sample_reverse`; the fraction is the share whose
    nearest-neighbour ratio d1 / d2 to the training set is below ``threshold``
    (:func:`bigstep.memorized_fraction` of those samples).

    Parameters
    ----------
    score : RFScore
        The score (its training data are the reference).
    n_samples, T, delta, n_steps, seed
        As in :func:`bigstep.sample_reverse`.
    threshold : float
        As in :func:`bigstep.memorized_fraction`.

    Returns
    -------
    fraction : float
        The memorized share of the samples.
    samples : numpy.ndarray
        The samples (n_samples, d).
    """
    from ..metrics import memorized_fraction as frac
    from ..sampler import sample_reverse

    if not isinstance(score, RFScore):
        raise TypeError(f"score must be an rf.RFScore, got {type(score).__name__}")
    n_samples = integer(n_samples, "n_samples", minimum=1)
    x = score.fits[0].x
    samples = sample_reverse(score, n_samples, score.dim, T=T, delta=delta, n_steps=n_steps, seed=seed)
    return frac(samples, x, threshold=threshold), samples
