"""Independent references for the tests: nothing here imports bigstep.

- mpmath at 50 significant digits (``MP_DPS``): the exact values, rounded once to
  float64, of s*, log p, E[W|y], s*', s*'' (and the cumulants the tolerances need) for
  1-D data, and of s*, log p, E[W|y] for small d-D cases.  The formulas are the direct
  ones of docs/design.md section 2 (paper eq. 6 and 9), not the kernels' shifted forms:
      l_i = -||y - mu x_i||^2 / (2 sigma^2),  w_i = exp(l_i - max l) / sum,
      s* = (mu E[W] - y) / sigma^2,
      s*' = (1/sigma^2) (-1 + (mu^2/sigma^2) Var W),   s*'' = mu^3/sigma^6 E[(W - EW)^3],
      log p = log((1/n) sum_i N(y; mu x_i, sigma^2 I)).
  The inputs are converted exactly (mpf of a float is exact), so the reference is the
  exact value at the floats the caller passes: for float32 tests pass the
  float32-rounded inputs.
- O(q n) numpy versions (the q x n logit matrix, direct form, float64), for
  cross-checks at moderate sigma and for the condition numbers the tolerances use.
- Closed forms that hold exactly: one data point, two symmetric points +-v.
- Central finite differences.
- A pure-Python Philox4x32-10 and bigstep's stream layout (docs/design.md section 3).
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np

MP_DPS = 50


# --------------------------------------------------------------------------- mpmath


def _mpf_tuple(a) -> tuple:
    return tuple(float(v) for v in np.asarray(a, dtype=np.float64).ravel())


@functools.lru_cache(maxsize=256)
def _mp_1d_cached(y: tuple, x: tuple, mu: float, sigma: float) -> dict:
    with mpmath.workdps(MP_DPS):
        mp = mpmath.mpf
        xs = [mp(v) for v in x]
        n = len(xs)
        mu_, s_ = mp(mu), mp(sigma)
        s2 = s_ * s_
        log_norm = mpmath.log(n) + mpmath.log(s_) + mpmath.log(2 * mpmath.pi) / 2
        out = {k: [] for k in ("score", "log_density", "mean", "d1", "d2", "d3", "d4", "var", "abs3", "m4")}
        for yv in y:
            if math.isnan(yv):
                for k in out:
                    out[k].append(math.nan)
                continue
            y_ = mp(yv)
            logits = [-((y_ - mu_ * xi) ** 2) / (2 * s2) for xi in xs]
            lmax = max(logits)
            p = [mpmath.exp(li - lmax) for li in logits]
            s0 = mpmath.fsum(p)
            m = mpmath.fsum(pi * xi for pi, xi in zip(p, xs)) / s0
            c = [xi - m for xi in xs]
            c2 = mpmath.fsum(pi * ci**2 for pi, ci in zip(p, c)) / s0
            c3 = mpmath.fsum(pi * ci**3 for pi, ci in zip(p, c)) / s0
            c4 = mpmath.fsum(pi * ci**4 for pi, ci in zip(p, c)) / s0
            c5 = mpmath.fsum(pi * ci**5 for pi, ci in zip(p, c)) / s0
            a3 = mpmath.fsum(pi * abs(ci) ** 3 for pi, ci in zip(p, c)) / s0
            out["score"].append(float((mu_ * m - y_) / s2))
            out["log_density"].append(float(lmax + mpmath.log(s0) - log_norm))
            out["mean"].append(float(m))
            out["d1"].append(float((-1 + mu_**2 * c2 / s2) / s2))
            out["d2"].append(float(mu_**3 * c3 / s2**3))
            out["d3"].append(float(mu_**4 * (c4 - 3 * c2**2) / s2**4))  # s*''' = mu^4 kappa_4 / sigma^8
            out["d4"].append(float(mu_**5 * (c5 - 10 * c3 * c2) / s2**5))  # mu^5 kappa_5 / sigma^10
            out["var"].append(float(c2))
            out["abs3"].append(float(a3))
            out["m4"].append(float(c4))
    return {k: np.array(v) for k, v in out.items()}


def mp_1d(y, x, mu, sigma) -> dict:
    """Exact (50-digit) 1-D references, rounded to float64, each of shape (q,).

    Keys: score, log_density, mean, d1 (s*'), d2 (s*''), d3 (s*'''), d4 (s*''''), var (Var W),
    abs3 (E|W - EW|^3), m4 (E(W - EW)^4).  NaN queries give NaN.
    mu and sigma are scalars (the exact floats to use)."""
    return _mp_1d_cached(_mpf_tuple(y), _mpf_tuple(x), float(mu), float(sigma))


@functools.lru_cache(maxsize=64)
def _mp_nd_cached(y: tuple, x: tuple, d: int, mu: float, sigma: float) -> dict:
    with mpmath.workdps(MP_DPS):
        mp = mpmath.mpf
        X = [[mp(v) for v in x[i * d:(i + 1) * d]] for i in range(len(x) // d)]
        Y = [[mp(v) for v in y[i * d:(i + 1) * d]] for i in range(len(y) // d)]
        n = len(X)
        mu_, s_ = mp(mu), mp(sigma)
        s2 = s_ * s_
        log_norm = mpmath.log(n) + d * (mpmath.log(s_) + mpmath.log(2 * mpmath.pi) / 2)
        score, logp, mean, lam = [], [], [], []
        for yv in Y:
            logits = [-mpmath.fsum((yk - mu_ * xk) ** 2 for yk, xk in zip(yv, xv)) / (2 * s2) for xv in X]
            lmax = max(logits)
            p = [mpmath.exp(li - lmax) for li in logits]
            s0 = mpmath.fsum(p)
            w = [pi / s0 for pi in p]
            m = [mpmath.fsum(wi * xv[k] for wi, xv in zip(w, X)) for k in range(d)]
            score.append([float((mu_ * m[k] - yv[k]) / s2) for k in range(d)])
            mean.append([float(v) for v in m])
            logp.append(float(lmax + mpmath.log(s0) - log_norm))
            # largest eigenvalue of Cov W (for the condition number), in float64
            wf = np.array([float(v) for v in w])
            xf = np.array([[float(v) for v in xv] for xv in X])
            cen = xf - np.array([float(v) for v in m])
            cov = (cen * wf[:, None]).T @ cen
            lam.append(float(np.linalg.eigvalsh(cov)[-1]))
    return {"score": np.array(score), "log_density": np.array(logp), "mean": np.array(mean),
            "cov_max": np.array(lam)}


def mp_nd(Y, X, mu, sigma) -> dict:
    """Exact (50-digit) d-D references: score (q, d), log_density (q,), mean (q, d), and
    cov_max (q,), the largest eigenvalue of Cov W (float64, for condition numbers)."""
    Y = np.asarray(Y, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    return _mp_nd_cached(_mpf_tuple(Y), _mpf_tuple(X), X.shape[1], float(mu), float(sigma))


# ---------------------------------------------------------------- numpy, O(q n)


def _levels(v, q):
    v = np.asarray(v, dtype=np.float64)
    return np.broadcast_to(v.reshape(-1) if v.ndim else v, (q,))


def np_1d(y, x, mu, sigma) -> dict:
    """Same keys as :func:`mp_1d` (but no d3, d4) from the q x n matrix of direct-form
    logits in float64; mu and sigma scalars or (q,) arrays.  Accurate to ~1e-13 relative
    at moderate sigma; used for cross-checks and condition numbers."""
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    mu = _levels(mu, y.size)[:, None]
    sigma = _levels(sigma, y.size)[:, None]
    l = -((y[:, None] - mu * x[None, :]) ** 2) / (2 * sigma**2)
    lmax = l.max(axis=1, keepdims=True)
    p = np.exp(l - lmax)
    s0 = p.sum(axis=1, keepdims=True)
    w = p / s0
    m = (w * x).sum(axis=1, keepdims=True)
    c = x[None, :] - m
    var = (w * c**2).sum(axis=1)
    c3 = (w * c**3).sum(axis=1)
    abs3 = (w * np.abs(c) ** 3).sum(axis=1)
    m4 = (w * c**4).sum(axis=1)
    mu, sigma, m = mu[:, 0], sigma[:, 0], m[:, 0]
    return {
        "score": (mu * m - y) / sigma**2,
        "log_density": lmax[:, 0] + np.log(s0[:, 0]) - np.log(x.size) - np.log(sigma) - 0.5 * np.log(2 * np.pi),
        "mean": m,
        "d1": (-1 + mu**2 * var / sigma**2) / sigma**2,
        "d2": mu**3 * c3 / sigma**6,
        "var": var,
        "abs3": abs3,
        "m4": m4,
    }


def np_nd(Y, X, mu, sigma) -> dict:
    """d-D references from the q x n matrix of direct-form logits (float64): score (q, d),
    log_density (q,), mean (q, d), cov_max (q,)."""
    Y = np.asarray(Y, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    q, d = Y.shape
    mu = _levels(mu, q)[:, None]
    sigma = _levels(sigma, q)[:, None]
    diff = Y[:, None, :] - mu[:, :, None] * X[None, :, :]
    l = -np.einsum("qnd,qnd->qn", diff, diff) / (2 * sigma**2)
    lmax = l.max(axis=1, keepdims=True)
    p = np.exp(l - lmax)
    s0 = p.sum(axis=1, keepdims=True)
    w = p / s0
    m = w @ X
    cen = X[None, :, :] - m[:, None, :]
    cov = np.einsum("qn,qni,qnj->qij", w, cen, cen)
    return {
        "score": (mu * m - Y) / sigma**2,
        "log_density": (lmax[:, 0] + np.log(s0[:, 0]) - np.log(X.shape[0])
                        - d * (np.log(sigma[:, 0]) + 0.5 * np.log(2 * np.pi))),
        "mean": m,
        "cov_max": np.linalg.eigvalsh(cov)[:, -1],
    }


# ------------------------------------------------------------------ closed forms


def one_point(y, x1, mu, sigma) -> dict:
    """n = 1 (data x1 of shape () or (d,)): s* = (mu x1 - y)/sigma^2, E[W|y] = x1,
    log p = Gaussian log-density N(y; mu x1, sigma^2 I); in 1-D s*' = -1/sigma^2, s*'' = 0."""
    y = np.asarray(y, dtype=np.float64)
    x1 = np.asarray(x1, dtype=np.float64)
    d = x1.size
    diff = y - mu * x1
    sq = diff**2 if x1.ndim == 0 else (diff**2).sum(axis=-1)
    return {
        "score": (mu * x1 - y) / sigma**2,
        "log_density": -sq / (2 * sigma**2) - d * (math.log(sigma) + 0.5 * math.log(2 * math.pi)),
        "mean": np.broadcast_to(x1, y.shape),
        "d1": np.full(y.shape, -1 / sigma**2),
        "d2": np.zeros(y.shape),
    }


def _sech2(t):
    """sech^2 t = 4 e^{-2|t|} / (1 + e^{-2|t|})^2, without overflow."""
    e = np.exp(-2 * np.abs(t))
    return 4 * e / (1 + e) ** 2


def two_points(y, v, mu, sigma) -> dict:
    """Data {+v, -v}: with t = mu <v, y> / sigma^2,
    E[W|y] = v tanh(t), s* = (mu v tanh(t) - y)/sigma^2,
    log p = log cosh(t) - (||y||^2 + mu^2 ||v||^2)/(2 sigma^2) - (d/2) log(2 pi sigma^2);
    in 1-D (v scalar) Var W = v^2 sech^2(t), E(W - EW)^3 = -2 v^3 tanh(t) sech^2(t).
    Also the moments the tolerances use: var, abs3, m4 (1-D) or cov_max (d-D)."""
    y = np.asarray(y, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 0:
        t = mu * v * y / sigma**2
        th = np.tanh(t)
        sech2 = _sech2(t)
        ysq, d = y**2, 1
        mean = v * th
    else:
        t = mu * (y @ v) / sigma**2
        th = np.tanh(t)
        sech2 = _sech2(t)
        ysq, d = (y**2).sum(axis=-1), v.size
        mean = th[..., None] * v
    logcosh = np.logaddexp(t, -t) - math.log(2)
    out = {
        "score": (mu * mean - y) / sigma**2,
        "mean": mean,
        "log_density": logcosh - (ysq + mu**2 * (v**2).sum()) / (2 * sigma**2)
        - 0.5 * d * math.log(2 * math.pi * sigma**2),
    }
    if v.ndim == 0:
        out["d1"] = (-1 + mu**2 * v**2 * sech2 / sigma**2) / sigma**2
        out["d2"] = -2 * mu**3 * v**3 * th * sech2 / sigma**6
        # moments of W (P(W = v) = p = (1 + tanh t)/2, p (1 - p) = sech^2 t / 4), for tolerances
        e = np.exp(-2 * np.abs(t))
        p = np.where(t >= 0, 1 / (1 + e), e / (1 + e))
        q = np.where(t >= 0, e / (1 + e), 1 / (1 + e))  # 1 - p without cancellation
        out["var"] = v**2 * sech2
        out["abs3"] = 2 * abs(v) ** 3 * sech2 * (p**2 + q**2)
        out["m4"] = 4 * v**4 * sech2 * (p**3 + q**3)
    else:
        out["cov_max"] = (v @ v) * sech2  # Cov W = sech^2(t) v v^T
    return out


# ------------------------------------------------------------ finite differences


def central_difference(f, y, h):
    """(f(y + h) - f(y - h)) / (2 h), elementwise in y (1-D).  Error h^2 |f'''| / 6
    plus the rounding of f divided by h."""
    y = np.asarray(y, dtype=np.float64)
    return (np.asarray(f(y + h)) - np.asarray(f(y - h))) / (2 * h)


def second_difference(f, y, h):
    """(f(y + h) - 2 f(y) + f(y - h)) / h^2.  Error h^2 |f''''| / 12 plus rounding / h^2."""
    y = np.asarray(y, dtype=np.float64)
    return (np.asarray(f(y + h)) - 2 * np.asarray(f(y)) + np.asarray(f(y - h))) / h**2


# ------------------------------------------------------------------------ Philox

_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF


def philox4x32_10(c0, c1, c2, c3, k0, k1) -> tuple:
    """Philox4x32-10 (Salmon et al. SC'11) in Python integers."""
    c = [c0, c1, c2, c3]
    for _ in range(10):
        p0 = _M0 * c[0]
        p1 = _M1 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k0) & _MASK, p1 & _MASK, ((p0 >> 32) ^ c[3] ^ k1) & _MASK, p0 & _MASK]
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return tuple(c)


def _words(seed, stream, i):
    block = i >> 1
    r = philox4x32_10(block & _MASK, block >> 32, stream & _MASK, stream >> 32, seed & _MASK, seed >> 32)
    j = 2 * (i & 1)
    return r[j], r[j + 1]


def uniform_at(seed, stream, i) -> float:
    """Element i of bigstep's uniform stream (docs/design.md section 3, philox.hpp):
    ((hi << 21) ^ (lo >> 11)) * 2^-53 with (hi, lo) words 2(i%2), 2(i%2)+1 of block i // 2,
    counter (block lo, block hi, stream lo, stream hi), key (seed lo, seed hi)."""
    hi, lo = _words(seed, stream, i)
    return float((hi << 21) ^ (lo >> 11)) * 2.0**-53


def normal_at(seed, stream, i) -> float:
    """Element i of bigstep's normal stream: Box-Muller, both branches, on block i // 4.
    Words (w_2h, w_2h+1), h = (i // 2) % 2, give sqrt(-2 log u1) cos(2 pi u2) for even i
    and sqrt(-2 log u1) sin(2 pi u2) for odd i, u = (w + 0.5) 2^-32."""
    block = i >> 2
    r = philox4x32_10(block & _MASK, block >> 32, stream & _MASK, stream >> 32, seed & _MASK, seed >> 32)
    h = 2 * ((i >> 1) & 1)
    u1 = (r[h] + 0.5) * 2.0**-32
    u2 = (r[h + 1] + 0.5) * 2.0**-32
    trig = math.sin if i & 1 else math.cos
    return math.sqrt(-2.0 * math.log(u1)) * trig(6.283185307179586 * u2)
