"""Shared steps of the diffusion reproductions (Figures 3 and 4): train the time-conditional
net, sample with it, with s* and from the fitted Gaussian, and measure memorization."""

from __future__ import annotations

import numpy as np

from .. import _streams as streams
from ..metrics import memorized_fraction, mmd2
from ..random import gaussian_noise
from ..sampler import sample_reverse
from ..scores import EmpiricalScore, GaussianScore

SAMPLE_STREAM = streams.REPRO_GAUSSIAN_SAMPLES  # Philox stream of the fitted-Gaussian reference samples
T, DELTA, N_STEPS = 1.0, 0.01, 100  # sampling: backward OU from T to delta, 100 Euler-Maruyama steps


def reference_samples(x, n_samples: int, seed: int):
    """(s*-sampler samples, fitted-Gaussian samples), each (n_samples, d)."""
    d = x.shape[1]
    star = sample_reverse(EmpiricalScore(x), n_samples, d, T=T, delta=DELTA, n_steps=N_STEPS, seed=seed)
    g = GaussianScore.fit(x)
    z = gaussian_noise(seed, (n_samples, d), stream=SAMPLE_STREAM)
    gauss = g.mean + (z * np.sqrt(np.maximum(g.eigenvalues, 0.0))) @ g.eigenvectors.T
    return star, gauss


def measure(samples, x, star, gauss) -> dict:
    """Memorized fraction (d1/d2 < 1/3) and unbiased MMD^2 (h = 1) to the two references."""
    return dict(memorized_fraction=float(memorized_fraction(samples, x)),
                mmd2_to_star=float(mmd2(samples, star, unbiased=True)),
                mmd2_to_gaussian=float(mmd2(samples, gauss, unbiased=True)))


def sample_learned(score, n_samples: int, d: int, seed: int):
    return sample_reverse(score, n_samples, d, T=T, delta=DELTA, n_steps=N_STEPS, seed=seed)
