"""Settings and helpers shared by the figure reproductions (paper Appendix E, docs/design.md section 2b)."""

from __future__ import annotations

import contextlib

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


def replicate_seed(seed: int, r: int) -> int:
    """Philox seed of replicate r of a run with base seed ``seed``: runs with different
    base seeds share no replicate (seed * 2^16 + r)."""
    return int(seed) * 65536 + int(r)


@contextlib.contextmanager
def cpu_backend(backend: str):
    """Every CPU kernel call of the block whose backend is "auto" runs on ``backend``
    ("auto", "cpp" or "numba"): how a reproduction is run on the Numba fallback."""
    from .. import _backend

    if backend not in ("auto", "cpp", "numba"):
        raise ValueError(f"backend must be 'auto', 'cpp' or 'numba', got {backend!r}")
    if backend == "auto":
        yield
        return
    reason = _backend.why_unavailable(backend)
    if reason is not None:
        raise ValueError(f"backend {backend!r} is not available: {reason}")
    before = _backend.CPU_BACKENDS
    _backend.CPU_BACKENDS = (backend,)
    try:
        yield
    finally:
        _backend.CPU_BACKENDS = before


def compiled_jobs() -> bool:
    """Whether "auto" runs the compiled kernels (jobs may then share the cores as threads)."""
    from .. import _backend

    return _backend.CPU_BACKENDS[0] == "cpp" and _backend.why_unavailable("cpp") is None


def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


def late_excess_risk(history, steps: int) -> float:
    """Mean exact excess risk over the readings in the last 20% of training: the SGD iterate
    keeps moving around its minimum, so one reading is noisy (NaN if none is finite)."""
    late = history[(history["step"] >= 0.8 * steps) & np.isfinite(history["excess_risk"])]
    return float(late["excess_risk"].mean()) if len(late) else float("nan")


def score_norm2(x, mu: float, sigma: float) -> float:
    """(1/n) sum_i E_i ||s*(Y)||^2 = d / sigma^2 - R_n(s*) (s* is the L2 projection of the
    target -(Y - mu x_i) / sigma^2, whose mean square is d / sigma^2), 1-D exact: the scale
    of the relative excess risk (excess risk / ||s*||^2)."""
    from ..optimal_risk import optimal_risk

    return 1.0 / sigma**2 - float(optimal_risk(x, mu, sigma))
