"""Reverse-diffusion sampling (paper Section 3) and forward noising.

Euler-Maruyama for the backward Ornstein-Uhlenbeck SDE
dX = (X + 2 s(X, T - t)) dt + sqrt(2) dB from X_0 ~ N(0, I) to time T - delta:

    X_{k+1} = X_k + h_k (X_k + 2 s(X_k, tau_k)) + sqrt(2 h_k) Z_k,

with the diffusion-time grid T = tau_0 > tau_1 > ... > tau_N = delta, h_k = tau_k - tau_{k+1}
(uniform: h = (T - delta)/N, tau_k = T - k h, so the score is read at T, T - h, ...,
delta + h).  ``method="ode"`` integrates the probability-flow ODE dX = (X + s) dt with the
same grid and no noise.

Randomness (docs/design.md section 3): X_0[p, j] = gaussian_noise(seed, (n_samples, dim),
stream=0)[p, j] and Z_k[p, j] = gaussian_noise(seed, (n_steps, n_samples, dim),
stream=1)[k, p, j], so every run can be replayed outside the kernels and the result is
bit-identical across runs and thread counts.  :func:`sample_forward` uses stream 5.
"""

from __future__ import annotations


import numpy as np

from . import _streams as streams
from . import _backend
from . import fgt as _fgt
from ._arrays import as_numpy, wrap_like
from ._progress import Progress, run_in_chunks
from ._torch import device_route
from ._validate import _all_finite, as_float64, integer, real_scalar
from .random import gaussian_noise
from .nets import TimeReLUScore
from .scores import EmpiricalScore, GaussianScore, noise_schedule

__all__ = ["sample_reverse", "sample_forward"]

_STREAM_X0, _STREAM_STEPS, _STREAM_FORWARD = streams.SAMPLER_INITIAL, streams.SAMPLER_STEPS, streams.FORWARD_NOISE
_METHODS = {"em": 2.0, "ode": 1.0}  # drift X + c s


def _grid(T, delta, n_steps, times):
    """The decreasing diffusion times tau_0 .. tau_N (float64, N + 1 entries) and h_k."""
    if times is None:
        T = real_scalar(T, "T")
        delta = real_scalar(delta, "delta")
        if not delta < T:
            raise ValueError(f"delta must be smaller than T = {T!r}, got delta = {delta!r}")
        n_steps = integer(n_steps, "n_steps", minimum=1)
        h = (T - delta) / n_steps
        tau = T - np.arange(n_steps + 1) * h
        tau[-1] = delta
        return tau, np.full(n_steps, h)
    tau = np.array(as_numpy(times, "times"), dtype=np.float64)
    if tau.ndim != 1 or tau.shape[0] < 2:
        raise ValueError(f"times must have shape (n_steps + 1,) with n_steps >= 1, got shape {tau.shape}")
    if not np.isfinite(tau).all() or (tau <= 0).any():
        raise ValueError("times must be positive and finite (diffusion times from T down to delta)")
    if not (np.diff(tau) < 0).all():
        raise ValueError("times must be strictly decreasing (diffusion times from T down to delta), "
                         f"got {tau[:4]}{'...' if tau.shape[0] > 4 else ''}")
    defaults = (T == 1.0, delta == 0.01, n_steps == 100)
    given = (T == tau[0], delta == tau[-1], n_steps == tau.shape[0] - 1)
    for name, is_default, agrees in zip(("T", "delta", "n_steps"), defaults, given):
        if not (is_default or agrees):
            raise ValueError(f"{name} disagrees with times (T = times[0], delta = times[-1], "
                             f"n_steps = len(times) - 1); leave it out when passing times")
    return tau, tau[:-1] - tau[1:]


def _initial_state(x0, n_samples, dim, seed):
    if x0 is None:
        return gaussian_noise(seed, (n_samples, dim), stream=_STREAM_X0)
    xa = np.array(as_numpy(x0, "x0"), dtype=np.float64)  # a copy: the sampler updates it in place
    _check_x0(xa, n_samples, dim)
    return np.ascontiguousarray(xa)


def _check_x0(xa, n_samples, dim):
    """x0 (a numpy array or, on the device path, a torch tensor): shape (n_samples, dim), finite."""
    if tuple(xa.shape) != (n_samples, dim):
        raise ValueError(f"x0 must have shape (n_samples, dim) = ({n_samples}, {dim}), got shape {tuple(xa.shape)}")
    if not _all_finite(xa):
        raise ValueError("x0 must be finite, got NaN or infinity")


def _fused(score, backend: str):
    """(kernel, extra arguments) of the fused loop for a built-in score on ``backend``,
    else None.  Every backend's kernels take (x, k0, k1, h, r, mu, sigma, tau, c, seed,
    keep, path, *extra) (bigstep._backend.FAMILIES["sampler"])."""
    if type(score) not in (EmpiricalScore, GaussianScore, TimeReLUScore):  # subclasses may override __call__
        return None
    if type(score) is EmpiricalScore and _fgt.sampler_kernel(score, backend) is not None:
        return _fgt.sampler_kernel(score, backend)  # s* by the fast Gauss transform (score.method)
    k = _backend.kernels("sampler", backend)
    if type(score) is EmpiricalScore:
        if score.one_d:
            return k.sampler_empirical_1d, (np.sort(score.x_train, kind="stable"),)
        return k.sampler_empirical_nd, (np.ascontiguousarray(score.x_train),)
    if type(score) is GaussianScore:
        return k.sampler_gaussian, (score.mean, score.eigenvectors, np.ascontiguousarray(score.eigenvalues))
    return k.sampler_relu, (score.W1, score.b1, np.ascontiguousarray(score.W2.T), score.b2)


def sample_reverse(score, n_samples, dim, *, T=1.0, delta=0.01, times=None, n_steps=100, x0=None, seed=0,
                   return_path=False, method="em", progress=False, backend="auto"):
    """Samples of the reverse diffusion driven by ``score`` (paper Section 3).

    From ``X_0 ~ N(0, I)`` (or ``x0``), on the grid ``tau_k = T - k h``,
    ``h = (T - delta) / n_steps`` (or ``times``, with ``h_k = tau_k - tau_{k+1}``):

        X_{k+1} = X_k + h_k (X_k + 2 s(X_k, tau_k)) + sqrt(2 h_k) Z_k    ("em")
        X_{k+1} = X_k + h_k (X_k + s(X_k, tau_k))                        ("ode", probability flow)

    ``X_0[p, j] = gaussian_noise(seed, (n_samples, dim), stream=0)[p, j]`` and
    ``Z_k[p, j] = gaussian_noise(seed, (n_steps, n_samples, dim), stream=1)[k, p, j]``,
    so every run can be replayed and is bit-identical across runs and thread counts.

    Parameters
    ----------
    score : Score or callable
        An :class:`EmpiricalScore`, :class:`GaussianScore` or
        :class:`bigstep.TimeReLUScore` (a fused compiled loop), or any callable
        ``f(x, t) -> array (N, d)`` for x (N, d) and a scalar t (a Python loop, the same
        noise).
    n_samples : int
        The number of particles.
    dim : int
        Their dimension (must match the score's).
    T, delta : float
        The uniform grid runs from diffusion time T down to delta > 0 (delta < T).
    times : array or None
        An explicit diffusion-time grid instead, strictly decreasing, shape
        (n_steps + 1,): ``times[0] = T``, ``times[-1] = delta``, the score read at
        ``times[:-1]``.
    n_steps : int
        The number of steps.
    x0 : array or None
        The initial state (n_samples, dim), used instead of stream 0.
    seed : int
        The Philox seed, >= 0.
    return_path : bool
        Also keep every state.
    method : str
        "em" (Euler-Maruyama, default) or "ode" (deterministic probability flow).
    progress : bool
        A progress bar on stderr.  Steps run in chunks of about 0.25 s, so Ctrl-C stops
        the call within a second (KeyboardInterrupt; nothing is returned).
    backend : str
        "auto" (cpp if bigstep._core is built, else numba), "cpp" (the compiled C++
        loop: SIMD Philox and Box-Muller, OpenMP over particles, GIL released) or
        "numba".  Both give the same result up to rounding; each is bit-identical run to
        run and for any thread count.  Only the built-in scores are fused; other
        callables run the Python loop whatever the backend.

    Returns
    -------
    array
        float64 of shape (n_samples, dim), the state at diffusion time delta (a torch
        tensor if x0 is one), or the path (n_steps + 1, n_samples, dim) with
        ``return_path``.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> data = np.array([[2.0, 0.0], [-2.0, 0.0]])
    >>> x = bigstep.sample_reverse(bigstep.EmpiricalScore(data), 1000, 2, delta=1e-3, n_steps=500, seed=1)
    >>> x.shape
    (1000, 2)
    >>> near = np.linalg.norm(x[:, None, :] - data, axis=2).min(axis=1) < 0.3
    >>> bool(near.mean() > 0.95)   # s* memorizes: the samples sit on the training points
    True
    """
    n_samples = integer(n_samples, "n_samples", minimum=1)
    dim = integer(dim, "dim", minimum=1)
    seed = integer(seed, "seed", minimum=0)
    if seed >= 1 << 64:
        raise ValueError(f"seed must be < 2**64, got {seed}")
    if method not in _METHODS:
        raise ValueError(f"method must be 'em' or 'ode', got {method!r}")
    if not callable(score):
        raise TypeError(f"score must be a score object or a callable f(x, t), got {type(score).__name__}")
    score_dim = getattr(score, "dim", None)
    if isinstance(score, (EmpiricalScore, GaussianScore, TimeReLUScore)) and score_dim != dim:
        raise ValueError(f"dim must match the score's dimension {score_dim}, got dim = {dim}")
    tau, h = _grid(T, delta, n_steps, times)
    builtin = isinstance(score, (EmpiricalScore, GaussianScore, TimeReLUScore))
    if device_route(backend, {"x0": x0, **(score._arrays() if builtin else {})}):  # device arrays, or torch/cuda
        from ._torch._api import sample_reverse as device_sample

        return device_sample(score, n_samples, dim, tau, h, _METHODS[method], seed, x0, return_path, progress,
                             backend)
    fused = _fused(score, _backend.resolve(backend, family="sampler"))  # raises for unknown or unavailable backends
    n_steps = h.shape[0]
    c = _METHODS[method]
    r = np.sqrt(2.0 * h) if method == "em" else np.zeros(n_steps)
    x = _initial_state(x0, n_samples, dim, seed)
    path = np.empty((n_steps + 1, n_samples, dim) if return_path else (1, 1, 1))
    if return_path:
        path[0] = x
    bar = Progress(n_steps, progress, "sample_reverse")
    if fused is None:
        _run_generic(score, x, tau, h, r, c, seed, path, return_path, bar)
    else:
        kernel, extra = fused
        mu, sigma = noise_schedule(tau[:-1], kind=score.schedule)
        first = _first_chunk(score, n_samples, dim, n_steps)
        _run_fused(kernel, extra, x, tau[:-1].copy(), h, r, c, mu, sigma, seed, path, return_path, bar, first)
    return wrap_like(path if return_path else x, x0)


# A deliberately slow estimate of the fused loops' speed (work units per second, a unit
# one data point (or neuron) times one coordinate for one particle), for the first chunk.
_UNITS_PER_SECOND = 2e8
_FIRST_CHUNK_SECONDS = 0.05


def _first_chunk(score, n_samples, dim, n_steps):
    """Steps in the first compiled chunk: about _FIRST_CHUNK_SECONDS by a conservative cost
    estimate, so short runs take one or two chunks (each chunk starts the kernels' threads,
    which costs milliseconds on a loaded machine) while Ctrl-C still lands within a second."""
    if isinstance(score, EmpiricalScore):
        per_particle = (score.x_train.shape[0] + 8) * dim
    elif isinstance(score, TimeReLUScore):
        per_particle = (score.width + 8) * dim
    else:
        per_particle = (dim + 8) * dim
    return int(min(n_steps, max(1, _FIRST_CHUNK_SECONDS * _UNITS_PER_SECOND / (per_particle * n_samples))))


def _run_fused(kernel, extra, x, tau, h, r, c, mu, sigma, seed, path, keep, bar, first_chunk=1):
    """Chunks of steps through the compiled loop; a chunk takes about 0.25 s (see _progress)."""
    def chunk(k0, k1):
        kernel(x, k0, k1, h, r, mu, sigma, tau, c, np.uint64(seed), keep, path, *extra)

    run_in_chunks(chunk, h.shape[0], bar, first_chunk=first_chunk)


def _run_generic(score, x, tau, h, r, c, seed, path, keep, bar):
    """Python loop for any callable: the same update and noise as the fused loops."""
    n, d = x.shape
    for k in range(h.shape[0]):
        s = np.asarray(as_numpy(score(x, float(tau[k])), "score(x, t)"), dtype=np.float64)
        if s.shape != (n, d):
            raise ValueError(f"score(x, t) must return shape ({n}, {d}) for x of shape ({n}, {d}), got {s.shape}")
        z = gaussian_noise(seed, (n, d), stream=_STREAM_STEPS, offset=k * n * d) if r[k] != 0 else np.zeros((n, d))
        x[...] = x + h[k] * (x + c * s) + r[k] * z
        if keep:
            path[k + 1] = x
        bar.update(k + 1)


def sample_forward(x0, t, *, schedule="ou", seed=0, backend="auto"):
    """Forward noising ``X_t = mu(t) x0 + sigma(t) xi``, xi ~ N(0, I) from Philox stream 5.

    Parameters
    ----------
    x0 : array
        Clean points, shape (N, d) (or (N,)).
    t : float or array
        Positive times, a scalar or shape (N,) (one per row).
    schedule : str
        "ou" (mu = exp(-t), default) or "notebook" (mu = exp(-2t)).
    seed : int
        The Philox seed, >= 0: ``xi = gaussian_noise(seed, x0.shape, stream=5)``.
    backend : str
        "auto" (the inputs' device: host arrays on the CPU, device arrays there) or a
        backend name; "torch" and "cuda" draw xi on the device (the same numbers).

    Returns
    -------
    array
        float64 of x0's shape, in x0's array type on x0's device.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> bigstep.sample_forward(np.zeros((3, 2)), 0.5, seed=4).shape
    (3, 2)
    """
    if device_route(backend, {"x0": x0, "t": t}):  # device arrays, or backend torch/cuda
        from ._torch._api import sample_forward as device_forward

        return device_forward(x0, t, integer(seed, "seed", minimum=0), schedule, backend)
    xa, ta = _forward_args(x0, t)
    mu, sigma = noise_schedule(ta, kind=schedule)
    if ta.ndim == 1 and xa.ndim == 2:
        mu, sigma = mu[:, None], sigma[:, None]
    xi = gaussian_noise(integer(seed, "seed", minimum=0), xa.shape, stream=_STREAM_FORWARD,
                        backend=_backend.resolve(backend, family="random"))
    return wrap_like(mu * xa + sigma * xi, x0)


def _forward_args(x0, t, convert=as_numpy):
    """Checked float64 (x0, t) of sample_forward."""
    xa = as_float64(convert(x0, "x0"))
    if xa.ndim not in (1, 2):
        raise ValueError(f"x0 must have shape (N,) or (N, d), got shape {tuple(xa.shape)}")
    if not _all_finite(xa):
        raise ValueError("x0 must be finite, got NaN or infinity")
    ta = as_float64(convert(t, "t"))
    if ta.ndim != 0 and tuple(ta.shape) != (xa.shape[0],):
        raise ValueError(f"t must be a scalar or have shape ({xa.shape[0]},), got shape {tuple(ta.shape)}")
    return xa, ta
