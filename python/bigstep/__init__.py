"""bigstep: exact, fast kernels for memorization in diffusion models.

Start with :func:`optimal_score` (the empirical optimal score s*), :func:`info` (what
is built here) and :func:`gaussian_noise` (the shared Philox stream).
"""

from .info import __version__, info
from .metrics import memorization_ratio, memorized_fraction, mmd2, nearest_neighbors
from . import theory
from .optimal_risk import optimal_risk
from .optimal_score import log_density, optimal_score, optimal_score_derivatives, ou_schedule, posterior_mean
from .random import gaussian_noise, uniform
from .nets import ReLUNet1D, ReLUNetND, TimeReLUScore
from .relu_risk import (
    dsm_risk,
    dsm_risk_grad,
    dsm_risk_hessian,
    dsm_risk_hvp,
    excess_risk,
    is_linearly_stable,
    sharpness,
)
from .sampler import sample_forward, sample_reverse
from .scores import EmpiricalScore, GaussianScore, noise_schedule
from .sweeps import load_sweep, register_task, sweep
from .training import (
    TrainResult,
    diffusion_sharpness_mc,
    excess_risk_mc,
    sharpness_mc,
    train_diffusion,
    train_dsm,
    train_gd,
    train_sgd,
)

__all__ = [
    "__version__",
    "info",
    "optimal_score",
    "log_density",
    "posterior_mean",
    "optimal_score_derivatives",
    "ou_schedule",
    "gaussian_noise",
    "uniform",
    "ReLUNet1D",
    "ReLUNetND",
    "dsm_risk",
    "dsm_risk_grad",
    "dsm_risk_hessian",
    "dsm_risk_hvp",
    "sharpness",
    "is_linearly_stable",
    "excess_risk",
    "optimal_risk",
    "theory",
    "mmd2",
    "nearest_neighbors",
    "memorization_ratio",
    "memorized_fraction",
    "set_num_threads",
    "get_num_threads",
    "EmpiricalScore",
    "GaussianScore",
    "TimeReLUScore",
    "noise_schedule",
    "sample_reverse",
    "sample_forward",
    "train_dsm",
    "train_diffusion",
    "excess_risk_mc",
    "sharpness_mc",
    "diffusion_sharpness_mc",
    "train_sgd",
    "train_gd",
    "TrainResult",
    "sweep",
    "load_sweep",
    "register_task",
]


def set_num_threads(n: int) -> None:
    """Number of threads the compiled CPU kernels use (process-wide) and numba uses
    (numba's setting is per calling thread).  n must be at least 1 (0 is rejected; until
    the first call the kernels use OpenMP's default, OMP_NUM_THREADS or the core count).
    :func:`get_num_threads` reads the setting back."""
    from . import _backend
    from ._validate import integer

    n = integer(n, "n", minimum=1)
    try:  # numba first: starting its OpenMP layer resets the process's OpenMP thread count
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except Exception:
        pass
    core = _backend.core()
    if core is not None:
        core.set_num_threads(n)


def get_num_threads() -> int:
    """Number of threads the compiled CPU kernels use: the last :func:`set_num_threads`
    value, else OpenMP's default (OMP_NUM_THREADS if set, else the core count; 1 in a build
    without OpenMP).  Without the compiled extension, numba's count for the calling thread.
    ``set_num_threads(get_num_threads())`` restores a setting after a temporary change.

    Example
    -------
    >>> import bigstep
    >>> bigstep.get_num_threads() >= 1
    True
    """
    from . import _backend

    core = _backend.core()
    if core is not None:
        return int(core.openmp_max_threads())
    try:
        import numba

        return int(numba.get_num_threads())
    except Exception:
        return 1
