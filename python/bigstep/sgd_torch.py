"""d-dimensional trainers in PyTorch (CPU or CUDA): DSM at one noise level and the
time-conditional diffusion network of the paper's Appendix E (Figures 2 right, 3, 4).

Both train a two-layer ReLU network in the mean-field scaling of Appendix E, width m,
input dimension p, output dimension d, by SGD with the step m * lr (DESIGN.md
section 2):

    net(u) = (1/m) W2 relu(W1 u + b),   W1 (m, p) ~ N(0, 1/p),  W2 (d, m) ~ N(0, 1),  b = 0,
    theta <- theta - m * lr * grad_theta L_j(theta),   theta = (W1, b, W2), all trained.

- :func:`train_dsm`: p = d, s_theta(y) = net(y), and L_j is the batch mean of
  ||s_theta(Y_b) + (Y_b - mu x_{i_b}) / sigma^2||^2 (squared norm: the SUM over the d
  coordinates), Y_b = mu x_{i_b} + sigma Z_b: the DSM loss of the paper's eq. (5).
- :func:`train_diffusion`: p = d + 1, r_theta(t, x) = net([x; t]) (time LAST, the layout
  of :class:`bigstep.TimeReLUScore`, no output bias), and L_j is the MEAN over the batch
  and the d coordinates of (r_theta(t_b, mu(t_b) x_{i_b} + sigma(t_b) Z_b) - Z_b)^2, the
  times t_b drawn from linspace(delta, T, n_times) with probability proportional to
  sigma(t) (paper text) or 1/sigma(t) (authors' notebook).  The score is
  s_theta(x, t) = -r_theta(t, x) / sigma(t).

Batches: data indices uniform with replacement, fresh noise at every step.  ``lr`` and
``seed`` may be sequences: all len(lr) * len(seed) networks train together as one
batched model (torch.bmm over a leading network axis); network r = i_lr * len(seed) +
i_seed has learning rate lr[i_lr] and draws from seed[i_seed] (the convention of
:func:`bigstep.train_sgd`, the 1-D trainer).  relu'(0) is taken as 0.  Divergence (a
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

Randomness (Philox, DESIGN.md section 3), for a network drawing from seed s:
  init (stream 2):    W2 = gaussian_noise(s, (d, m), stream=2),
                      W1 = gaussian_noise(s, (m, p), stream=2, offset=d * m) / sqrt(p)
                      (for d = p = 1 this is ``ReLUNet1D.init(m, s, inner="gaussian")``);
  data index (3):     i[j, b] = min(floor(n * uniform(s, (steps, B), stream=3)[j, b]), n - 1);
  noise (4):          Z[j, b, :] = gaussian_noise(s, (steps, B, d), stream=4)[j, b, :];
  time index (6):     k[j, b] = #{k' : cdf[k'] <= uniform(s, (steps, B), stream=6)[j, b]}
                      (train_diffusion; cdf the cumulative time probabilities);
  Monte Carlo (7):    the excess-risk noise, see :func:`excess_risk_mc`;
  sharpness (14):     the fixed noise (and times) of :func:`sharpness_mc` and
                      :func:`diffusion_sharpness_mc`.
Networks sharing a seed (different learning rates) see the same draws.  The draws are
made on the CPU by bigstep's Philox kernel, one chunk of steps at a time, in float64,
and copied to the training device (and dtype): on CUDA the draws are the CPU's, so a
CUDA run differs from a CPU run only by floating-point rounding.  Generating them costs
(2 + d) B numbers per step and seed, small beside the step's O(B m p) work.

On the CPU, train_dsm and train_diffusion run by default in the fused compiled trainer
(:mod:`bigstep.sgd_nd`, same draws and update, no torch); ``backend="torch"`` or a CUDA
device takes the torch loop, which requires PyTorch (``pip install bigstep[torch]``).
The Monte Carlo excess risk and the fixed-sample sharpness are numpy.  Importing
bigstep does not import torch.
"""

from __future__ import annotations

import math
import numbers
import time

import numpy as np

from ._arrays import as_numpy
from ._progress import Progress, run_in_chunks
from ._validate import integer, integers, positives, real_scalar, training_data, two_layer_weights, uint64
from .random import gaussian_noise, uniform
from .sgd import LOSS_LIMIT, PARAM_LIMIT

__all__ = ["train_dsm", "train_diffusion", "excess_risk_mc", "sharpness_mc", "diffusion_sharpness_mc", "time_grid",
           "ReLUNetND", "TrainResult"]

_STREAM_INIT, _STREAM_INDEX, _STREAM_NOISE, _STREAM_TIME, _STREAM_MC, _STREAM_SHARP = 2, 3, 4, 6, 7, 14
_TIME_WEIGHTS = ("sigma", "inv_sigma", "uniform")
_RECORDS = ("loss", "excess_risk")
_BLOCK_ELEMS = 1 << 20  # CPU: hidden-layer elements per block of rows (a cache-sized block)
_MIN_BLOCK_ROWS = 256   # smaller blocks lose more to per-call overhead than they gain in cache
_MC_BLOCK_ELEMS = 1 << 20  # excess_risk_mc: numbers in one block of noisy inputs Y (rows * d)


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("bigstep's d-D trainers need PyTorch: pip install bigstep[torch]") from None
    return torch


# ------------------------------------------------------------------ argument checks


def _device(torch, device):
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string or a torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device; use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return dev


def _dtype(torch, dtype):
    names = {"float32": torch.float32, "float64": torch.float64}
    if isinstance(dtype, str) and dtype in names:
        return names[dtype]
    if dtype in (torch.float32, torch.float64):
        return dtype
    try:
        npd = np.dtype(dtype)
    except TypeError:
        npd = None
    if npd == np.float32:
        return torch.float32
    if npd == np.float64:
        return torch.float64
    raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")


def _record_every(value):
    if value is None:
        return None
    return integer(value, "record_every", minimum=1)


# ------------------------------------------------------------------ networks


def _init_params(seed: int, m: int, p: int, d: int):
    """(W1 (m, p), b (m,), W2 (d, m)) float64 from Philox stream 2 (module docstring)."""
    W2 = gaussian_noise(seed, (d, m), stream=_STREAM_INIT, offset=0)
    W1 = gaussian_noise(seed, (m, p), stream=_STREAM_INIT, offset=d * m) / math.sqrt(p)
    return W1, np.zeros(m), W2


class ReLUNetND:
    """Two-layer ReLU network R^d -> R^d in the mean-field scaling (float64, numpy):

        s(y) = (1/m) W2 relu(W1 y + b),   W1 (m, d),  b (m,),  W2 (d, m).

    The networks :func:`train_dsm` returns (``TrainResult.network(r)``).  Calling it on
    y of shape (N, d) (or (d,)) returns an array of the same shape.

    Example
    -------
    >>> import numpy as np
    >>> from bigstep.sgd_torch import ReLUNetND
    >>> net = ReLUNetND(np.eye(2), np.zeros(2), 2 * np.eye(2))
    >>> net(np.array([[1.0, -1.0]]))      # (1/2) * 2 * relu(y)
    array([[1., 0.]])
    """

    def __init__(self, W1, b, W2):
        w1, bb, w2, m, d = two_layer_weights(W1, b, W2)
        self.W1, self.b, self.W2 = w1, bb, w2
        self.width, self.dim = m, d

    def __call__(self, y):
        ya = np.asarray(as_numpy(y, "y"), dtype=np.float64)
        single = ya.ndim == 1
        y2 = ya.reshape(1, -1) if single else ya
        if y2.ndim != 2 or y2.shape[1] != self.dim:
            raise ValueError(f"y must have shape (N, {self.dim}) or ({self.dim},), got shape {ya.shape}")
        out = np.empty_like(y2)
        step = max(1, (1 << 22) // self.width)  # bounded temporaries: O(step * m)
        w1t, w2t = self.W1.T, self.W2.T / self.width
        for s in range(0, y2.shape[0], step):
            out[s:s + step] = np.maximum(y2[s:s + step] @ w1t + self.b, 0.0) @ w2t
        return out[0] if single else out

    def __repr__(self):
        return f"ReLUNetND(width={self.width}, dim={self.dim})"


# ------------------------------------------------------------------ Monte Carlo excess risk


def excess_risk_mc(net, x, mu, sigma, *, n_mc=5000, seed=0):
    """Monte Carlo excess DSM risk with its standard error (paper Appendix E, Figure 2):

        E(theta) = R_n(theta) - R_n(s*) = (1/n) sum_i E_{Y ~ N(mu x_i, sigma^2 I)} ||s_theta(Y) - s*(Y)||^2,

    estimated with K = ``n_mc`` draws per training point, Y_ik = mu x_i + sigma Z_ik,
    Z[i, k, :] = gaussian_noise(seed, (n, K, d), stream=7)[i, k, :] (the same draws for
    every network given the same seed: common random numbers), s* from
    :func:`bigstep.optimal_score`.  Returns ``(mean, se)``:
    mean = (1/n) sum_i e_i,  e_i = (1/K) sum_k ||s_theta(Y_ik) - s*(Y_ik)||^2,
    se = (1/n) sqrt(sum_i v_i / K), v_i the sample variance (ddof 1) over k
    (the estimator is stratified over the training points).

    Parameters
    ----------
    net : a :class:`ReLUNetND`, a :class:`bigstep.ReLUNet1D` (then d = 1), a tuple
        (W1 (m, d), b (m,), W2 (d, m)), or any callable f(y) -> array (N, d) for y (N, d).
    x : training data (n, d), or (n,) for d = 1.
    mu, sigma : the noise level, positive finite scalars.
    n_mc : K >= 2 draws per training point (the paper used 5,000).
    seed : int >= 0, the Philox seed of stream 7.

    In 1-D, :func:`bigstep.excess_risk` is exact; this estimator exists for d > 1.
    Cost: n K forward passes, O(n K m d).  Memory is bounded whatever n and K: the n K
    rows of Y are drawn, scored and reduced in blocks of about 2**20 numbers, each
    training point's mean and variance merged across blocks (Chan et al.'s pairwise
    update), so the result does not depend on the blocking beyond rounding.

    Example
    -------
    >>> import numpy as np, bigstep
    >>> from bigstep.sgd_torch import ReLUNetND
    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0]])
    >>> W1, b, W2 = np.eye(2), np.zeros(2), np.eye(2)
    >>> mean, se = bigstep.excess_risk_mc(ReLUNetND(W1, b, W2), x, 0.9, 0.5, n_mc=200)
    >>> bool(mean > 0 and 0 < se < mean)
    True
    """
    from .optimal_score import optimal_score

    xa = np.asarray(training_data(x), dtype=np.float64)
    one_d = xa.ndim == 1
    x2 = xa.reshape(-1, 1) if one_d else xa
    n, d = x2.shape
    mu = real_scalar(mu, "mu")
    sigma = real_scalar(sigma, "sigma")
    K = integer(n_mc, "n_mc", minimum=2)
    seed = uint64(seed, "seed")
    f = _as_callable(net, d)
    rows = max(1, _MC_BLOCK_ELEMS // d)
    count, mean, m2 = np.zeros(n), np.zeros(n), np.zeros(n)  # per training point: draws, mean, sum of sq. dev.
    for r0 in range(0, n * K, rows):                         # flat row r = i K + k, Z row at offset r d
        r1 = min(n * K, r0 + rows)
        point = np.arange(r0, r1) // K
        Y = mu * x2[point] + sigma * gaussian_noise(seed, (r1 - r0, d), stream=_STREAM_MC, offset=r0 * d)
        star = optimal_score(Y[:, 0] if one_d else Y, xa, mu, sigma).reshape(r1 - r0, d)
        s = np.asarray(as_numpy(f(Y), "net(y)"), dtype=np.float64)
        if s.shape != Y.shape:
            raise ValueError(f"net(y) must return shape {Y.shape} for y of shape {Y.shape}, got {s.shape}")
        _merge_moments(count, mean, m2, point, ((s - star) ** 2).sum(axis=1))
    mean_out = float(mean.mean())
    se = float(math.sqrt((m2 / (K - 1)).sum() / K) / n)
    return mean_out, se


def _merge_moments(count, mean, m2, point, e):
    """Fold the values e of the consecutive training points ``point`` (sorted) into the
    running per-point count, mean and sum of squared deviations (pairwise update)."""
    i0 = int(point[0])
    local = point - i0
    nb = np.bincount(local).astype(np.float64)
    mb = np.bincount(local, weights=e) / nb
    m2b = np.bincount(local, weights=(e - mb[local]) ** 2)
    sl = slice(i0, i0 + nb.shape[0])
    na = count[sl]
    tot = na + nb
    delta = mb - mean[sl]
    mean[sl] += delta * (nb / tot)
    m2[sl] += m2b + delta * delta * (na * nb / tot)
    count[sl] = tot


def _as_callable(net, d: int):
    from .relu_risk import ReLUNet1D

    if isinstance(net, ReLUNetND):
        if net.dim != d:
            raise ValueError(f"net has dimension {net.dim} but x has {d} columns")
        return net
    if isinstance(net, ReLUNet1D):
        if d != 1:
            raise ValueError(f"a ReLUNet1D needs 1-D data, got x with {d} columns")
        return lambda y: net(y[:, 0]).reshape(-1, 1)
    if isinstance(net, tuple) and len(net) == 3:
        return _as_callable(ReLUNetND(*net), d)
    if callable(net):
        return net
    raise TypeError("net must be a ReLUNetND, a ReLUNet1D, a tuple (W1, b, W2) or a callable, "
                    f"got {type(net).__name__}")


# ------------------------------------------------------------------ results


class TrainResult:
    """What :func:`train_dsm` and :func:`train_diffusion` return.

    Networks r = 0..R-1 (R = len(lr) * len(seed), r = i_lr * len(seed) + i_seed):

    - ``lr``, ``seed``, ``steps`` (planned), ``steps_done``: arrays (R,);
    - ``diverged`` (bool, R) and ``diverged_step`` (int, R; -1 if it trained to the end):
      the update of step j (0-based) was refused, the parameters are those after j updates;
    - ``W1`` (R, m, p), ``b`` (R, m), ``W2`` (R, d, m): float64 numpy, always finite;
    - ``history``: a pandas DataFrame sorted by network and step, one row per network and
      record step (columns network, lr, seed, step, loss [, excess_risk, excess_risk_se],
      diverged): records at step 0 (loss NaN) and every ``record_every`` steps when it is
      given, and always at the end; ``loss`` is the mean batch loss over the updates since
      the previous record; a diverged network's last row is at its diverged_step, with
      diverged=True and NaN values (as :func:`bigstep.train_sgd`, the 1-D trainer);
    - ``to_frame()``: one row per network with its last record;
    - ``network(r)``: a :class:`ReLUNetND` (train_dsm) or a :class:`bigstep.TimeReLUScore`
      (train_diffusion); ``networks`` (alias ``scores``): all of them; ``score``:
      ``network(0)`` when R == 1;
    - ``seconds``, ``steps_per_second`` (network-steps per second of wall time).
    """

    def __init__(self, kind, params, lr, seed, steps, steps_done, diverged_step, records, record_cols,
                 seconds, info):
        self.kind = kind
        self.W1, self.b, self.W2 = params
        self.lr, self.seed = lr, seed
        self.steps, self.steps_done = steps, steps_done
        self.diverged_step = diverged_step
        self.diverged = diverged_step >= 0
        self._records, self._record_cols = records, record_cols
        self.seconds = seconds
        self.steps_per_second = float(steps_done.sum() / seconds) if seconds > 0 else float("inf")
        self.info = info  # mu, sigma or the time grid, schedule, data

    @property
    def history(self):
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("the training history is a pandas DataFrame: pip install bigstep[repro] "
                              "(or pip install pandas)") from None
        cols = ["network", "lr", "seed", "step"] + list(self._record_cols) + ["diverged"]
        df = pd.DataFrame(self._records, columns=cols)
        df = df.astype({"network": np.int64, "lr": np.float64, "seed": np.uint64, "step": np.int64,
                        **{c: np.float64 for c in self._record_cols}, "diverged": bool})
        return df.sort_values(["network", "step"], kind="stable").reset_index(drop=True)

    def to_frame(self):
        """One row per network: network, lr, seed, diverged, diverged_step, steps_done and
        its last history record."""
        import pandas as pd

        out = pd.DataFrame({"network": np.arange(self.lr.shape[0]), "lr": self.lr, "seed": self.seed,
                            "diverged": self.diverged, "diverged_step": self.diverged_step,
                            "steps_done": self.steps_done})
        h = self.history
        if h.shape[0] == 0:
            return out
        last = h.groupby("network", sort=True).tail(1).set_index("network")
        return out.join(last[["step", *self._record_cols]], on="network")

    def network(self, r: int):
        r = integer(r, "r", minimum=0)
        if r >= self.lr.shape[0]:
            raise ValueError(f"r must be < {self.lr.shape[0]} (the number of networks), got {r}")
        if self.kind == "dsm":
            return ReLUNetND(self.W1[r], self.b[r], self.W2[r])
        from .scores import TimeReLUScore

        return TimeReLUScore(self.W1[r], self.b[r], self.W2[r], schedule=self.info["schedule"])

    @property
    def networks(self):
        """All networks, r = 0..R-1 (ReLUNetND or TimeReLUScore)."""
        return [self.network(r) for r in range(self.lr.shape[0])]

    scores = networks

    @property
    def score(self):
        if self.lr.shape[0] != 1:
            raise ValueError(f"score needs a single network, this result has {self.lr.shape[0]}; use network(r)")
        return self.network(0)

    def excess_risk(self, n_mc=5000, seed=0):
        """Monte Carlo excess risk of every network (train_dsm only): arrays (mean, se) of shape (R,)."""
        if self.kind != "dsm":
            raise ValueError("excess_risk is defined for train_dsm results (one noise level)")
        out = [excess_risk_mc(self.network(r), self.info["x"][self.info["data_of"][r]], self.info["mu"],
                              self.info["sigma"], n_mc=n_mc, seed=seed) for r in range(self.lr.shape[0])]
        return np.array([o[0] for o in out]), np.array([o[1] for o in out])

    def __repr__(self):
        return (f"TrainResult(kind={self.kind!r}, networks={self.lr.shape[0]}, width={self.W1.shape[1]}, "
                f"diverged={int(self.diverged.sum())})")


# ------------------------------------------------------------------ the batched step


def _loss_and_grads(torch, W1, b, W2, u, zc, norm):
    """Loss (R,) and its exact gradients for a batch, in closed form (the reference for tests).

    net(u) = (1/m) W2 relu(W1 u + b) with W1 (R, m, p), b (R, m), W2 (R, d, m), inputs u
    (R, B, p); F = net(u) + zc (zc (R, B, d)); loss = sum_{b, j} F^2 / norm.
    Returns (loss, dW1, db, dW2) with the shapes of the parameters."""
    m = W1.shape[1]
    H = torch.relu(torch.baddbmm(b.unsqueeze(1), u, W1.transpose(1, 2)))
    F = torch.bmm(H, W2.transpose(1, 2)) / m + zc
    loss = (F * F).sum((1, 2)) / norm
    G = F * (2.0 / norm)
    dW2 = torch.bmm(G.transpose(1, 2), H) / m
    A = torch.bmm(G, W2) * (H > 0) / m
    return loss, torch.bmm(A.transpose(1, 2), u), A.sum(1), dW2


class _Batch:
    """Parameters of the active networks on the device, in the layouts the step wants:
    W1t (Ra, p, m) (= W1 transposed), b (Ra, m), W2 (Ra, d, m), with double buffers so an
    update is written out of place and a refused update costs nothing to undo."""

    def __init__(self, torch, W1, b, W2, lr, norm, max_abs):
        self.torch = torch
        self.W1t, self.b, self.W2 = W1.transpose(1, 2).contiguous(), b.contiguous(), W2.contiguous()
        self.nW1t, self.nb, self.nW2 = (torch.empty_like(a) for a in (self.W1t, self.b, self.W2))
        self.m = self.W1t.shape[2]
        self.lr = lr
        self.scale = (lr * (2.0 / norm)).view(-1, 1, 1)  # G = lr * dL/dS: theta -= m lr grad in one go
        self.norm = norm
        self.max_abs = max_abs
        self.block_elems = _BLOCK_ELEMS if W1.device.type == "cpu" else 1 << 62
        self._bufs = None

    def _buffers(self, rows):
        if self._bufs is None or self._bufs[0].shape[1] != rows:
            t = self.torch
            R, m = self.W1t.shape[0], self.m
            kw = dict(dtype=self.W1t.dtype, device=self.W1t.device)
            self._bufs = (t.empty((R, rows, m), **kw), t.empty((R, rows, m), **kw))
        return self._bufs

    def step(self, u, zc):
        """One SGD step on inputs u (Ra, B, p) with F = net(u) + zc.  Returns the batch
        loss (Ra,) and a bool mask (Ra,) of networks whose update was accepted.

        The batch is processed in blocks of rows so that the (Ra, rows, m) hidden layer
        stays in cache (the step is memory-bound); gradients are summed over the blocks
        before the update, so the result is the full-batch step."""
        t = self.torch
        B = u.shape[1]
        rows = min(B, max(_MIN_BLOCK_ROWS, self.block_elems // (self.m * u.shape[0])))
        Hb, Ab = self._buffers(rows)
        relu_backward = t.ops.aten.threshold_backward.grad_input  # A <- A * (H > 0), one fused pass
        loss = None
        for s0 in range(0, B, rows):
            s1 = min(B, s0 + rows)
            k = s1 - s0
            H, A = Hb[:, :k], Ab[:, :k]
            ub = u[:, s0:s1]
            t.baddbmm(self.b.unsqueeze(1), ub, self.W1t, out=H)
            H.clamp_(min=0.0)
            F = t.bmm(H, self.W2.transpose(1, 2)).div_(self.m).add_(zc[:, s0:s1])   # (Ra, k, d)
            part = (F * F).sum((1, 2))
            loss = part if loss is None else loss.add_(part)
            G = F.mul_(self.scale)                                                   # lr * dL/dS
            t.bmm(G, self.W2, out=A)                                                 # m lr dL/dH
            relu_backward(A, H, 0.0, grad_input=A)
            if s0 == 0:
                t.baddbmm(self.W2, G.transpose(1, 2), H, alpha=-1.0, out=self.nW2)
                t.baddbmm(self.W1t, ub.transpose(1, 2), A, alpha=-1.0, out=self.nW1t)
                t.sub(self.b, A.sum(1), out=self.nb)
            else:
                self.nW2.baddbmm_(G.transpose(1, 2), H, alpha=-1.0)
                self.nW1t.baddbmm_(ub.transpose(1, 2), A, alpha=-1.0)
                self.nb.sub_(A.sum(1))
        loss.div_(self.norm)
        norm_inf = t.linalg.vector_norm                                              # max |.|, NaN propagates
        big = t.maximum(norm_inf(self.nW1t, float("inf"), (1, 2)), norm_inf(self.nW2, float("inf"), (1, 2)))
        big = t.maximum(big, norm_inf(self.nb, float("inf"), 1))
        ok = (loss <= LOSS_LIMIT) & (big <= self.max_abs)                            # NaN compares False
        if not bool(ok.all()):
            bad = ~ok
            self.nW1t[bad] = self.W1t[bad]
            self.nW2[bad] = self.W2[bad]
            self.nb[bad] = self.b[bad]
        self.W1t, self.nW1t = self.nW1t, self.W1t
        self.W2, self.nW2 = self.nW2, self.W2
        self.b, self.nb = self.nb, self.b
        return loss, ok

    def select(self, keep):
        """Keep only the networks at positions ``keep`` (a long tensor)."""
        self.W1t, self.b, self.W2 = self.W1t[keep].contiguous(), self.b[keep].contiguous(), self.W2[keep].contiguous()
        self.nW1t, self.nb, self.nW2 = (self.torch.empty_like(a) for a in (self.W1t, self.b, self.W2))
        self.lr = self.lr[keep]
        self.scale = self.scale[keep]
        self._bufs = None

    def params_numpy(self):
        """(W1 (Ra, m, p), b (Ra, m), W2 (Ra, d, m)) as float64 numpy copies."""
        f = lambda a: a.detach().to("cpu", self.torch.float64).numpy().copy()  # noqa: E731
        return np.ascontiguousarray(f(self.W1t).transpose(0, 2, 1)), f(self.b), f(self.W2)


# ------------------------------------------------------------------ the shared training loop


def _train(problem, *, lr, seeds, steps, batch_size, width, device, dtype, record_every, record, n_mc,
           progress, max_abs, label, num_threads):
    """Train len(lr) * len(seeds) networks of ``problem`` (torch threads set for the call)."""
    torch = _torch()
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _train_loop(torch, problem, lr=lr, seeds=seeds, steps=steps, batch_size=batch_size, width=width,
                           device=device, dtype=dtype, record_every=record_every, record=record, n_mc=n_mc,
                           progress=progress, max_abs=max_abs, label=label)
    finally:
        if num_threads is not None:
            torch.set_num_threads(before)


def _train_loop(torch, problem, *, lr, seeds, steps, batch_size, width, device, dtype, record_every, record, n_mc,
                progress, max_abs, label):
    """Train len(lr) * len(seeds) networks of ``problem`` (see _DSMProblem/_DiffusionProblem)."""
    n_lr, n_seed = lr.shape[0], len(seeds)
    R = n_lr * n_seed
    lr_r = np.repeat(lr, n_seed)
    seed_pos = np.tile(np.arange(n_seed), n_lr)          # position in the seed list
    seed_r = np.array([seeds[k] for k in seed_pos], dtype=np.uint64)
    steps_r = np.repeat(np.asarray(steps if len(steps) > 1 else steps * n_lr, dtype=np.int64), n_seed)
    m, p, d = width, problem.p, problem.d

    init = [_init_params(s, m, p, d) for s in seeds]
    W1 = torch.as_tensor(np.stack([init[k][0] for k in seed_pos]), dtype=dtype, device=device)
    b = torch.as_tensor(np.stack([init[k][1] for k in seed_pos]), dtype=dtype, device=device)
    W2 = torch.as_tensor(np.stack([init[k][2] for k in seed_pos]), dtype=dtype, device=device)
    final = [np.empty((R, m, p)), np.empty((R, m)), np.empty((R, d, m))]

    active = np.arange(R)
    batch = _Batch(torch, W1, b, W2, torch.as_tensor(lr_r, dtype=dtype, device=device), problem.norm(batch_size),
                   max_abs)
    diverged_step = np.full(R, -1, dtype=np.int64)
    steps_done = np.zeros(R, dtype=np.int64)
    loss_sum = torch.zeros(R, dtype=torch.float64, device=device)
    last_record = np.zeros(R, dtype=np.int64)
    records = []
    rec_cols = [c for c in _RECORDS if c in record]
    if "excess_risk" in rec_cols:
        rec_cols = [c for c in rec_cols if c != "excess_risk"] + ["excess_risk", "excess_risk_se"]
    problem.setup(torch, device, dtype)

    def write_back(positions):
        W1n, bn, W2n = batch.params_numpy()
        for k in positions:
            r = active[k]
            final[0][r], final[1][r], final[2][r] = W1n[k], bn[k], W2n[k]

    def record_rows(positions, step):
        values = {}
        if "excess_risk" in rec_cols:
            W1n, bn, W2n = batch.params_numpy()
            for k in positions:
                values[k] = problem.excess_risk((W1n[k], bn[k], W2n[k]), active[k], n_mc)
        losses = loss_sum.cpu().numpy()
        for k in positions:
            r = active[k]
            row = [int(r), float(lr_r[r]), int(seed_r[r]), int(step)]
            for c in rec_cols:
                if c == "loss":
                    row.append(float(losses[k] / (step - last_record[r])) if step > last_record[r] else float("nan"))
                elif c == "excess_risk":
                    row.extend(values[k])
            row.append(False)
            records.append(row)
            last_record[r] = step
        loss_sum[positions] = 0.0

    def leave(stop):
        """Write back the networks at positions ``stop`` and take them out of the batch."""
        nonlocal active, loss_sum
        write_back(stop)
        keep = np.setdiff1d(np.arange(active.shape[0]), np.array(stop, dtype=np.int64))
        batch.select(torch.as_tensor(keep, device=device))
        loss_sum = loss_sum[torch.as_tensor(keep, device=device)]
        active = active[keep]

    total = int(steps_r.max()) if R else 0
    bar = Progress(total, progress, label)
    t_start = time.perf_counter()
    if record_every and rec_cols:
        record_rows(list(range(R)), 0)
    idle = np.flatnonzero(steps_r == 0).tolist()  # steps = 0: no training, the initial weights
    if idle:
        if rec_cols and not record_every:
            record_rows(idle, 0)  # their end record
        leave(idle)

    def chunk(k0, k1):
        nonlocal loss_sum
        if active.shape[0] == 0:
            return
        live = np.unique(seed_pos[active])
        u_all, zc_all = problem.draws(live, [seeds[s] for s in live], k0, k1, batch_size)  # (C, S, B, .)
        where = np.empty(n_seed, dtype=np.int64)
        where[live] = np.arange(live.shape[0])

        def gather_rows():
            rows = where[seed_pos[active]]
            same = rows.shape[0] == live.shape[0] and bool((rows == np.arange(rows.shape[0])).all())
            return None if same else torch.as_tensor(rows, device=device)

        rows = gather_rows()
        for j in range(k0, k1):
            u, zc = u_all[j - k0], zc_all[j - k0]
            if rows is not None:  # several networks share a seed, or some left the batch
                u, zc = u[rows], zc[rows]
            loss, ok = batch.step(u, zc)
            loss_sum += loss.to(torch.float64)
            ok_np = ok.cpu().numpy()
            done = j + 1
            stop = []
            if not ok_np.all():
                bad = np.flatnonzero(~ok_np)
                for k in bad:
                    r = active[k]
                    diverged_step[r] = j
                    steps_done[r] = j
                    records.append([int(r), float(lr_r[r]), int(seed_r[r]), int(j)]
                                   + [float("nan")] * len(rec_cols) + [True])
                stop.extend(bad.tolist())
            due = ok_np & (steps_r[active] == done)                    # finished with this step
            if rec_cols and (due.any() or (record_every and done % record_every == 0)):
                rec = np.flatnonzero(ok_np if record_every and done % record_every == 0 else due)
                record_rows(rec.tolist(), done)
            finished = np.flatnonzero(due)
            steps_done[active[finished]] = done
            stop.extend(finished.tolist())
            if stop:
                leave(stop)
                if active.shape[0] == 0:
                    return
                rows = gather_rows()  # the chunk's draws stay valid for the networks left

    run_in_chunks(chunk, total, bar)
    seconds = time.perf_counter() - t_start
    params = tuple(final)
    return TrainResult(problem.kind, params, lr_r, seed_r, steps_r, steps_done, diverged_step, records, rec_cols,
                       seconds, problem.info())


def _index_draws(seed, k0, k1, batch_size, n):
    u = uniform(seed, (k1 - k0, batch_size), stream=_STREAM_INDEX, offset=k0 * batch_size)
    return np.minimum((u * n).astype(np.int64), n - 1)


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
        idx = np.stack([_index_draws(s, k0, k1, B, self.n) for s in seeds], axis=1)          # (C, S, B)
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
        idx = np.stack([_index_draws(s, k0, k1, B, self.n) for s in seeds], axis=1)          # (C, S, B)
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
    from . import _backend

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
        torch = _torch()
        dev = _device(torch, device)
        dt = _dtype(torch, dtype)
    else:
        dev, dt = "cpu", _numpy_dtype(dtype)
    record_every = _record_every(record_every)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {type(progress).__name__}")
    max_abs = real_scalar(max_abs, "max_abs")
    if num_threads is not None:
        integer(num_threads, "num_threads", minimum=1)
    return lr, seeds, steps, batch_size, width, dev, dt, record_every, max_abs, backend


def _run(problem, backend, **kw):
    """The torch loop, or the fused CPU kernel of ``backend`` (:mod:`bigstep.sgd_nd`);
    ``num_threads`` is then the kernel's thread count for the call (restored after)."""
    if backend == "torch":
        return _train(problem, **kw)
    from .sgd_nd import train_fused, using_threads

    kw.pop("device")
    with using_threads(backend, kw.pop("num_threads")):
        return train_fused(problem, backend=backend, result_cls=TrainResult, **kw)


def train_dsm(x, mu, sigma, *, lr, steps, batch_size=50, width=1000, seed=0, device="cpu", dtype="float64",
              record_every=None, record=("loss", "excess_risk"), n_mc=1000, progress=False, max_abs=PARAM_LIMIT,
              num_threads=None, coordinates="sum", backend="auto"):
    """SGD on the DSM loss at one noise level for two-layer ReLU nets R^d -> R^d (Figure 2 right).

        s_theta(y) = (1/m) W2 relu(W1 y + b),  W1 (m, d) ~ N(0, 1/d),  W2 (d, m) ~ N(0, 1),  b = 0,
        L_j(theta) = (1/B) sum_b ||s_theta(Y_b) + (Y_b - mu x_{i_b}) / sigma^2||^2,
                     Y_b = mu x_{i_b} + sigma Z_b   (squared norm: sum over the d coordinates),
        theta <- theta - m * lr * grad L_j(theta),   theta = (W1, b, W2).

    Parameters
    ----------
    x : training data (n, d) (or (n,) for d = 1), shared by every network; or (S, n, d)
        with S = len(seed): network r trains on x[i_seed] (one data set per simulation,
        as in Figure 2).
    mu, sigma : the noise level, positive finite scalars.
    lr : learning rate or sequence of them; seed : int >= 0 or sequence (module docstring).
    steps : number of SGD steps, an int >= 0 or one per learning rate (networks that
        finish early leave the batch; with 0 a network keeps its initial weights).
    batch_size : B, indices drawn with replacement.  width : m.
    device : "cpu" or "cuda".  dtype : "float64" (default) or "float32" (or torch dtypes).
    record_every : also record every this many steps (None: only at the end).
    record : subset of ("loss", "excess_risk"); the excess risk is the Monte Carlo
        estimate of :func:`excess_risk_mc` with ``n_mc`` draws per point and seed 0, with
        its standard error (n n_mc forward passes per network and record: not free).
    progress : progress bar on stderr.  Ctrl-C stops the call within about a second
        (KeyboardInterrupt, nothing returned).
    max_abs : a network whose batch loss is not finite or above 1e16, or whose update gives
        a parameter that is not finite or above ``max_abs`` in absolute value, is frozen
        before that update and marked diverged (diverged_step = the steps it made).
    num_threads : torch CPU threads for this call (restored afterwards); None leaves
        torch's setting alone.  On a machine shared with other busy processes, 1 thread
        can be ten times faster than 2 for small batches (the threads wait on each other).
    coordinates : "sum" (default, the paper's eq. (5): squared norm) or "mean" (the
        authors' notebook: mean over the d coordinates as well, so the gradient and the
        recorded loss are 1/d of the "sum" ones and a given lr takes d times smaller steps).

    Returns a :class:`TrainResult` (parameters W1 (R, m, d), b (R, m), W2 (R, d, m) as
    float64 numpy, history DataFrame, divergence flags; ``network(r)`` a ReLUNetND).

    Example
    -------
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
    if isinstance(record, str) or not all(r in _RECORDS for r in record):
        raise ValueError(f"record must be a tuple of names from {_RECORDS}, got {record!r}")
    n_mc = integer(n_mc, "n_mc", minimum=2)
    if coordinates not in ("sum", "mean"):
        raise ValueError(f"coordinates must be 'sum' or 'mean', got {coordinates!r}")
    problem = _DSMProblem(np.ascontiguousarray(data), mu, sigma, data_of_seed,
                          np.tile(np.arange(len(seeds)), lr.shape[0]), coordinates == "mean")
    return _run(problem, backend, lr=lr, seeds=seeds, steps=steps, batch_size=batch_size, width=width, device=dev,
                dtype=dt, record_every=record_every, record=tuple(record), n_mc=n_mc, progress=progress,
                max_abs=max_abs, label="train_dsm", num_threads=num_threads)


def time_grid(n_times=100, T=1.0, delta=0.01, time_weights="sigma", schedule="ou"):
    """The training times of :func:`train_diffusion` and their probabilities.

    Returns (t, p): t = linspace(delta, T, n_times), p proportional to sigma(t)
    ("sigma", the paper's text), 1/sigma(t) ("inv_sigma", the authors' notebook) or
    constant ("uniform"), summing to 1.

    Example
    -------
    >>> from bigstep.sgd_torch import time_grid
    >>> t, p = time_grid(3, T=1.0, delta=0.5)
    >>> t.tolist(), round(float(p.sum()), 12)
    ([0.5, 0.75, 1.0], 1.0)
    """
    from .scores import noise_schedule

    n_times = integer(n_times, "n_times", minimum=1)
    T = real_scalar(T, "T")
    delta = real_scalar(delta, "delta")
    if not delta <= T:
        raise ValueError(f"delta must be at most T = {T!r}, got delta = {delta!r}")
    if time_weights not in _TIME_WEIGHTS:
        raise ValueError(f"time_weights must be one of {_TIME_WEIGHTS}, got {time_weights!r}")
    t = np.linspace(delta, T, n_times)
    _, sig = noise_schedule(t, schedule)
    w = {"sigma": sig, "inv_sigma": 1.0 / sig, "uniform": np.ones_like(sig)}[time_weights]
    return t, w / w.sum()


def train_diffusion(x, *, lr, steps, batch_size=5000, width=1000, n_times=100, T=1.0, delta=0.01,
                    time_weights="sigma", schedule="ou", seed=0, device="cpu", dtype="float32",
                    record_every=None, progress=False, max_abs=PARAM_LIMIT, num_threads=None, backend="auto"):
    """SGD for the time-conditional network of Appendix E (Figures 3 and 4).

        r_theta(t, x) = (1/m) W2 relu(W1 [x; t] + b1),   W1 (m, d + 1) ~ N(0, 1/(d + 1)),
                        W2 (d, m) ~ N(0, 1),  b1 = 0  (no output bias: b2 = 0, not trained),
        L_j(theta) = (1/(B d)) sum_b ||r_theta(t_b, mu(t_b) x_{i_b} + sigma(t_b) Z_b) - Z_b||^2,
        theta <- theta - m * lr * grad L_j(theta),   theta = (W1, b1, W2),

    with t_b drawn from the grid linspace(delta, T, n_times) with probabilities
    proportional to sigma(t) (``time_weights="sigma"``, the paper's text; "inv_sigma" is
    the authors' notebook, "uniform" also offered) and the schedule of
    :func:`bigstep.noise_schedule` ("ou": mu = exp(-t), the paper's text; "notebook":
    mu = exp(-2t)).  The learned score is s_theta(x, t) = -r_theta(t, x) / sigma(t): the
    result's ``score`` is a :class:`bigstep.TimeReLUScore` (float64) for
    :func:`bigstep.sample_reverse`.

    Parameters
    ----------
    x : training data (n, d).  lr, seed, steps : as in :func:`train_dsm` (sequences train
        len(lr) * len(seed) networks together).  batch_size : B.  width : m.
    n_times, T, delta : the time grid; time_weights, schedule : see above.
    device : "cpu" or "cuda".  dtype : "float32" (default) or "float64".
    record_every : record the mean batch loss every this many steps (and at the end).
    progress, max_abs, num_threads : as in :func:`train_dsm`.

    Returns a :class:`TrainResult` with ``.score`` (one network) or ``.scores``.

    Example
    -------
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
    times, probs = time_grid(n_times, T, delta, time_weights, schedule)
    from .scores import noise_schedule

    mus, sigmas = noise_schedule(times, schedule)
    problem = _DiffusionProblem(np.ascontiguousarray(xa), times, probs, mus, sigmas, schedule, time_weights)
    return _run(problem, backend, lr=lr, seeds=seeds, steps=steps, batch_size=batch_size, width=width, device=dev,
                dtype=dt, record_every=record_every, record=("loss",), n_mc=2, progress=progress,
                max_abs=max_abs, label="train_diffusion", num_threads=num_threads)




# ------------------------------------------------------------------ sharpness (Figure 5)


def _sharpness_args(n_mc, seed, tol, max_iter, num_threads):
    K = integer(n_mc, "n_mc", minimum=1)
    seed = uint64(seed, "seed")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (0 < float(tol) < 1):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    if max_iter is not None:
        max_iter = integer(max_iter, "max_iter", minimum=1)
    if num_threads is not None:
        integer(num_threads, "num_threads", minimum=1)
    return K, seed, float(tol), max_iter


def _fixed_sample_sharpness(W1, b, W2, u, zc, norm, tol, max_iter, out_bias=None):
    """lambda_max of the Hessian wrt theta = (W1, b, W2) (flattened in that order) of
    L(theta) = sum ||(1/m) W2 relu(W1 u + b) [+ out_bias] + zc||^2 / norm over the rows of
    u (N, p), zc (N, d): Lanczos on exact closed-form Hessian-vector products in numpy,
    float64 (:mod:`bigstep._fixed_sample`; no torch needed)."""
    from ._fixed_sample import sharpness

    return sharpness(W1, b, W2, u, zc if out_bias is None else zc + out_bias, norm, tol=tol, max_iter=max_iter)


def _dsm_params(net, d):
    from .relu_risk import ReLUNet1D

    if isinstance(net, tuple) and len(net) == 3:
        net = ReLUNetND(*net)
    if isinstance(net, ReLUNetND):
        if net.dim != d:
            raise ValueError(f"net has dimension {net.dim} but x has {d} columns")
        return net.W1, net.b, net.W2
    if isinstance(net, ReLUNet1D):
        if d != 1:
            raise ValueError(f"a ReLUNet1D needs 1-D data, got x with {d} columns")
        w1, w2, b = (np.asarray(a, dtype=np.float64) for a in (net.w1, net.w2, net.b))
        return w1.reshape(-1, 1), b, w2.reshape(1, -1)
    raise TypeError("net must be a ReLUNetND, a ReLUNet1D or a tuple (W1, b, W2), "
                    f"got {type(net).__name__}")


def sharpness_mc(net, x, mu, sigma, *, n_mc=100, seed=0, coordinates="sum", tol=1e-10, max_iter=None,
                 num_threads=None):
    """Sharpness of a DSM network in d dimensions: lambda_max of the Hessian, with respect
    to all parameters theta = (W1, b, W2), of a FIXED-SAMPLE Monte Carlo estimate of the
    DSM risk (paper Figure 5 middle):

        R_K(theta) = (1/(n K c)) sum_i sum_k ||s_theta(Y_ik) + Z_ik / sigma||^2,
        Y_ik = mu x_i + sigma Z_ik,   Z[i, k, :] = gaussian_noise(seed, (n, K, d), stream=14)[i, k, :],

    c = 1 (``coordinates="sum"``, the paper's eq. (5)) or c = d (``"mean"``, the loss
    :func:`train_dsm` trains with ``coordinates="mean"``).  The draws are fixed (common
    random numbers: the same Z for every network given the same seed), so R_K is one
    deterministic function of theta and its Hessian is computed exactly: Lanczos
    (:mod:`bigstep._lanczos`, full reorthogonalisation, stops at relative residual
    ``tol``) on exact closed-form Hessian-vector products (numpy, no torch), never forming
    the Hessian.  The authors' notebook did the same on a fixed noise
    sample, by power iteration.

    This is the Hessian of an estimate, not of R_n: relu'' = 0 almost everywhere, so
    the Dirac terms of the exact Hessian (the kinks moving through the Gaussian mass,
    see :mod:`bigstep.relu_risk`) have no counterpart in R_K; as K grows, R_K's Hessian
    tends to the exact Hessian of R_n WITHOUT those terms.  In d = 1 (tests/test_sgd_torch.py)
    a width-20 net agrees with :func:`bigstep.sharpness` (``wrt="all"``) within 1.5% at
    K = 2000 (the Dirac term is 0.1% of lambda_max there), but for a width-200 net at
    initialisation the Dirac term is large: lambda_max 0.033 exact, 0.0195 without it,
    and R_K gives 0.0195.  At small K the top eigenvalue of the sample Hessian is also
    biased upward by a few per cent (K = 100 vs 1600 on a Figure 5 diffusion net: +3%).

    Linear stability: the trainers update theta <- theta - m lr grad L, so GD on L is
    stable at a minimum only if lambda_max(Hess L) <= 2 / (m lr) (paper eq. (8)), with L
    the loss actually trained.  With ``coordinates="mean"`` that loss is 1/d of the summed
    one, and so is this sharpness: compare ``coordinates="mean"`` with 2 / (m lr) for
    networks trained with ``coordinates="mean"`` (equivalently the "sum" sharpness with
    2 d / (m lr)).

    Parameters
    ----------
    net : a :class:`ReLUNetND` (e.g. ``TrainResult.network(r)``), a
        :class:`bigstep.ReLUNet1D` (d = 1) or a tuple (W1 (m, d), b (m,), W2 (d, m)).
    x : training data (n, d), or (n,) for d = 1.  mu, sigma : positive finite scalars.
    n_mc : K >= 1 noise draws per training point.  seed : Philox seed of stream 14.
    coordinates : "sum" or "mean" (above).  tol, max_iter : Lanczos stopping rule
        (max_iter None: min(number of parameters, 600)).
    num_threads : accepted for compatibility (the products are numpy matrix products).

    Cost: each product is O(n K m d); Lanczos needs tens to a few hundred of them.

    Example
    -------
    >>> import numpy as np, bigstep
    >>> from bigstep.sgd_torch import ReLUNetND, sharpness_mc
    >>> net = ReLUNetND(np.eye(2), np.zeros(2), np.eye(2))
    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0]])
    >>> s = sharpness_mc(net, x, 0.9, 0.5, n_mc=50)
    >>> bool(np.isclose(sharpness_mc(net, x, 0.9, 0.5, n_mc=50, coordinates="mean"), s / 2))
    True
    """
    xa = np.asarray(training_data(x), dtype=np.float64)
    x2 = xa.reshape(-1, 1) if xa.ndim == 1 else xa
    n, d = x2.shape
    mu = real_scalar(mu, "mu")
    sigma = real_scalar(sigma, "sigma")
    K, seed, tol, max_iter = _sharpness_args(n_mc, seed, tol, max_iter, num_threads)
    if coordinates not in ("sum", "mean"):
        raise ValueError(f"coordinates must be 'sum' or 'mean', got {coordinates!r}")
    W1, b, W2 = _dsm_params(net, d)
    z = gaussian_noise(seed, (n, K, d), stream=_STREAM_SHARP).reshape(n * K, d)
    u = np.repeat(mu * x2, K, axis=0) + sigma * z
    norm = float(n * K * (d if coordinates == "mean" else 1))
    return _fixed_sample_sharpness(W1, b, W2, u, z / sigma, norm, tol, max_iter)


def diffusion_sharpness_mc(score, x, *, n_mc=100, seed=0, n_times=None, T=None, delta=None, time_weights=None,
                           schedule=None, tol=1e-10, max_iter=None, num_threads=None):
    """Sharpness of the time-conditional diffusion network (paper Figure 5 right):
    lambda_max of the Hessian, with respect to theta = (W1, b1, W2), of a FIXED-SAMPLE
    estimate of the loss :func:`train_diffusion` trains,

        L_K(theta) = (1/(n K d)) sum_i sum_k ||r_theta(t_ik, mu(t_ik) x_i + sigma(t_ik) Z_ik) - Z_ik||^2,

    with, from Philox stream 14 of ``seed``, Z[i, k, :] = gaussian_noise(seed, (n, K, d),
    stream=14)[i, k, :] and the time t_ik = times[#{k' : cdf[k'] <= U_ik}] (the inverse-cdf
    rule of the trainer), U = uniform(seed, (n, K), stream=14, offset=n K d), on the
    trainer's grid and probabilities (:func:`time_grid`).  Computed as in
    :func:`sharpness_mc`: Lanczos on exact Hessian-vector products of this deterministic
    function of theta (the Hessian of an estimate: relu'' = 0 drops the kinks' Dirac
    terms of the expected loss).  L_K is the loss trained with theta <- theta - m lr grad L
    (mean over the batch and the d coordinates), so the linear-stability bound is
    directly lambda_max <= 2 / (m lr).

    Parameters
    ----------
    score : a :class:`bigstep.TimeReLUScore` (its b2, if any, enters as a constant), a
        one-network :class:`TrainResult` of :func:`train_diffusion` (its time grid and
        schedule are then the defaults), or a tuple (W1 (m, d + 1), b1 (m,), W2 (d, m)).
    x : training data (n, d).  n_mc : K >= 1 draws per training point.  seed : >= 0.
    n_times, T, delta, time_weights, schedule : the time grid (None: the result's, else
        train_diffusion's defaults 100, 1.0, 0.01, "sigma", and the score's schedule).
    tol, max_iter, num_threads : as in :func:`sharpness_mc`.

    Example
    -------
    >>> import numpy as np, bigstep
    >>> from bigstep.sgd_torch import diffusion_sharpness_mc
    >>> x = 2 * bigstep.gaussian_noise(0, (10, 2))
    >>> res = bigstep.train_diffusion(x, lr=0.5, steps=20, batch_size=64, width=16)
    >>> bool(diffusion_sharpness_mc(res, x, n_mc=20) > 0)
    True
    """
    from .scores import TimeReLUScore, noise_schedule

    xa = np.asarray(training_data(x, ndim=2), dtype=np.float64)
    n, d = xa.shape
    K, seed, tol, max_iter = _sharpness_args(n_mc, seed, tol, max_iter, num_threads)
    grid = dict(n_times=100, T=1.0, delta=0.01, time_weights="sigma", schedule="ou")
    b2 = None
    if isinstance(score, TrainResult):
        if score.kind != "diffusion":
            raise ValueError("score must come from train_diffusion, got a train_dsm result")
        info = score.info
        t_ = info["times"]
        grid.update(n_times=t_.shape[0], T=float(t_[-1]), delta=float(t_[0]), time_weights=info["time_weights"],
                    schedule=info["schedule"])
        probs_given = info["probs"]
        score = score.score
    else:
        probs_given = None
    if isinstance(score, tuple) and len(score) == 3:
        score = TimeReLUScore(*score, schedule=grid["schedule"] if schedule is None else schedule)
    if not isinstance(score, TimeReLUScore):
        raise TypeError("score must be a TimeReLUScore, a train_diffusion TrainResult or a tuple (W1, b1, W2), "
                        f"got {type(score).__name__}")
    if score.dim != d:
        raise ValueError(f"score has dimension {score.dim} but x has {d} columns")
    if probs_given is None:
        grid["schedule"] = score.schedule
    for name, v in (("n_times", n_times), ("T", T), ("delta", delta), ("time_weights", time_weights),
                    ("schedule", schedule)):
        if v is not None:
            grid[name] = v
            probs_given = None
    times, probs = time_grid(grid["n_times"], grid["T"], grid["delta"], grid["time_weights"], grid["schedule"])
    if probs_given is not None:
        probs = probs_given
    mus, sigmas = noise_schedule(times, grid["schedule"])
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    z = gaussian_noise(seed, (n, K, d), stream=_STREAM_SHARP).reshape(n * K, d)
    uu = uniform(seed, (n, K), stream=_STREAM_SHARP, offset=n * K * d).reshape(n * K)
    kt = np.minimum(np.searchsorted(cdf, uu, side="right"), times.shape[0] - 1)
    u = np.empty((n * K, d + 1))
    u[:, :d] = mus[kt][:, None] * np.repeat(xa, K, axis=0) + sigmas[kt][:, None] * z
    u[:, d] = times[kt]
    b2 = np.asarray(score.b2, dtype=np.float64)
    return _fixed_sample_sharpness(score.W1, score.b1, score.W2, u, -z, float(n * K * d), tol, max_iter,
                                   out_bias=b2 if np.any(b2) else None)
