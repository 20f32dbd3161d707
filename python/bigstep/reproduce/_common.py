"""Settings and helpers shared by the figure reproductions (paper Appendix E, docs/design.md section 2b)."""

from __future__ import annotations

import numpy as np

from .. import _streams as streams
from ..scores import noise_schedule
from ..random import gaussian_noise

DATA_STREAM = streams.REPRO_DATA  # Philox stream of the reproductions' training sets

# 1-D experiments (Figures 1, 2 left, 5 left): n = 20 standard-normal points, width 1000,
# batch 50, all of (w1, w2, b) trained from w1 ~ N(0, 1), w2 ~ N(0, 1), b = 0.
N_1D, WIDTH, BATCH = 20, 1000, 50
TIMES_1D = (0.05, 0.2)  # (mu, sigma) = (exp(-t), sqrt(1 - exp(-2t))): (0.95, 0.31), (0.82, 0.57)
LR_STEPS_1D = {0.5: 5_000, 0.1: 25_000, 0.05: 50_000, 0.01: 200_000}


def noise_level(t: float) -> tuple[float, float]:
    mu, sigma = noise_schedule(float(t))
    return float(mu), float(sigma)


def training_set(seed: int, n: int, d: int | None = None, scale: float = 1.0, index: int = 0) -> np.ndarray:
    """n points of N(0, scale^2 I): shape (n,) when d is None, else (n, d).

    Drawn from Philox stream DATA_STREAM of ``seed``; ``index`` selects independent sets
    (simulation number), so every set of every reproduction can be replayed."""
    size = n if d is None else n * d
    z = gaussian_noise(seed, size, stream=DATA_STREAM, offset=index * (1 << 32))
    return scale * (z if d is None else z.reshape(n, d))


def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


def late_excess_risk(history, steps: int) -> float:
    """Mean exact excess risk over the readings in the last 20% of training: the SGD iterate
    keeps moving around its minimum, so one reading is noisy (NaN if none is finite)."""
    late = history[(history["step"] >= 0.8 * steps) & np.isfinite(history["excess_risk"])]
    return float(late["excess_risk"].mean()) if len(late) else float("nan")


def torch_missing() -> str:
    """"" when torch can be imported, else why not (the d-D panels need it)."""
    import importlib.util

    return "" if importlib.util.find_spec("torch") is not None else "torch is not installed"
