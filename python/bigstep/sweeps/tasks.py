"""Experiment tasks a sweep can run, by name, and the wrapper that runs one cell.

A task is any importable function of keyword arguments that returns a flat dict of
numbers (or strings / booleans).  Registered names:

- ``"fig2_cell"``: train one 1-D network by SGD at (lr, t, n, seed) (Figure 2's cell) and
  measure its exact excess risk and sharpness;
- ``"sampler_cell"``: the memorized fraction and MMD^2 (to fresh data) of the s*-sampler
  and of the Gaussian-fit sampler at (n, d, delta, seed);
- ``"rf_cell"``: one point of a random-features learning curve (bigstep.rf) at
  (d, psi_n, psi_p, n_noise, t, lam, rho, seed): train and test loss, score error, regime.

Others register with :func:`register_task` or are given as ``"module:function"``.
"""

from __future__ import annotations

import importlib
import math
import numbers
import time
import traceback

_REGISTRY: dict[str, str] = {
    "fig2_cell": "bigstep.sweeps.tasks:fig2_cell",
    "sampler_cell": "bigstep.sweeps.tasks:sampler_cell",
    "rf_cell": "bigstep.sweeps.tasks:rf_cell",
}


def register_task(name: str, ref: str) -> None:
    """Register ``ref`` ("module:function") under ``name`` for :func:`bigstep.sweep`.

    Parameters
    ----------
    name : str
        The task's name, as ``sweep(name, ...)`` takes it.
    ref : str
        "module:function", imported by each worker.
    """
    if ":" not in ref:
        raise ValueError(f"ref must be 'module:function', got {ref!r}")
    _REGISTRY[name] = ref


def resolve(task):
    """(name, reference string, function) for a registered name, "module:function" or a function."""
    if callable(task):
        ref = f"{task.__module__}:{task.__qualname__}"
        if "<" in ref:
            raise ValueError(f"task must be importable by name (a module-level function), got {ref}")
        return ref, ref, task
    if not isinstance(task, str):
        raise TypeError(f"task must be a registered name, 'module:function' or a function, got {type(task).__name__}")
    ref = _REGISTRY.get(task, task)
    if ":" not in ref:
        raise ValueError(f"unknown task {task!r}; registered tasks: {sorted(_REGISTRY)}, or give 'module:function'")
    return task, ref, load(ref)


def load(ref: str):
    module, _, name = ref.partition(":")
    try:
        fn = importlib.import_module(module)
        for part in name.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"task {ref!r} cannot be imported: {exc}") from None
    if not callable(fn):
        raise ValueError(f"task {ref!r} is not callable")
    return fn


def run_cell(ref: str, params: dict, shared: dict | None) -> dict:
    """Run one cell; never raises: failures come back as status "failed" with the traceback."""
    start = time.perf_counter()
    try:
        result = load(ref)(**params, **(shared or {}))
        _check_result(result)
        return dict(status="ok", result=result, error="", traceback="", wall_time=time.perf_counter() - start)
    except Exception as exc:  # a failing cell is recorded, the sweep goes on
        return dict(status="failed", result={}, error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc(), wall_time=time.perf_counter() - start)


def _check_result(result) -> None:
    if not isinstance(result, dict):
        raise TypeError(f"a task must return a flat dict of numbers, got {type(result).__name__}")
    for k, v in result.items():
        if not isinstance(k, str):
            raise TypeError(f"a task's result keys must be strings, got {k!r}")
        if not (v is None or isinstance(v, (bool, str, numbers.Real))):
            raise TypeError(f"a task's result values must be numbers, strings or booleans; {k!r} is "
                            f"{type(v).__name__}")


# ----------------------------------------------------------------------------- built-in tasks


def fig2_cell(lr: float, t: float, seed: int = 0, n: int = 20, steps: int | None = None, width: int = 1000,
              batch_size: int = 50, inner: str = "gaussian", sharpness: bool = True) -> dict:
    """Figure 2's cell: SGD at (lr, t) on n standard-normal points (Philox data stream of
    ``seed``), then the exact excess risk and sharpness.  steps defaults to the paper's
    {0.5: 5k, 0.1: 25k, 0.05: 50k, 0.01: 200k}, else int(2500 / lr)."""
    from ..optimal_risk import optimal_risk
    from ..relu_risk import dsm_risk
    from ..relu_risk import sharpness as lam_max
    from ..reproduce._common import LR_STEPS_1D, noise_level, training_set
    from ..training import train_sgd

    mu, sigma = noise_level(t)
    steps = int(steps) if steps is not None else LR_STEPS_1D.get(lr, int(round(2500 / lr)))
    x = training_set(seed, n)
    res = train_sgd(x, mu, sigma, lr=lr, steps=steps, batch_size=batch_size, width=width, inner=inner, seed=seed,
                    record=("loss",))
    out = dict(mu=mu, sigma=sigma, steps=steps, diverged=bool(res.diverged[0]),
               diverged_step=int(res.diverged_step[0]))
    if out["diverged"]:
        return dict(out, risk=math.nan, excess_risk=math.nan, sharpness=math.nan)
    net = res.networks[0]
    wrt = "all" if inner == "gaussian" else "outer_bias"
    risk = dsm_risk(net, x, mu, sigma)
    return dict(out, risk=risk, excess_risk=risk - optimal_risk(x, mu, sigma),
                sharpness=lam_max(net, x, mu, sigma, wrt=wrt) if sharpness else math.nan)


def sampler_cell(n: int, d: int, delta: float, seed: int = 0, n_samples: int = 1000, n_steps: int = 100,
                 T: float = 1.0, data_std: float = 1.0, bandwidth: float = 1.0) -> dict:
    """Memorization at (n, d, delta): n points of N(0, data_std^2 I) (Philox data stream of
    ``seed``); n_samples particles of the s*-sampler and of the Gaussian-fit sampler; for
    each, the memorized fraction (d1/d2 < 1/3) and the unbiased MMD^2 to n_samples fresh
    points of the data law."""
    from ..metrics import memorized_fraction, mmd2
    from .. import _streams
    from ..random import gaussian_noise
    from ..reproduce._common import training_set
    from ..sampler import sample_reverse
    from ..scores import EmpiricalScore, GaussianScore

    x = training_set(seed, n, d, scale=data_std)
    fresh = data_std * gaussian_noise(seed, (n_samples, d), stream=_streams.SWEEP_FRESH)
    out = {}
    for name, score in (("star", EmpiricalScore(x)), ("gauss", GaussianScore.fit(x))):
        s = sample_reverse(score, n_samples, d, T=T, delta=delta, n_steps=n_steps, seed=seed)
        out[f"{name}_memorized_fraction"] = float(memorized_fraction(s, x))
        out[f"{name}_mmd2"] = float(mmd2(s, fresh, bandwidth=bandwidth, unbiased=True))
    return out


def rf_cell(d: int, psi_n: float, psi_p: float, n_noise: float, t: float, lam: float = 1e-3, rho: str = "relu",
            seed: int = 0) -> dict:
    """One point of :func:`bigstep.rf.learning_curve` (n_noise may be inf: the exact noise average)."""
    from ..rf import learning_curve

    n_noise = math.inf if n_noise == math.inf else int(n_noise)
    row = learning_curve(int(d), psi_n, [psi_p], t, n_noise=n_noise, rho=rho, lam=lam, seed=int(seed)).iloc[0]
    return dict(n=int(row["n"]), p=int(row["p"]), train_loss=float(row["train_loss"]),
                test_loss=float(row["test_loss"]), score_error=float(row["score_error"]), regime=str(row["regime"]))


def _square(x: float, delay: float = 0.0, fail_on=None) -> dict:
    """A trivial task for examples and tests: {"y": x^2} after ``delay`` seconds; raises
    ValueError when x == fail_on."""
    time.sleep(delay)
    if fail_on is not None and x == fail_on:
        raise ValueError(f"x = {x} fails on purpose")
    return {"y": x * x}


def _total(x, scale: float = 1.0) -> dict:
    """A trivial task for tests of shared inputs: {"total": scale * sum(x)} (x an array)."""
    import numpy as np

    return {"total": float(scale * np.sum(x))}
