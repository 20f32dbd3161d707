"""Training 1-D two-layer ReLU networks on the DSM loss: fused batched SGD and exact GD
(paper Section 4 and Appendices D, E).

Network (width m):  s_theta(y) = (1/m) sum_l w2_l relu(w1_l y + b_l).

SGD step j (:func:`train_sgd`): draw B indices i_b uniformly with replacement from the n
training points and fresh noise z_b ~ N(0, 1), set y_b = mu x_{i_b} + sigma z_b, and take

    L_j(theta) = (1/B) sum_b (s_theta(y_b) + (y_b - mu x_{i_b}) / sigma^2)^2,
    theta <- theta - m * lr * grad L_j(theta),

so the 1/m of the network cancels: w2_l -= lr (2/B) sum_b f_b relu(w1_l y_b + b_l),
b_l -= lr (2/B) w2_l sum_b f_b 1{w1_l y_b + b_l > 0}, w1_l likewise with y_b (f_b the
residual inside the square).  relu'(0) is taken as 0 (the indicator of pre > 0).
Trained parameters: (w2, b) always, w1 when ``train_inner``.  With ``clip=A``, w2 is
clipped to [-A, A] after every step.  :func:`train_gd` takes the same step with the
exact gradient of the population risk R_n (:func:`bigstep.dsm_risk_grad`).

Randomness (docs/design.md section 3): the network with seed s starts from
``ReLUNet1D.init(m, s, inner, bias)`` (Philox stream 2); its step-j slot-b data index is
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

import dataclasses
import numbers

import numpy as np

from .. import _backend
from .._arrays import as_numpy
from .._progress import Progress, run_in_chunks
from .._validate import integer, integers, positives, real_scalar, training_data
from ..nets import ReLUNet1D
from ..relu_risk import dsm_risk_grad
from ._args import LOSS_LIMIT, PARAM_LIMIT
from .recorder import RECORDS, Recorder, pandas_module, record_names, record_steps

__all__ = ["TrainResult", "train_sgd", "train_gd"]

_INNER = ("gaussian", "sign")


@dataclasses.dataclass(frozen=True, eq=False)
class TrainResult:
    """What :func:`train_sgd` and :func:`train_gd` return.

    Attributes
    ----------
    networks : list of ReLUNet1D, one per network (lr outer, seed inner): the last finite
        parameters (for a diverged network, those before the refused step)
    lr, seed : arrays (R,) float64 and uint64, the learning rate and seed of each network
    diverged : bool array (R,)
    diverged_step : int64 array (R,), the number of steps a diverged network made, -1 if not
    history : pandas.DataFrame, one row per network and record step, columns
        network, lr, seed, step, loss, risk, excess_risk, sharpness, diverged
        (unrequested records are NaN; ``loss`` is the mean batch loss, or exact risk for
        GD, over the steps since the previous record, NaN at step 0; a diverged network's
        last row is at its diverged_step, with diverged True)
    """

    networks: list
    lr: np.ndarray
    seed: np.ndarray
    diverged: np.ndarray
    diverged_step: np.ndarray
    history: object

    def to_frame(self):
        """One row per network: network, lr, seed, diverged, diverged_step and its last
        history record (step, loss, risk, excess_risk, sharpness)."""
        last = self.history.groupby("network", sort=True).tail(1).set_index("network")
        import pandas as pd

        out = pd.DataFrame({"network": np.arange(len(self.networks)), "lr": self.lr, "seed": self.seed,
                            "diverged": self.diverged, "diverged_step": self.diverged_step})
        cols = ["step", *RECORDS]
        return out.join(last[cols], on="network")


def _options(x, mu, sigma, lr, steps, m, inner, train_inner, bias, clip, seed, record_every, record, init,
             backend):
    """Validated arguments shared by train_sgd and train_gd."""
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
    name = _backend.resolve(backend, family="sgd")
    if m is not None:
        m = integer(m, "m", minimum=1)
    starts = _starts(init, m, seeds, len(lrs), inner, bias, inner_sets_default)
    return dict(x=xa, mu=mu_v, sigma=sigma_v, lrs=lrs, steps=steps, train_inner=bool(train_inner), clip=clip_v,
                seeds=seeds, record_every=record_every, record=names, backend=name, starts=starts)


def _starts(init, m, seeds, n_lr, inner, bias, inner_sets_default) -> list[ReLUNet1D]:
    """Initial network of each (lr, seed) pair, lr outer.

    With ``init``, ``bias`` (the default b) would be ignored, and so would ``inner`` when
    it does not set train_inner's default: giving them is an error, not a silent no-op."""
    R = n_lr * len(seeds)
    if init is None:
        m = 1000 if m is None else m
        if isinstance(bias, bool):
            raise TypeError("bias must be a number or an array of shape (m,), got bool")
        b = np.asarray(as_numpy(bias, "bias"), dtype=np.float64)
        if b.ndim == 0:
            b = float(b)
            if not np.isfinite(b):
                raise ValueError(f"bias must be finite, got {b!r}")
        elif b.shape != (m,):
            raise ValueError(f"bias must be a scalar or have shape ({m},) (one per neuron), got shape {b.shape}")
        elif not np.isfinite(b).all():
            raise ValueError("bias must be finite, got NaN or infinity")
        by_seed = {s: ReLUNet1D.init(m, s, inner, b) for s in dict.fromkeys(seeds)}
        per_seed = [by_seed[s] for s in seeds]
        return per_seed * n_lr
    nets = [init] if isinstance(init, ReLUNet1D) else list(init) if isinstance(init, (list, tuple)) else None
    if nets is None or not nets or not all(isinstance(n, ReLUNet1D) for n in nets):
        raise TypeError(f"init must be a ReLUNet1D or a list of them, got {type(init).__name__}")
    default_bias = isinstance(bias, (numbers.Real, np.number)) and not isinstance(bias, (bool, np.bool_)) and bias == 0
    if not default_bias:
        got = f"an array of shape {np.shape(bias)}" if np.ndim(bias) else repr(bias)
        raise ValueError(f"bias is ignored when init is given (the networks of init carry their own b): "
                         f"leave bias at 0.0, got {got}")
    if not inner_sets_default and inner != "gaussian":
        raise ValueError(f"inner is ignored when init and train_inner are both given (init fixes w1, train_inner "
                         f"whether it is trained): leave inner at 'gaussian', got {inner!r}")
    widths = {n.m for n in nets}
    if len(widths) != 1:
        raise ValueError(f"init networks must all have the same width, got widths {sorted(widths)}")
    if m is not None and m != nets[0].m:
        raise ValueError(f"m must match the width of init, got m={m} and init width {nets[0].m}")
    if len(nets) == 1:
        return nets * R
    if len(nets) == len(seeds):
        return nets * n_lr
    if len(nets) == R:
        return nets
    raise ValueError(f"init must be one network, one per seed ({len(seeds)}) or one per network ({R}), "
                     f"got {len(nets)}")


def _finish(nets, lr_of, seed_of, diverged_step, recorder) -> TrainResult:
    ds = np.asarray(diverged_step, dtype=np.int64)
    return TrainResult(networks=list(nets), lr=np.asarray(lr_of, dtype=np.float64),
                       seed=np.asarray(seed_of, dtype=np.uint64), diverged=ds >= 0, diverged_step=ds,
                       history=recorder.frame())


# ----------------------------------------------------------------------------- SGD


def _kernel(backend: str):
    return _backend.kernels("sgd", backend).sgd_train


def train_sgd(x, mu, sigma, *, lr, steps, batch_size=50, m=None, inner="gaussian", train_inner=None, bias=0.0,
              clip=None, seed=0, record_every=None, record=RECORDS, progress=False, backend="auto",
              init=None) -> TrainResult:
    """Train width-m ReLU networks by SGD on the DSM loss, every (lr, seed) pair in one fused call.

    theta <- theta - m * lr * grad (1/B) sum_b (s_theta(y_b) + (y_b - mu x_{i_b})/sigma^2)^2
    (see :mod:`bigstep.training.sgd1d` for the draws, the update and the divergence rule).

    Parameters
    ----------
    x : array (n,), 1-D training data (float64; finite, n >= 1)
    mu, sigma : positive scalars, the noise level
    lr : positive scalar or sequence;  seed : int >= 0 or sequence.  The networks are the
        Cartesian product, lr outer and seed inner: network k has lr[k // len(seed)] and
        seed[k % len(seed)].
    steps : int >= 0 (0: no training: the initial networks, one record at step 0);
        batch_size : int >= 1 (B)
    m : width (default 1000, or the width of ``init``)
    inner : "gaussian" (w1 ~ N(0, 1), Appendix E) or "sign" (w1 in {+1, -1}, theory setting)
    train_inner : train w1 too (default True for "gaussian", False for "sign")
    bias : initial b, scalar or array (m,) (as ReLUNet1D.init)
    clip : None or A > 0: clip w2 to [-A, A] after each step
    record_every : record every this many steps (default max(1, steps // 100)); records
        are taken at step 0, every record_every steps and at the end
    record : subset of ("loss", "risk", "excess_risk", "sharpness"); exact risk, excess
        risk and sharpness (wrt="all" if w1 is trained, else "outer_bias") of
        :mod:`bigstep.relu_risk` at each record step (sharpness is the expensive one)
    progress : show a progress bar;  backend : "auto", "cpp" or "numba"
    init : None, a ReLUNet1D, or a list of them (one per seed or one per network) to
        start from instead of ReLUNet1D.init.  Then ``bias`` must stay 0.0 and ``inner``
        only sets train_inner's default (ValueError if either would be ignored).

    Returns a :class:`TrainResult`.  Needs pandas (``pip install bigstep[repro]``).

    Example
    -------
    >>> import bigstep, numpy as np
    >>> x = np.array([-1.0, 0.0, 1.0])
    >>> res = bigstep.train_sgd(x, 0.95, 0.3, lr=[0.1, 0.01], seed=[0, 1], steps=200, m=32,
    ...                         record=("loss",))
    >>> len(res.networks), res.diverged.tolist()
    (4, [False, False, False, False])
    """
    pandas_module()
    o = _options(x, mu, sigma, lr, steps, m, inner, train_inner, bias, clip, seed, record_every, record, init,
                 backend)
    B = integer(batch_size, "batch_size", minimum=1)
    lrs, seeds, starts = o["lrs"], o["seeds"], o["starts"]
    R = len(starts)
    lr_of = np.repeat(np.asarray(lrs, dtype=np.float64), len(seeds))
    seed_of = np.tile(np.asarray(seeds, dtype=np.uint64), len(lrs))
    w1 = np.ascontiguousarray(np.stack([n.w1 for n in starts]), dtype=np.float64)
    w2 = np.ascontiguousarray(np.stack([n.w2 for n in starts]), dtype=np.float64)
    b = np.ascontiguousarray(np.stack([n.b for n in starts]), dtype=np.float64)
    diverged_step = np.full(R, -1, dtype=np.int64)
    loss_sum = np.zeros(R)
    loss_count = np.zeros(R, dtype=np.int64)
    kernel = _kernel(o["backend"])
    recorder = Recorder(o, lr_of, seed_of)
    nets = list(starts)

    def record_at(k: int) -> None:
        for r in range(R):
            if closed[r]:
                continue  # stopped earlier: its last row (diverged) is written
            d = int(diverged_step[r])
            nets[r] = ReLUNet1D(w1[r], w2[r], b[r])
            loss = loss_sum[r] / loss_count[r] if loss_count[r] else np.nan
            recorder.add(r, d if d >= 0 else k, nets[r], float(loss), d >= 0)
            closed[r] = d >= 0
        loss_sum[:] = 0.0
        loss_count[:] = 0

    marks = record_steps(o["steps"], o["record_every"])
    state = {"next": 1}
    closed = np.zeros(R, dtype=bool)
    record_at(0)

    def run(k0: int, k1: int) -> None:
        k = k0
        while k < k1:
            stop = min(k1, marks[state["next"]])
            kernel(o["x"], o["mu"], o["sigma"], lr_of, seed_of, w1, w2, b, B, o["train_inner"], o["clip"], k, stop,
                   diverged_step, loss_sum, loss_count)
            k = stop
            if k == marks[state["next"]]:
                record_at(k)
                state["next"] += 1

    bar = Progress(o["steps"], progress, label=f"train_sgd ({R} networks)")
    run_in_chunks(run, o["steps"], bar)
    return _finish(nets, lr_of, seed_of, diverged_step, recorder)


# ------------------------------------------------------------------------------ GD


def train_gd(x, mu, sigma, *, lr, steps, m=None, inner="gaussian", train_inner=None, bias=0.0, clip=None, seed=0,
             record_every=None, record=RECORDS, progress=False, backend="auto", init=None) -> TrainResult:
    """Gradient descent on the exact population DSM risk R_n (Appendix D), the update of
    :func:`train_sgd` with the exact gradient: theta <- theta - m * lr * grad R_n(theta).

    Same arguments (no batch_size) and result as :func:`train_sgd`; the history's
    ``loss`` is the mean exact risk R_n(theta_j) over the steps since the previous record.
    A step whose risk is not finite or above 1e16, or whose new parameters are not finite
    or above 1e8, is refused and the network stops (marked diverged).  Each step costs
    one :func:`bigstep.dsm_risk_grad` call, O(n m + m log m); networks run one after the other.

    Example
    -------
    >>> import bigstep, numpy as np
    >>> res = bigstep.train_gd(np.array([-1.0, 1.0]), 0.9, 0.5, lr=0.01, steps=20, m=16,
    ...                        record=("risk",), record_every=10)
    >>> res.history["step"].tolist()
    [0, 10, 20]
    """
    pandas_module()
    o = _options(x, mu, sigma, lr, steps, m, inner, train_inner, bias, clip, seed, record_every, record, init,
                 backend)
    lrs, seeds, starts = o["lrs"], o["seeds"], o["starts"]
    R, width = len(starts), starts[0].m
    lr_of = np.repeat(np.asarray(lrs, dtype=np.float64), len(seeds))
    seed_of = np.tile(np.asarray(seeds, dtype=np.uint64), len(lrs))
    wrt = "all" if o["train_inner"] else "outer_bias"
    nets = list(starts)
    diverged_step = np.full(R, -1, dtype=np.int64)
    loss_sum = np.zeros(R)
    loss_count = np.zeros(R, dtype=np.int64)
    recorder = Recorder(o, lr_of, seed_of)
    marks = record_steps(o["steps"], o["record_every"])
    state = {"next": 1}
    closed = np.zeros(R, dtype=bool)

    def record_at(k: int) -> None:
        for r in range(R):
            if closed[r]:
                continue
            d = int(diverged_step[r])
            loss = loss_sum[r] / loss_count[r] if loss_count[r] else np.nan
            recorder.add(r, d if d >= 0 else k, nets[r], float(loss), d >= 0)
            closed[r] = d >= 0
        loss_sum[:] = 0.0
        loss_count[:] = 0

    def step(r: int, j: int) -> None:
        net = nets[r]
        risk, g = dsm_risk_grad(net, o["x"], o["mu"], o["sigma"], wrt=wrt, backend=o["backend"])
        if not risk <= LOSS_LIMIT:
            diverged_step[r] = j
            return
        theta = net.theta(wrt) - width * lr_of[r] * g
        w2 = theta[width:2 * width] if wrt == "all" else theta[:width]
        if o["clip"] > 0:
            np.clip(w2, -o["clip"], o["clip"], out=w2)
        if not np.abs(theta).max() <= PARAM_LIMIT:
            diverged_step[r] = j
            return
        nets[r] = net.with_theta(theta, wrt)
        loss_sum[r] += risk
        loss_count[r] += 1

    def run(k0: int, k1: int) -> None:
        for j in range(k0, k1):
            for r in range(R):
                if diverged_step[r] < 0:
                    step(r, j)
            if j + 1 == marks[state["next"]]:
                record_at(j + 1)
                state["next"] += 1

    record_at(0)
    bar = Progress(o["steps"], progress, label=f"train_gd ({R} networks)")
    run_in_chunks(run, o["steps"], bar)
    return _finish(nets, lr_of, seed_of, diverged_step, recorder)
