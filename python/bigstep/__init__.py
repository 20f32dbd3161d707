"""bigstep: exact, fast kernels for memorization in diffusion models.

Start with :func:`optimal_score` (the empirical optimal score s*), :func:`info` (what
is built here) and :func:`gaussian_noise` (the shared Philox stream).

``import bigstep`` loads the array kernels' front ends only (numpy; no numba, scipy,
torch or pandas).  The subpackages ``bigstep.rf``, ``bigstep.sweeps``,
``bigstep.theory``, ``bigstep.reproduce`` and ``bigstep.training`` (and the names
re-exported from them, such as :func:`train_sgd` and :func:`sweep`) are attributes of
the package, imported on first use.
"""

import importlib

from .info import __version__, info
from .metrics import memorization_ratio, memorized_fraction, mmd2, nearest_neighbors
from .optimal_risk import optimal_risk
from .optimal_score import log_density, optimal_score, optimal_score_derivatives, posterior_mean
from .fgt import fgt_plan
from .random import gaussian_noise, uniform
from .nets import ReLUNet1D, ReLUNetND, TimeReLUScore
from .relu_risk import (
    DSMRisk,
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

# Subpackages, and public names that live in them: imported on first access.
_SUBPACKAGES = ("rf", "sweeps", "theory", "reproduce", "training")
_LAZY = {
    "load_sweep": "sweeps", "register_task": "sweeps", "sweep": "sweeps",
    "TrainResult": "training", "diffusion_sharpness_mc": "training", "excess_risk_mc": "training",
    "sharpness_mc": "training", "train_diffusion": "training", "train_dsm": "training", "train_gd": "training",
    "train_sgd": "training",
}


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")  # the import binds it here
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBPACKAGES) | set(_LAZY))


__all__ = [
    "__version__",
    "info",
    "optimal_score",
    "log_density",
    "posterior_mean",
    "optimal_score_derivatives",
    "fgt_plan",
    "gaussian_noise",
    "uniform",
    "ReLUNet1D",
    "ReLUNetND",
    "DSMRisk",
    "dsm_risk",
    "dsm_risk_grad",
    "dsm_risk_hessian",
    "dsm_risk_hvp",
    "sharpness",
    "is_linearly_stable",
    "excess_risk",
    "optimal_risk",
    "theory",
    "rf",
    "sweeps",
    "reproduce",
    "training",
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
    """Set the number of threads the compiled CPU kernels use (process-wide) and numba uses
    (numba's setting is per calling thread).

    Until the first call the kernels use OpenMP's default, OMP_NUM_THREADS or the core
    count.  :func:`get_num_threads` reads the setting back.

    Parameters
    ----------
    n : int
        At least 1 (0 is rejected).
    """
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

    Returns
    -------
    int

    Examples
    --------
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
