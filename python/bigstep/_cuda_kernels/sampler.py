"""CUDA launchers of the fused reverse-diffusion sampler (csrc/cuda/sampler.cu): the names
and parameters of bigstep._backend.FAMILIES.

Every kernel runs steps k0 .. k1 - 1 of

    X_{k+1} = X_k + h_k (X_k + c s(X_k, tau_k)) + r_k Z_k

on the state x (n, d) float64, updated in place (a CUDA tensor, or any array: then it is
copied to the device and back), with Z_k[p, j] the normal at counter k n d + p d + j of
Philox stream (seed, 1), as the CPU kernels; path (n_steps + 1, n, d) gets row k + 1
after step k when ``keep``.  The step tables h, r, mu, sigma, tau (n_steps,) may be host
arrays.  s* of data in more than 3 dimensions runs per step: the d-D optimal-score
kernels, then the noise and update kernel.
"""

from __future__ import annotations

from . import _common as c
from .optimal_score import _nd

__all__ = ["sampler_empirical_1d", "sampler_empirical_nd", "sampler_gaussian", "sampler_relu"]


def _setup(x, k0, k1, h, r, mu, sigma, tau, keep, path, extra):
    torch = c._torch()
    device = c.device_of(x, path if keep else None, *extra)
    state = c.InPlace(x, device, torch.float64)
    if state.t.dim() != 2:
        raise ValueError(f"x must have shape (n, d), got {tuple(state.t.shape)}")
    tables = [c.tensor(v, device, torch.float64).reshape(-1) for v in (h, r, mu, sigma, tau)]
    n_steps = tables[0].shape[0]
    for name, t in zip(("r", "mu", "sigma", "tau"), tables[1:]):
        if t.shape[0] != n_steps:
            raise ValueError(f"{name} must have {n_steps} entries (one per step), got {t.shape[0]}")
    k0, k1 = int(k0), int(k1)
    if not 0 <= k0 <= k1 <= n_steps:
        raise ValueError(f"steps must satisfy 0 <= k0 <= k1 <= n_steps = {n_steps}, got k0 = {k0}, k1 = {k1}")
    n, d = state.t.shape
    out = None
    if keep:
        out = c.InPlace(path, device, torch.float64)
        if tuple(out.t.shape) != (n_steps + 1, n, d):
            raise ValueError(f"path must have shape (n_steps + 1, n, d) = ({n_steps + 1}, {n}, {d}), "
                             f"got {tuple(out.t.shape)}")
    return device, state, tables, n_steps, k0, k1, out


def _common_args(state, k0, k1, n_steps, tables, c_, seed, out):
    n, d = state.t.shape
    h, r, mu, sigma, tau = tables
    return (c.ptr(state.t), n, d, k0, k1, n_steps, c.ptr(h), c.ptr(r), c.ptr(mu), c.ptr(sigma), c.ptr(tau),
            float(c_), int(seed) & 0xFFFFFFFFFFFFFFFF, c.ptr(out.t) if out is not None else 0)


def _finish(state, out):
    state.done()
    if out is not None:
        out.done()


def _empirical(x, k0, k1, h, r, mu, sigma, tau, c_, seed, keep, path, data, one_d):
    torch = c._torch()
    device, state, tables, n_steps, k0, k1, out = _setup(x, k0, k1, h, r, mu, sigma, tau, keep, path, (data,))
    n, d = state.t.shape
    dt = c.tensor(data, device, torch.float64)
    dt = dt.reshape(-1, 1) if one_d else dt
    if dt.dim() != 2 or dt.shape[1] != d or dt.shape[0] == 0:
        raise ValueError(f"data must have shape (n_data, {d}) with n_data >= 1, got {tuple(dt.shape)}")
    if k1 > k0:
        with c.on(device):
            args = _common_args(state, k0, k1, n_steps, tables, c_, seed, out)
            if d <= c.module().SAMPLER_DIRECT_MAX_DIM:
                c.module().sampler_empirical(*args, c.ptr(dt), dt.shape[0], c.stream(device))
            else:  # s* in many dimensions: the d-D kernels per step, then noise and update
                mu_t, sig_t = tables[2], tables[3]
                for k in range(k0, k1):
                    s = _nd(state.t, dt, mu_t[k:k + 1], sig_t[k:k + 1], 1)[0]
                    c.module().sampler_update(*args, k, c.ptr(s), c.stream(device))
    _finish(state, out)


def sampler_empirical_1d(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data_sorted):
    """Steps k0 .. k1 - 1 with s* of 1-D data (sorted), state (n, 1)."""
    _empirical(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data_sorted, True)


def sampler_empirical_nd(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data):
    """Steps k0 .. k1 - 1 with s* of d-D data (n_data, d)."""
    _empirical(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, data, False)


def _scored(kind, x, k0, k1, h, r, mu, sigma, tau, c_, seed, keep, path, extra):
    torch = c._torch()
    device, state, tables, n_steps, k0, k1, out = _setup(x, k0, k1, h, r, mu, sigma, tau, keep, path, extra)
    n, d = state.t.shape
    arrays = [c.tensor(a, device, torch.float64) for a in extra]
    if kind == "gaussian":
        mean, vecs, lam = arrays
        if tuple(mean.shape) != (d,) or tuple(vecs.shape) != (d, d) or tuple(lam.shape) != (d,):
            raise ValueError(f"mean, vecs, lam must have shapes (d,), (d, d), (d,) with d = {d}")
    else:
        w1, b1, w2t, b2 = arrays
        width = w1.shape[0] if w1.dim() == 2 else 0
        if (width < 1 or tuple(w1.shape) != (width, d + 1) or tuple(b1.shape) != (width,)
                or tuple(w2t.shape) != (width, d) or tuple(b2.shape) != (d,)):
            raise ValueError(f"w1, b1, w2t, b2 must have shapes (m, d + 1), (m,), (m, d), (d,) with d = {d}")
    if k1 > k0:
        with c.on(device):
            args = _common_args(state, k0, k1, n_steps, tables, c_, seed, out)
            nbytes = c.module().sampler_workspace(n, d)
            ws = c.workspace(nbytes, device) if nbytes else None
            ptrs = [c.ptr(a) for a in arrays]
            if kind == "gaussian":
                c.module().sampler_gaussian(*args, *ptrs, c.ptr(ws), nbytes, c.stream(device))
            else:
                c.module().sampler_relu(*args, *ptrs, width, c.ptr(ws), nbytes, c.stream(device))
    _finish(state, out)


def sampler_gaussian(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, mean, vecs, lam):
    """Steps k0 .. k1 - 1 with the noised Gaussian score -U diag(1/(mu^2 lam + sigma^2)) U^T (x - mu m)."""
    _scored("gaussian", x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, (mean, vecs, lam))


def sampler_relu(x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, w1, b1, w2t, b2):
    """Steps k0 .. k1 - 1 with the time-conditional ReLU net s = -r_theta(t, x) / sigma(t)."""
    _scored("relu", x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, (w1, b1, w2t, b2))
