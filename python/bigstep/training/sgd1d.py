"""Training 1-D two-layer ReLU networks on the DSM loss: fused batched SGD and exact GD
(paper Section 4 and Appendices D, E).

Network (m = width):  s_theta(y) = (1/m) sum_l W2_l relu(W1_l y + b1_l).

SGD step j (:func:`train_sgd`): draw B indices i_b uniformly with replacement from the n
training points and fresh noise z_b ~ N(0, 1), set y_b = mu x_{i_b} + sigma z_b, and take

    L_j(theta) = (1/B) sum_b (s_theta(y_b) + (y_b - mu x_{i_b}) / sigma^2)^2,
    theta <- theta - m * lr * grad L_j(theta),

so the 1/m of the network cancels: W2_l -= lr (2/B) sum_b f_b relu(W1_l y_b + b1_l),
b1_l -= lr (2/B) W2_l sum_b f_b 1{W1_l y_b + b1_l > 0}, W1_l likewise with y_b (f_b the
residual inside the square).  relu'(0) is taken as 0 (the indicator of pre > 0).
Trained parameters: (W2, b1) always, W1 when ``train_inner``.  With ``clip=A``, W2 is
clipped to [-A, A] after every step.  :func:`train_gd` takes the same step with the
exact gradient of the population risk R_n (:func:`bigstep.dsm_risk_grad`).

Randomness (docs/design.md section 3): the network with seed s starts from
``ReLUNet1D.init(width, s, inner=inner, bias=bias)`` (Philox stream 2); its step-j slot-b data index is
``min(floor(n * uniform(s, (steps, B), stream=3)[j, b]), n - 1)`` and its noise
``gaussian_noise(s, (steps, B, 1), stream=4)[j, b, 0]``, generated inside the compiled
kernel.  Networks with the same seed and different learning rates see the same start
and the same data (common random numbers), and results are bit-identical on one backend
whatever the chunking or the thread count.

Divergence is an outcome, not an error: a step whose batch loss is not finite or above
1e16, or whose new parameters are not finite or above 1e8 in absolute value, is refused;
the network keeps the parameters before that step, is marked ``diverged`` with
``diverged_step`` = the number of steps it made, and stops; the others go on.
"""

from __future__ import annotations

import numbers
import time

import numpy as np

from .. import _backend
from .._arrays import as_numpy
from .._progress import Progress, run_in_chunks
from .._torch import device_route
from .._validate import integer, integers, positives, real_scalar, training_data
from ..nets import ReLUNet1D
from ._args import LOSS_LIMIT, PARAM_LIMIT
from .recorder import RECORDS, Recorder, pandas_module, record_names, record_steps
from .result import TrainResult

__all__ = ["train_sgd", "train_gd"]

_INNER = ("gaussian", "sign")


def _options(x, mu, sigma, lr, steps, width, inner, train_inner, bias, clip, seed, record_every, record, init,
             backend, family):
    """Validated arguments shared by train_sgd (``family`` "sgd") and train_gd ("relu_risk").

    Device arrays (or backend "torch"/"cuda"): x is checked on its device and kept there
    for the kernels (``x_device``); the records are computed on the host (``backend``)."""
    name = x_device = None
    if device_route(backend, {"x": x}):
        from .._torch._api import training_data_1d

        name, x_device = training_data_1d(x, backend, family)
        xa = x_device.cpu().numpy()  # O(n): the exact records run on the CPU
    else:
        xa = np.ascontiguousarray(training_data(x, ndim=1), dtype=np.float64)
    mu_v = real_scalar(mu, "mu")
    sigma_v = real_scalar(sigma, "sigma")
    lrs = positives(lr, "lr")
    steps = integer(steps, "steps", minimum=0)
    if inner not in _INNER:
        raise ValueError(f"inner must be 'gaussian' or 'sign', got {inner!r}")
    inner_sets_default = train_inner is None  # else inner only describes the default initialisation
    if inner_sets_default:
        train_inner = inner == "gaussian"
    if not isinstance(train_inner, (bool, np.bool_)):
        raise TypeError(f"train_inner must be True, False or None, got {type(train_inner).__name__}")
    clip_v = 0.0 if clip is None else real_scalar(clip, "clip")
    seeds = integers(seed, "seed")
    if record_every is None:
        record_every = max(1, steps // 100)
    record_every = integer(record_every, "record_every", minimum=1)
    names = record_names(record)
    if name is None:
        name = _backend.resolve(backend, family=family)
    if width is not None:
        width = integer(width, "width", minimum=1)
    starts = _starts(init, width, seeds, len(lrs), inner, bias, inner_sets_default)
    return dict(x=xa, mu=mu_v, sigma=sigma_v, lrs=lrs, steps=steps, train_inner=bool(train_inner), clip=clip_v,
                seeds=seeds, record_every=record_every, record=names, starts=starts, kernel_backend=name,
                x_device=x_device, backend=name if x_device is None else "auto")


def _starts(init, width, seeds, n_lr, inner, bias, inner_sets_default) -> list[ReLUNet1D]:
    """Initial network of each (lr, seed) pair, lr outer.

    With ``init``, ``bias`` (the default b1) would be ignored, and so would ``inner`` when
    it does not set train_inner's default: giving them is an error, not a silent no-op."""
    R = n_lr * len(seeds)
    if init is None:
        m = 1000 if width is None else width
        if isinstance(bias, bool):
            raise TypeError("bias must be a number or an array of shape (width,), got bool")
        b = np.asarray(as_numpy(bias, "bias"), dtype=np.float64)
        if b.ndim == 0:
            b = float(b)
            if not np.isfinite(b):
                raise ValueError(f"bias must be finite, got {b!r}")
        elif b.shape != (m,):
            raise ValueError(f"bias must be a scalar or have shape ({m},) (one per neuron), got shape {b.shape}")
        elif not np.isfinite(b).all():
            raise ValueError("bias must be finite, got NaN or infinity")
        by_seed = {s: ReLUNet1D.init(m, s, inner=inner, bias=b) for s in dict.fromkeys(seeds)}
        per_seed = [by_seed[s] for s in seeds]
        return per_seed * n_lr
    nets = [init] if isinstance(init, ReLUNet1D) else list(init) if isinstance(init, (list, tuple)) else None
    if nets is None or not nets or not all(isinstance(n, ReLUNet1D) for n in nets):
        raise TypeError(f"init must be a ReLUNet1D or a list of them, got {type(init).__name__}")
    default_bias = isinstance(bias, (numbers.Real, np.number)) and not isinstance(bias, (bool, np.bool_)) and bias == 0
    if not default_bias:
        got = f"an array of shape {np.shape(bias)}" if np.ndim(bias) else repr(bias)
        raise ValueError(f"bias is ignored when init is given (the networks of init carry their own b1): "
                         f"leave bias at 0.0, got {got}")
    if not inner_sets_default and inner != "gaussian":
        raise ValueError(f"inner is ignored when init and train_inner are both given (init fixes W1, train_inner "
                         f"whether it is trained): leave inner at 'gaussian', got {inner!r}")
    widths = {n.width for n in nets}
    if len(widths) != 1:
        raise ValueError(f"init networks must all have the same width, got widths {sorted(widths)}")
    if width is not None and width != nets[0].width:
        raise ValueError(f"width must match the width of init, got width={width} and init width {nets[0].width}")
    if len(nets) == 1:
        return nets * R
    if len(nets) == len(seeds):
        return nets * n_lr
    if len(nets) == R:
        return nets
    raise ValueError(f"init must be one network, one per seed ({len(seeds)}) or one per network ({R}), "
                     f"got {len(nets)}")


class _Run:
    """What train_sgd and train_gd share: the networks, the per-network bookkeeping, the
    records at the record steps and the result."""

    def __init__(self, kind, o):
        self.kind, self.o = kind, o
        lrs, seeds = o["lrs"], o["seeds"]
        self.nets = list(o["starts"])
        self.R = len(self.nets)
        self.lr_of = np.repeat(np.asarray(lrs, dtype=np.float64), len(seeds))
        self.seed_of = np.tile(np.asarray(seeds, dtype=np.uint64), len(lrs))
        self.diverged_step = np.full(self.R, -1, dtype=np.int64)
        self.loss_sum = np.zeros(self.R)
        self.loss_count = np.zeros(self.R, dtype=np.int64)
        self.closed = np.zeros(self.R, dtype=bool)
        self.recorder = Recorder(o, self.lr_of, self.seed_of)
        self.marks = record_steps(o["steps"], o["record_every"])
        self.next_mark = 1

    def record_at(self, k: int, current=None) -> None:
        """Record every network still open at step k (a diverged one at its diverged step,
        then closed); ``current(r)``, if given, is network r's state now."""
        for r in range(self.R):
            if self.closed[r]:
                continue  # stopped earlier: its last row (diverged) is written
            d = int(self.diverged_step[r])
            if current is not None:
                self.nets[r] = current(r)
            loss = self.loss_sum[r] / self.loss_count[r] if self.loss_count[r] else np.nan
            self.recorder.record(r, d if d >= 0 else k, self.nets[r], float(loss), d >= 0)
            self.closed[r] = d >= 0
        self.loss_sum[:] = 0.0
        self.loss_count[:] = 0

    def due(self, k: int) -> bool:
        """Whether k is the next record step (then it moves on)."""
        if k != self.marks[self.next_mark]:
            return False
        self.next_mark += 1
        return True

    def run(self, chunk, progress: bool, label: str) -> TrainResult:
        """Train with ``chunk(k0, k1)`` (which records when ``due``) and build the result."""
        t0 = time.perf_counter()
        bar = Progress(self.o["steps"], progress, label=f"{label} ({self.R} networks)")
        run_in_chunks(chunk, self.o["steps"], bar)
        seconds = time.perf_counter() - t0
        ds = self.diverged_step
        params = tuple(np.stack([getattr(n, a) for n in self.nets]) for a in ("W1", "b1", "W2"))
        return TrainResult(self.kind, params, lr=self.lr_of, seed=self.seed_of,
                           steps=np.full(self.R, self.o["steps"]), steps_done=np.where(ds >= 0, ds, self.o["steps"]),
                           diverged_step=ds, history=self.recorder, seconds=seconds,
                           info={"x": self.o["x"], "mu": self.o["mu"], "sigma": self.o["sigma"]}, networks=self.nets)


# ----------------------------------------------------------------------------- SGD


def _kernel(backend: str):
    return _backend.kernels("sgd", backend).sgd_train


def train_sgd(x, mu, sigma, *, lr, steps, batch_size=50, width=None, inner="gaussian", train_inner=None,
              bias=0.0, clip=None, init=None, seed=0, record_every=None, record=RECORDS, progress=False,
              backend="auto") -> TrainResult:
    """Train 1-D ReLU networks by SGD on the DSM loss, every (lr, seed) pair in one fused call.

    Step j draws B indices ``i_b`` uniformly with replacement and fresh noise ``z_b``,
    sets ``y_b = mu x_{i_b} + sigma z_b`` and updates

        L_j(theta) = (1/B) sum_b (s_theta(y_b) + (y_b - mu x_{i_b}) / sigma^2)^2
        theta <- theta - m lr grad L_j(theta)

    (see :mod:`bigstep.training.sgd1d` for the draws, the update and the divergence
    rule).  Needs pandas (``pip install bigstep[repro]``).

    Parameters
    ----------
    x : array
        1-D training data, shape (n,) (read as float64; finite, n >= 1).
    mu, sigma : float
        The noise level, positive.
    lr : float or sequence of float
        Positive learning rates.  The networks are the Cartesian product of lr and seed,
        lr outer and seed inner: network k has ``lr[k // len(seed)]`` and
        ``seed[k % len(seed)]``.
    steps : int
        The number of steps, >= 0 (0: no training: the initial networks, one record at
        step 0).
    batch_size : int
        B >= 1.
    width : int or None
        m, the number of neurons (default 1000, or the width of ``init``).
    inner : str
        "gaussian" (W1 ~ N(0, 1), Appendix E) or "sign" (W1 in {+1, -1}, the theory
        setting).
    train_inner : bool or None
        Train W1 too (default True for "gaussian", False for "sign").
    bias : float or array
        The initial b1, a scalar or an array (width,) (as :meth:`ReLUNet1D.init`).
    clip : float or None
        None, or A > 0: clip W2 to [-A, A] after each step.
    init : ReLUNet1D, list of ReLUNet1D or None
        Networks to start from instead of :meth:`ReLUNet1D.init` (one per seed or one per
        network).  Then ``bias`` must stay 0.0 and ``inner`` only sets train_inner's
        default (ValueError if either would be ignored).
    seed : int or sequence of int
        Philox seeds, >= 0.
    record_every : int or None
        Record every this many steps (default ``max(1, steps // 100)``); records are
        taken at step 0, every record_every steps and at the end.
    record : tuple of str
        A subset of ("loss", "risk", "excess_risk", "sharpness"): exact risk, excess
        risk and sharpness (``wrt="all"`` if W1 is trained, else ``"outer_bias"``) of
        :mod:`bigstep.relu_risk` at each record step (sharpness is the expensive one).
    progress : bool
        Show a progress bar.
    backend : str
        "auto", "cpp" or "numba".

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import bigstep, numpy as np
    >>> x = np.array([-1.0, 0.0, 1.0])
    >>> res = bigstep.train_sgd(x, 0.95, 0.3, lr=[0.1, 0.01], seed=[0, 1], steps=200, width=32,
    ...                         record=("loss",))
    >>> len(res.networks), res.diverged.tolist()
    (4, [False, False, False, False])
    """
    pandas_module()
    o = _options(x, mu, sigma, lr, steps, width, inner, train_inner, bias, clip, seed, record_every, record, init,
                 backend, "sgd")
    B = integer(batch_size, "batch_size", minimum=1)
    run = _Run("sgd", o)
    w1, b, w2 = (np.ascontiguousarray(np.stack([getattr(n, a) for n in run.nets]), dtype=np.float64)
                 for a in ("W1", "b1", "W2"))
    kernel = _kernel(o["kernel_backend"])
    if o["x_device"] is not None:  # the state lives on the device between records
        from .._torch._api import DeviceTrainer

        kernel = DeviceTrainer(kernel, o["x_device"], run.lr_of, run.seed_of, w1, w2, b)
    current = lambda r: ReLUNet1D(w1[r], b[r], w2[r])  # noqa: E731
    run.record_at(0, current)

    def chunk(k0: int, k1: int) -> None:
        k = k0
        while k < k1:
            stop = min(k1, run.marks[run.next_mark])
            kernel(o["x"], o["mu"], o["sigma"], run.lr_of, run.seed_of, w1, w2, b, B, o["train_inner"], o["clip"], k,
                   stop, run.diverged_step, run.loss_sum, run.loss_count)
            k = stop
            if run.due(k):
                run.record_at(k, current)

    return run.run(chunk, progress, "train_sgd")


# ------------------------------------------------------------------------------ GD


def train_gd(x, mu, sigma, *, lr, steps, width=None, inner="gaussian", train_inner=None, bias=0.0, clip=None,
             init=None, seed=0, record_every=None, record=RECORDS, progress=False, backend="auto") -> TrainResult:
    """Gradient descent on the exact population DSM risk ``R_n`` (Appendix D).

    The update of :func:`train_sgd` with the exact gradient:

        theta <- theta - m lr grad R_n(theta)

    The history's ``loss`` is the mean exact risk ``R_n(theta_j)`` over the steps since
    the previous record.  A step whose risk is not finite or above 1e16, or whose new
    parameters are not finite or above 1e8, is refused and the network stops (marked
    diverged).  Each step costs one :func:`bigstep.dsm_risk_grad` call,
    O(n m + m log m); networks run one after the other.

    Parameters
    ----------
    x, mu, sigma, lr, steps, width, inner, train_inner, bias, clip, init, seed, record_every, record, progress, backend
        As in :func:`train_sgd` (there is no batch).

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import bigstep, numpy as np
    >>> res = bigstep.train_gd(np.array([-1.0, 1.0]), 0.9, 0.5, lr=0.01, steps=20, width=16,
    ...                        record=("risk",), record_every=10)
    >>> res.history["step"].tolist()
    [0, 10, 20]
    """
    pandas_module()
    o = _options(x, mu, sigma, lr, steps, width, inner, train_inner, bias, clip, seed, record_every, record, init,
                 backend, "relu_risk")
    run = _Run("gd", o)
    width = run.nets[0].width
    wrt = "all" if o["train_inner"] else "outer_bias"
    exact = run.recorder.exact  # one prepared risk for the steps and the records: a record reuses a step's state

    def step(r: int, j: int) -> None:
        net = run.nets[r]
        risk, g = exact.risk(net), exact.grad(net)
        if not risk <= LOSS_LIMIT:
            run.diverged_step[r] = j
            return
        theta = net.theta(wrt=wrt) - width * run.lr_of[r] * g
        w2 = theta[width:2 * width] if wrt == "all" else theta[:width]
        if o["clip"] > 0:
            np.clip(w2, -o["clip"], o["clip"], out=w2)
        if not np.abs(theta).max() <= PARAM_LIMIT:
            run.diverged_step[r] = j
            return
        run.nets[r] = net.with_theta(theta, wrt=wrt)
        run.loss_sum[r] += risk
        run.loss_count[r] += 1

    def chunk(k0: int, k1: int) -> None:
        for j in range(k0, k1):
            for r in range(run.R):
                if run.diverged_step[r] < 0:
                    step(r, j)
            if run.due(j + 1):
                run.record_at(j + 1)

    run.record_at(0)
    return run.run(chunk, progress, "train_gd")
