"""d-dimensional trainers in PyTorch (CPU or CUDA): DSM at one noise level and the
time-conditional diffusion network of the paper's Appendix E (Figures 2 right, 3, 4).

Both train a two-layer ReLU network in the mean-field scaling of Appendix E, width m,
input dimension p, output dimension d, by SGD with the step m * lr (docs/design.md
section 2):

    net(u) = (1/m) W2 relu(W1 u + b1),   W1 (m, p) ~ N(0, 1/p),  W2 (d, m) ~ N(0, 1),  b1 = 0,
    theta <- theta - m lr grad_theta L_j(theta),   theta = (W1, b1, W2), all trained.

- :func:`train_dsm`: p = d, ``s_theta(y) = net(y)``, and ``L_j`` is the batch mean of
  ``||s_theta(Y_b) + (Y_b - mu x_{i_b}) / sigma^2||^2`` (squared norm: the SUM over the
  d coordinates), ``Y_b = mu x_{i_b} + sigma Z_b``: the DSM loss of the paper's eq. (5).
- :func:`train_diffusion`: p = d + 1, ``r_theta(t, x) = net([x; t])`` (time LAST, the
  layout of :class:`bigstep.TimeReLUScore`, no output bias), and ``L_j`` is the MEAN
  over the batch and the d coordinates of
  ``(r_theta(t_b, mu(t_b) x_{i_b} + sigma(t_b) Z_b) - Z_b)^2``, the times ``t_b`` drawn
  from ``linspace(delta, T, n_times)`` with probability proportional to sigma(t) (paper
  text) or 1/sigma(t) (authors' notebook).  The score is
  ``s_theta(x, t) = -r_theta(t, x) / sigma(t)``.

Batches: data indices uniform with replacement, fresh noise at every step.  ``lr`` and
``seed`` may be sequences: all ``len(lr) len(seed)`` networks train together as one
batched model (torch.bmm over a leading network axis); network
``r = i_lr len(seed) + i_seed`` has learning rate ``lr[i_lr]`` and draws from
``seed[i_seed]`` (the convention of :func:`bigstep.train_sgd`, the 1-D trainer).  relu'(0) is taken as 0.  Divergence (a
batch loss that is not finite or above 1e16, or a parameter that would become
non-finite or exceed ``max_abs`` = 1e8 in absolute value) freezes that network at the
parameters it had before the offending step and marks it (``diverged``,
``diverged_step`` = the number of steps it made); its neighbours go on.

Speed (CPU): the step is a handful of batched matrix products and elementwise passes
over the (networks, B, m) hidden layer, written out of place into preallocated buffers;
large batches are processed in blocks of rows that stay in cache.  torch's thread count
is left alone unless ``num_threads`` is given: on a 2-core machine shared with other
busy processes, ``num_threads=1`` was 5-8x faster than 2 threads (the OpenMP threads
wait on each other).  Results are reproducible run to run for one device, dtype and
thread count (matrix-product rounding may change with the thread count).

Randomness (Philox, docs/design.md section 3), for a network drawing from seed s:

    init (stream 2):    W2 = gaussian_noise(s, (d, m), stream=2),
                        W1 = gaussian_noise(s, (m, p), stream=2, offset=d * m) / sqrt(p)
                        (for d = p = 1 this is ReLUNet1D.init(m, s, inner="gaussian"));
    data index (3):     i[j, b] = min(floor(n * uniform(s, (steps, B), stream=3)[j, b]), n - 1);
    noise (4):          Z[j, b, :] = gaussian_noise(s, (steps, B, d), stream=4)[j, b, :];
    time index (6):     k[j, b] = #{k' : cdf[k'] <= uniform(s, (steps, B), stream=6)[j, b]}
                        (train_diffusion; cdf the cumulative time probabilities);
    Monte Carlo (7):    the excess-risk noise, see excess_risk_mc;
    sharpness (14):     the fixed noise (and times) of sharpness_mc and
                        diffusion_sharpness_mc.

Networks sharing a seed (different learning rates) see the same draws.  The draws are
made on the CPU by bigstep's Philox kernel, one chunk of steps at a time, in float64,
and copied to the training device (and dtype): on CUDA the draws are the CPU's, so a
CUDA run differs from a CPU run only by floating-point rounding.  Generating them costs
(2 + d) B numbers per step and seed, small beside the step's O(B m p) work.

On the CPU, train_dsm and train_diffusion run by default in the fused compiled trainer
(:mod:`bigstep.training.sgd_nd`: the same draws, update and divergence rule, no torch;
``backend="cpp"`` or ``"numba"`` picks its backend); ``backend="torch"`` or a CUDA device
takes the torch loop above, which requires PyTorch (``pip install bigstep[torch]``).
Importing bigstep does not import torch.
"""

from __future__ import annotations

import numpy as np

from .. import _streams as streams
from .._arrays import as_numpy
from .._validate import integer, integers, positives, real_scalar, schedule_rate, training_data
from ..random import gaussian_noise, uniform
from ._args import PARAM_LIMIT, check_device, check_dtype, check_record_every, torch_module
from ._batch import ND_RECORDS, index_draws, train_networks
from .mc import excess_risk_mc

__all__ = ["train_dsm", "train_diffusion", "time_grid"]

_STREAM_NOISE, _STREAM_TIME = streams.SGD_NOISE, streams.DIFFUSION_TIME
_TIME_WEIGHTS = ("sigma", "inv_sigma", "uniform")


class _DSMProblem:
    """Inputs of train_dsm: u = Y = mu x_i + sigma Z, F = s_theta(Y) + Z / sigma."""

    kind = "dsm"

    def __init__(self, x, mu, sigma, data_of_seed, seed_pos, coordinate_mean=False):
        self.x = x                                  # (D, n, d) float64
        self.coordinate_mean = coordinate_mean
        self.n, self.d = x.shape[1], x.shape[2]
        self.p = self.d
        self.mu, self.sigma = mu, sigma
        self.data_of_seed = data_of_seed            # (S,) data set of each seed position
        self.data_of = data_of_seed[seed_pos]       # (R,) data set of each network

    def norm(self, B):
        # batch mean of the squared norm (sum over coordinates), or also the mean over coordinates
        return float(B * self.d) if self.coordinate_mean else float(B)

    def setup(self, torch, device, dtype):
        self.X = torch.as_tensor(self.x, dtype=dtype, device=device)
        self.torch, self.device, self.dtype = torch, device, dtype

    def draws(self, positions, seeds, k0, k1, B):
        """Inputs u (C, S, B, d) and offsets zc (C, S, B, d) of steps k0..k1-1 for the seeds."""
        t = self.torch
        idx = np.stack([index_draws(s, k0, k1, B, self.n) for s in seeds], axis=1)          # (C, S, B)
        z = np.stack([gaussian_noise(s, (k1 - k0, B, self.d), stream=_STREAM_NOISE, offset=k0 * B * self.d)
                      for s in seeds], axis=1)                                                 # (C, S, B, d)
        data = self.data_of_seed[np.asarray(positions)]
        x = self.x[data[None, :, None], idx]                                                   # (C, S, B, d)
        u = t.as_tensor(self.mu * x + self.sigma * z, dtype=self.dtype, device=self.device)   # Y = mu x + sigma Z
        zc = t.as_tensor(z / self.sigma, dtype=self.dtype, device=self.device)                # (Y - mu x)/sigma^2
        return u, zc

    def excess_risk(self, params, r, n_mc):
        return excess_risk_mc(params, self.x[self.data_of[r]], self.mu, self.sigma, n_mc=n_mc, seed=0)

    def info(self):
        return {"x": self.x, "data_of": self.data_of, "mu": self.mu, "sigma": self.sigma}


class _DiffusionProblem:
    """Inputs of train_diffusion: u = [mu(t) x_i + sigma(t) Z; t], F = r_theta(t, .) - Z."""

    kind = "diffusion"

    def __init__(self, x, times, probs, mus, sigmas, schedule, time_weights):
        self.x = x                      # (n, d) float64
        self.n, self.d = x.shape
        self.p = self.d + 1
        self.times, self.probs, self.mus, self.sigmas = times, probs, mus, sigmas
        self.cdf = np.cumsum(probs)
        self.cdf /= self.cdf[-1]
        self.schedule, self.time_weights = schedule, time_weights

    def norm(self, B):
        return float(B * self.d)        # mean over the batch and the coordinates

    def setup(self, torch, device, dtype):
        self.torch, self.device, self.dtype = torch, device, dtype

    def time_indices(self, seed, k0, k1, B):
        """Grid indices k[j, b] of steps k0..k1-1 (stream 6, inverse cdf), int64 (k1 - k0, B)."""
        u = uniform(seed, (k1 - k0, B), stream=_STREAM_TIME, offset=k0 * B)
        return np.minimum(np.searchsorted(self.cdf, u, side="right"), self.times.shape[0] - 1)

    def draws(self, positions, seeds, k0, k1, B):
        """Inputs u (C, S, B, d + 1) and offsets zc (C, S, B, d) of steps k0..k1-1 for the seeds."""
        idx = np.stack([index_draws(s, k0, k1, B, self.n) for s in seeds], axis=1)          # (C, S, B)
        z = np.stack([gaussian_noise(s, (k1 - k0, B, self.d), stream=_STREAM_NOISE, offset=k0 * B * self.d)
                      for s in seeds], axis=1)                                                 # (C, S, B, d)
        kt = np.stack([self.time_indices(s, k0, k1, B) for s in seeds], axis=1)              # (C, S, B)
        u = np.empty(idx.shape + (self.p,))
        u[..., :self.d] = self.mus[kt][..., None] * self.x[idx] + self.sigmas[kt][..., None] * z
        u[..., self.d] = self.times[kt]
        t = self.torch
        return (t.as_tensor(u, dtype=self.dtype, device=self.device),
                t.as_tensor(-z, dtype=self.dtype, device=self.device))                        # F = r - Z

    def info(self):
        return {"x": self.x, "times": self.times, "probs": self.probs, "schedule": self.schedule,
                "time_weights": self.time_weights}


# ------------------------------------------------------------------ public trainers


def _route(device, backend):
    """(route, backend): "fused" with "cpp"/"numba" (CPU, no torch needed) or "torch"."""
    if not isinstance(backend, str) or backend not in ("auto", "cpp", "numba", "torch"):
        raise ValueError(f"backend must be 'auto', 'cpp', 'numba' or 'torch', got {backend!r}")
    on_cpu = isinstance(device, str) and device == "cpu"
    if backend == "torch" or (backend == "auto" and not on_cpu):
        return "torch", "torch"
    if not on_cpu:
        raise ValueError(f"backend {backend!r} trains on the CPU only; device must be 'cpu', got {device!r} "
                         "(backend='torch' or 'auto' for a GPU)")
    from .. import _backend

    return "fused", _backend.resolve(backend, family="sgd_nd")


def _numpy_dtype(dtype):
    """float32 / float64 from a name, a numpy dtype or a torch dtype (without importing torch)."""
    if str(dtype) in ("float32", "torch.float32"):
        return np.float32
    if str(dtype) in ("float64", "torch.float64"):
        return np.float64
    try:
        npd = np.dtype(dtype)
    except TypeError:
        npd = None
    if npd in (np.float32, np.float64):
        return npd.type
    raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")


def _common(lr, seed, steps, batch_size, width, device, dtype, record_every, progress, max_abs, num_threads,
            backend="torch"):
    route, backend = _route(device, backend)
    lr = np.asarray(positives(lr, "lr"), dtype=np.float64)
    seeds = integers(seed, "seed")
    steps = integers(steps, "steps")
    if len(steps) not in (1, lr.shape[0]):
        raise ValueError(f"steps must be an integer or a sequence of length {lr.shape[0]} (one per lr), "
                         f"got length {len(steps)}")
    batch_size = integer(batch_size, "batch_size", minimum=1)
    width = integer(width, "width", minimum=1)
    if route == "torch":
        torch = torch_module()
        dev = check_device(torch, device)
        dt = check_dtype(torch, dtype)
    else:
        dev, dt = "cpu", _numpy_dtype(dtype)
    record_every = check_record_every(record_every)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {type(progress).__name__}")
    max_abs = real_scalar(max_abs, "max_abs")
    if num_threads is not None:
        integer(num_threads, "num_threads", minimum=1)
    return lr, seeds, steps, batch_size, width, dev, dt, record_every, max_abs, backend


def _run(problem, backend, **kw):
    """The torch loop, or the fused CPU kernel of ``backend`` (:mod:`bigstep.training.sgd_nd`);
    ``num_threads`` is then the kernel's thread count for the call (restored after)."""
    if backend == "torch":
        return train_networks(problem, **kw)
    from .result import TrainResult
    from .sgd_nd import train_fused, using_threads

    kw.pop("device")
    with using_threads(backend, kw.pop("num_threads")):
        return train_fused(problem, backend=backend, result_cls=TrainResult, **kw)


def train_dsm(x, mu, sigma, *, lr, steps, batch_size=50, width=1000, coordinates="sum", n_mc=1000, seed=0,
              record_every=None, record=("loss", "excess_risk"), max_abs=PARAM_LIMIT, device="cpu",
              dtype="float64", num_threads=None, progress=False, backend="auto"):
    """SGD on the DSM loss at one noise level for two-layer ReLU nets R^d -> R^d (Figure 2 right).

    With ``Y_b = mu x_{i_b} + sigma Z_b`` and the squared norm summed over the d
    coordinates:

        s_theta(y) = (1/m) W2 relu(W1 y + b1),  W1 (m, d) ~ N(0, 1/d),  W2 (d, m) ~ N(0, 1),  b1 = 0
        L_j(theta) = (1/B) sum_b ||s_theta(Y_b) + (Y_b - mu x_{i_b}) / sigma^2||^2
        theta <- theta - m lr grad L_j(theta),   theta = (W1, b1, W2)

    The draws, the batching of many networks and the divergence rule are those of the
    module :mod:`bigstep.training.problems`.  On the CPU no PyTorch is needed (the fused
    trainer); the torch route (``backend="torch"`` or a GPU) requires it.

    Parameters
    ----------
    x : array
        Training data (n, d) (or (n,) for d = 1), shared by every network; or (S, n, d)
        with S = len(seed): network r trains on ``x[i_seed]`` (one data set per
        simulation, as in Figure 2).
    mu, sigma : float
        The noise level, positive and finite.
    lr : float or sequence of float
        Learning rates.
    steps : int or sequence of int
        The number of SGD steps, >= 0, or one per learning rate (networks that finish
        early leave the batch; with 0 a network keeps its initial weights).
    batch_size : int
        B, indices drawn with replacement.
    width : int
        m.
    coordinates : str
        "sum" (default, the paper's eq. (5): squared norm) or "mean" (the authors'
        notebook: mean over the d coordinates as well, so the gradient and the recorded
        loss are 1/d of the "sum" ones and a given lr takes d times smaller steps).
    n_mc : int
        Monte Carlo draws per training point of the recorded excess risk.
    seed : int or sequence of int
        Philox seeds, >= 0 (networks: lr outer, seed inner).
    record_every : int or None
        Also record every this many steps (None: only at the end).
    record : tuple of str
        A subset of ("loss", "excess_risk"); the excess risk is the Monte Carlo estimate
        of :func:`excess_risk_mc` with ``n_mc`` draws per point and seed 0, with its
        standard error (n n_mc forward passes per network and record: not free).
    max_abs : float
        A network whose batch loss is not finite or above 1e16, or whose update gives a
        parameter that is not finite or above ``max_abs`` in absolute value, is frozen
        before that update and marked diverged (``diverged_step`` = the steps it made).
    device : str
        "cpu" or "cuda".
    dtype : str or torch.dtype
        "float64" (default) or "float32" (or torch dtypes).
    num_threads : int or None
        Threads for this call (restored afterwards): torch's on the torch route, the
        compiled kernels' on the fused route; None leaves the setting alone.  On a machine
        shared with other busy processes, 1 torch thread can be ten times faster than 2
        for small batches (the threads wait on each other).
    progress : bool
        A progress bar on stderr.  Ctrl-C stops the call within about a second
        (KeyboardInterrupt, nothing returned).
    backend : str
        "auto" (default: on the CPU the fused compiled trainer, "cpp" else "numba"; on a
        GPU torch), "cpp", "numba" (fused, CPU, no torch) or "torch" (the torch loop).
        Same seed, same draws: the routes agree up to floating-point rounding.

    Returns
    -------
    TrainResult
        Parameters W1 (R, m, d), b1 (R, m), W2 (R, d, m) as float64 numpy, the history
        DataFrame, divergence flags; ``network(r)`` a :class:`bigstep.ReLUNetND`.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> x = bigstep.gaussian_noise(1, (20, 3))
    >>> res = bigstep.train_dsm(x, 0.9, 0.5, lr=[0.1, 0.01], seed=[0, 1], steps=50, width=64, n_mc=100)
    >>> res.W1.shape, res.lr.tolist()
    ((4, 64, 3), [0.1, 0.1, 0.01, 0.01])
    >>> list(res.history.columns)
    ['network', 'lr', 'seed', 'step', 'loss', 'excess_risk', 'excess_risk_se', 'diverged']
    """
    lr, seeds, steps, batch_size, width, dev, dt, record_every, max_abs, backend = _common(
        lr, seed, steps, batch_size, width, device, dtype, record_every, progress, max_abs, num_threads, backend)
    xa = np.asarray(as_numpy(x, "x"), dtype=np.float64)
    if xa.ndim == 3:
        if xa.shape[0] != len(seeds):
            raise ValueError(f"x of shape (S, n, d) needs S = len(seed) = {len(seeds)}, got shape {xa.shape}")
        for k in range(xa.shape[0]):
            training_data(xa[k], ndim=2)
        data = xa
        data_of_seed = np.arange(len(seeds))
    else:
        x2 = np.asarray(training_data(xa), dtype=np.float64)
        data = (x2.reshape(-1, 1) if x2.ndim == 1 else x2)[None]
        data_of_seed = np.zeros(len(seeds), dtype=np.int64)
    mu = real_scalar(mu, "mu")
    sigma = real_scalar(sigma, "sigma")
    if isinstance(record, str) or not all(r in ND_RECORDS for r in record):
        raise ValueError(f"record must be a tuple of names from {ND_RECORDS}, got {record!r}")
    n_mc = integer(n_mc, "n_mc", minimum=2)
    if coordinates not in ("sum", "mean"):
        raise ValueError(f"coordinates must be 'sum' or 'mean', got {coordinates!r}")
    problem = _DSMProblem(np.ascontiguousarray(data), mu, sigma, data_of_seed,
                          np.tile(np.arange(len(seeds)), lr.shape[0]), coordinates == "mean")
    return _run(problem, backend, lr=lr, seeds=seeds, steps=steps, batch_size=batch_size, width=width, device=dev,
                dtype=dt, record_every=record_every, record=tuple(record), n_mc=n_mc, progress=progress,
                max_abs=max_abs, label="train_dsm", num_threads=num_threads)


def time_grid(*, n_times=100, T=1.0, delta=0.01, time_weights="sigma", schedule="ou"):
    """The training times of :func:`train_diffusion` and their probabilities.

    Parameters
    ----------
    n_times : int
        The number of grid times, >= 1.
    T, delta : float
        The grid ``t = linspace(delta, T, n_times)``, delta <= T.
    time_weights : str
        p proportional to sigma(t) ("sigma", the paper's text), 1/sigma(t)
        ("inv_sigma", the authors' notebook) or constant ("uniform").
    schedule : str
        "ou" or "notebook" (:func:`bigstep.noise_schedule`).

    Returns
    -------
    t : numpy.ndarray
        Shape (n_times,).
    p : numpy.ndarray
        Shape (n_times,), summing to 1.

    Examples
    --------
    >>> from bigstep.training import time_grid
    >>> t, p = time_grid(n_times=3, T=1.0, delta=0.5)
    >>> t.tolist(), round(float(p.sum()), 12)
    ([0.5, 0.75, 1.0], 1.0)
    """
    from ..scores import noise_schedule

    n_times = integer(n_times, "n_times", minimum=1)
    T = real_scalar(T, "T")
    delta = real_scalar(delta, "delta")
    if not delta <= T:
        raise ValueError(f"delta must be at most T = {T!r}, got delta = {delta!r}")
    if time_weights not in _TIME_WEIGHTS:
        raise ValueError(f"time_weights must be one of {_TIME_WEIGHTS}, got {time_weights!r}")
    schedule_rate(schedule)
    t = np.linspace(delta, T, n_times)
    _, sig = noise_schedule(t, kind=schedule)
    w = {"sigma": sig, "inv_sigma": 1.0 / sig, "uniform": np.ones_like(sig)}[time_weights]
    return t, w / w.sum()


def train_diffusion(x, *, lr, steps, batch_size=5000, width=1000, n_times=100, T=1.0, delta=0.01,
                    time_weights="sigma", schedule="ou", seed=0, record_every=None, max_abs=PARAM_LIMIT,
                    device="cpu", dtype="float32", num_threads=None, progress=False, backend="auto"):
    """SGD for the time-conditional network of Appendix E (Figures 3 and 4).

    No output bias (b2 = 0, not trained):

        r_theta(t, x) = (1/m) W2 relu(W1 [x; t] + b1),   W1 (m, d + 1) ~ N(0, 1/(d + 1)),
                        W2 (d, m) ~ N(0, 1),  b1 = 0
        L_j(theta) = (1/(B d)) sum_b ||r_theta(t_b, mu(t_b) x_{i_b} + sigma(t_b) Z_b) - Z_b||^2
        theta <- theta - m lr grad L_j(theta),   theta = (W1, b1, W2)

    with ``t_b`` drawn from the grid ``linspace(delta, T, n_times)`` with probabilities
    proportional to sigma(t) (``time_weights="sigma"``, the paper's text; "inv_sigma" is
    the authors' notebook, "uniform" also offered) and the schedule of
    :func:`bigstep.noise_schedule` ("ou": mu = exp(-t), the paper's text; "notebook":
    mu = exp(-2t)).  The learned score is ``s_theta(x, t) = -r_theta(t, x) / sigma(t)``:
    the result's ``score`` is a :class:`bigstep.TimeReLUScore` (float64) for
    :func:`bigstep.sample_reverse`.  On the CPU no PyTorch is needed (the fused trainer);
    the torch route (``backend="torch"`` or a GPU) requires it.

    Parameters
    ----------
    x : array
        Training data (n, d).
    lr, steps, seed
        As in :func:`train_dsm` (sequences train ``len(lr) len(seed)`` networks
        together).
    batch_size : int
        B.
    width : int
        m.
    n_times : int
        The number of training times (:func:`time_grid`).
    T, delta : float
        The time grid runs from delta to T (:func:`time_grid`).
    time_weights, schedule : str
        The time probabilities and the noise schedule (above).
    record_every : int or None
        Record the mean batch loss every this many steps (and at the end).
    max_abs, num_threads, progress, backend
        As in :func:`train_dsm`.
    device : str
        "cpu" or "cuda".
    dtype : str or torch.dtype
        "float32" (default) or "float64".

    Returns
    -------
    TrainResult
        With ``.score`` (one network) or ``.networks``.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> x = 2 * bigstep.gaussian_noise(0, (10, 2))
    >>> res = bigstep.train_diffusion(x, lr=0.5, steps=20, batch_size=256, width=64)
    >>> res.score
    TimeReLUScore(width=64, dim=2, schedule='ou')
    >>> bigstep.sample_reverse(res.score, 100, 2, seed=1).shape
    (100, 2)
    """
    lr, seeds, steps, batch_size, width, dev, dt, record_every, max_abs, backend = _common(
        lr, seed, steps, batch_size, width, device, dtype, record_every, progress, max_abs, num_threads, backend)
    xa = np.asarray(training_data(x, ndim=2), dtype=np.float64)
    times, probs = time_grid(n_times=n_times, T=T, delta=delta, time_weights=time_weights, schedule=schedule)
    from ..scores import noise_schedule

    mus, sigmas = noise_schedule(times, kind=schedule)
    problem = _DiffusionProblem(np.ascontiguousarray(xa), times, probs, mus, sigmas, schedule, time_weights)
    return _run(problem, backend, lr=lr, seeds=seeds, steps=steps, batch_size=batch_size, width=width, device=dev,
                dtype=dt, record_every=record_every, record=("loss",), n_mc=2, progress=progress,
                max_abs=max_abs, label="train_diffusion", num_threads=num_threads)
