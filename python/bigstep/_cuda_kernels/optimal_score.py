"""CUDA launchers of the optimal-score family (csrc/cuda/optimal_score_1d.cu,
csrc/cuda/optimal_score_nd.cu, csrc/cuda/optimal_score_vjp.cu): the names and parameters
of bigstep._backend.FAMILIES, torch CUDA tensors in and out.

``what`` is the bit mask of bigstep.optimal_score (1 score, 2 log-density, 4 posterior
mean, 8 the 1-D derivatives); the results come back as a tuple with None for what was not
asked: (score, log_density, mean, d1, d2) in 1-D, (score, log_density, mean) in d-D.
"""

from __future__ import annotations

from . import _common as c

__all__ = ["optimal_score_1d", "optimal_score_nd", "optimal_score_vjp_y", "optimal_score_vjp_x", "exp_ceiling",
           "nd_plan"]

_SCORE, _LOGP, _MEAN, _DERIV = 1, 2, 4, 8


def _levels(v, q, device, dtype, name):
    t = c.tensor(v, device, dtype).reshape(-1)
    if t.shape[0] not in (1, q):
        raise ValueError(f"{name} must have 1 or {q} entries (one per query), got {t.shape[0]}")
    return t, (0 if t.shape[0] == 1 else 1)


def _inputs(y, x, mu, sigma, ndim):
    device = c.device_of(y, x, mu, sigma)
    dtype = c.float_dtype(y, x)
    yt = c.tensor(y, device, dtype)
    xt = c.tensor(x, device, dtype)
    if xt.dim() != ndim or yt.dim() != ndim:
        raise ValueError(f"y and x must have {ndim} dimension(s), got y {tuple(yt.shape)} and x {tuple(xt.shape)}")
    if xt.shape[0] == 0:
        raise ValueError("x must not be empty")
    if ndim == 2 and yt.shape[1] != xt.shape[1]:
        raise ValueError(f"y must have {xt.shape[1]} columns like x, got {yt.shape[1]}")
    q = yt.shape[0]
    mut, mu_stride = _levels(mu, q, device, dtype, "mu")
    sigt, sigma_stride = _levels(sigma, q, device, dtype, "sigma")
    return device, dtype, yt, xt, mut, mu_stride, sigt, sigma_stride


def optimal_score_1d(y, x_sorted, mu, sigma, what):
    """1-D s* family on sorted data: (score, log_density, mean, d1, d2), each (q,) or None."""
    torch = c._torch()
    device, dtype, yt, xt, mut, mu_stride, sigt, sigma_stride = _inputs(y, x_sorted, mu, sigma, 1)
    q, n = yt.shape[0], xt.shape[0]
    new = lambda: torch.empty(q, dtype=dtype, device=device)  # noqa: E731
    deriv = bool(what & _DERIV)
    score = new() if what & (_SCORE | _DERIV) else None
    logp = new() if what & _LOGP else None
    mean = new() if what & _MEAN else None
    d1 = new() if deriv else None
    d2 = new() if deriv else None
    if q:
        with c.on(device):
            # queries in order of y / mu (NaN last): neighbours in a block share data windows
            order = torch.argsort(yt / mut, stable=True)
            c.module().optimal_score_1d(c.dtype_name(yt), c.ptr(yt), q, c.ptr(order), c.ptr(xt), n, c.ptr(mut),
                                        mu_stride, c.ptr(sigt), sigma_stride, c.ptr(score), c.ptr(logp),
                                        c.ptr(mean), c.ptr(d1), c.ptr(d2), c.stream(device))
    return c.returned((score, logp, mean, d1, d2), c.any_tensor(y, x_sorted))


def nd_plan(q, n, d, path=0, q_chunk=0, n_chunk=0):
    """(path, q_chunk, n_chunk, workspace bytes) of a d-D call (path 1: flash kernel, 2:
    blocked matrix products); run it with the launch's device current."""
    return tuple(c.module().optimal_score_nd_plan(q, n, d, path, q_chunk, n_chunk))


def _nd(y, x, mu, sigma, what, path=0, q_chunk=0, n_chunk=0):
    torch = c._torch()
    device, dtype, yt, xt, mut, mu_stride, sigt, sigma_stride = _inputs(y, x, mu, sigma, 2)
    q, n, d = yt.shape[0], xt.shape[0], xt.shape[1]
    if d == 0:
        raise ValueError("x must have at least one column")
    score = torch.empty((q, d), dtype=dtype, device=device) if what & _SCORE else None
    logp = torch.empty(q, dtype=dtype, device=device) if what & _LOGP else None
    mean = torch.empty((q, d), dtype=dtype, device=device) if what & _MEAN else None
    if q:
        with c.on(device):
            p, qc, nc, nbytes = nd_plan(q, n, d, path, q_chunk, n_chunk)
            ws = c.workspace(nbytes, device) if nbytes else None
            c.module().optimal_score_nd(c.dtype_name(yt), c.ptr(yt), q, c.ptr(xt), n, d, c.ptr(mut), mu_stride,
                                        c.ptr(sigt), sigma_stride, c.ptr(score), c.ptr(logp), c.ptr(mean), p, qc,
                                        nc, c.ptr(ws), nbytes, c.stream(device))
    return c.returned((score, logp, mean), c.any_tensor(y, x))


def optimal_score_nd(y, x, mu, sigma, what):
    """d-D s* family: (score (q, d), log_density (q,), mean (q, d)), None where not asked.
    d <= 256: the flash kernel (when the queries fill the device); else blocked matrix
    products on the float64 tensor cores with the small-sigma guard."""
    return _nd(y, x, mu, sigma, what)


def _vjp_inputs(y, x, mu, sigma, lse, rows, cols):
    """float64 device tensors of the backward pass, shapes checked: rows [q, d], cols [q]."""
    torch = c._torch()
    device = c.device_of(y, x, mu, sigma, lse, *rows, *cols)
    f64 = torch.float64
    yt, xt = c.tensor(y, device, f64), c.tensor(x, device, f64)
    if yt.dim() != 2 or xt.dim() != 2 or yt.shape[1] != xt.shape[1] or xt.shape[0] == 0:
        raise ValueError(f"y (q, d) and x (n >= 1, d) must share d, got y {tuple(yt.shape)} and x {tuple(xt.shape)}")
    q, d = yt.shape
    mut, mu_stride = _levels(mu, q, device, f64, "mu")
    sigt, sigma_stride = _levels(sigma, q, device, f64, "sigma")
    lset = c.tensor(lse, device, f64).reshape(-1)
    out_rows = [c.tensor(a, device, f64) for a in rows]
    out_cols = [c.tensor(a, device, f64).reshape(-1) for a in cols]
    for t in [lset] + out_cols:
        if t.shape[0] != q:
            raise ValueError(f"per-query arrays must have {q} entries, got {t.shape[0]}")
    for t in out_rows:
        if tuple(t.shape) != (q, d):
            raise ValueError(f"per-query rows must have shape ({q}, {d}), got {tuple(t.shape)}")
    return device, yt, xt, mut, mu_stride, sigt, sigma_stride, lset, out_rows, out_cols


def optimal_score_vjp_y(y, x, mu, sigma, lse, mean, g):
    """Backward pass, float64: out_q = sum_i w_qi (g_q . (x_i - m_q)) (x_i - m_q) = Cov(W|y_q) g_q,
    m the forward pass's posterior mean; (q, d) on the inputs' device."""
    torch = c._torch()
    device, yt, xt, mut, ms, sigt, ss, lset, (mt, gt), _ = _vjp_inputs(y, x, mu, sigma, lse, (mean, g), ())
    q, n, d = yt.shape[0], xt.shape[0], xt.shape[1]
    out = torch.empty((q, d), dtype=torch.float64, device=device)
    if q:
        with c.on(device):
            c.module().optimal_score_vjp_y(c.ptr(yt), q, c.ptr(xt), n, d, c.ptr(mut), ms, c.ptr(sigt), ss,
                                           c.ptr(lset), c.ptr(mt), c.ptr(gt), c.ptr(out), c.stream(device))
    return c.returned(out, c.any_tensor(y, x))


def optimal_score_vjp_x(y, x, mu, sigma, lse, a, b, u, e, f):
    """Backward pass, float64: out_j = sum_q w_qj (a_q + t u_q + (e_q + f_q t) x_j), t = b_q . x_j;
    (n, d) on the inputs' device."""
    torch = c._torch()
    device, yt, xt, mut, ms, sigt, ss, lset, (at, bt, ut), (et, ft) = _vjp_inputs(y, x, mu, sigma, lse, (a, b, u),
                                                                                  (e, f))
    q, n, d = yt.shape[0], xt.shape[0], xt.shape[1]
    out = torch.zeros((n, d), dtype=torch.float64, device=device)
    if q:
        with c.on(device):
            c.module().optimal_score_vjp_x(c.ptr(yt), q, c.ptr(xt), n, d, c.ptr(mut), ms, c.ptr(sigt), ss,
                                           c.ptr(lset), c.ptr(at), c.ptr(bt), c.ptr(ut), c.ptr(et), c.ptr(ft),
                                           c.ptr(out), c.stream(device))
    return c.returned(out, c.any_tensor(y, x))


def exp_ceiling(threads, iters, dtype, device=None):
    """The exp-throughput ceiling kernel: returns its per-thread sums (threads,) on
    ``device``; threads * iters evaluations of exp_nonpos."""
    torch = c._torch()
    device = c.default_device() if device is None else torch.device(device)
    out = torch.empty(threads, dtype=dtype, device=device)
    with c.on(device):
        c.module().exp_ceiling(c.dtype_name(out), threads, iters, c.ptr(out), c.stream(device))
    return out
