"""The two-layer ReLU networks of the paper, in the mean-field scaling 1/m (m = ``width``).

One convention for all of them: first-layer weights ``W1`` (width, inputs) and biases
``b1`` (width,), second-layer weights ``W2`` (outputs, width), output bias ``b2`` where
there is one; constructors take them in that (layer) order; ``width`` and ``dim`` (the
output dimension d) are attributes.

- :class:`ReLUNet1D`: R -> R, ``s(y) = (1/m) sum_l W2_l relu(W1_l y + b1_l)`` (Sections
  4-6, the exact-risk family :mod:`bigstep.relu_risk` and the 1-D trainers); W1, b1, W2
  of shape (width,);
- :class:`ReLUNetND`: R^d -> R^d, ``s(y) = (1/m) W2 relu(W1 y + b1)``
  (:func:`bigstep.train_dsm`);
- :class:`TimeReLUScore`: the time-conditional network
  ``r(t, x) = (1/m) W2 relu(W1 [x; t] + b1) + b2`` of Appendix E, a score
  ``s(x, t) = -r(t, x) / sigma(t)`` (:func:`bigstep.train_diffusion`,
  :func:`bigstep.sample_reverse`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _streams as streams
from ._arrays import as_numpy, wrap_like
from ._torch import device_route
from ._validate import check_wrt, integer, two_layer_weights
from .random import gaussian_noise, uniform
from .scores import Score

__all__ = ["ReLUNet1D", "ReLUNetND", "TimeReLUScore"]

_STREAM_INIT = streams.NETWORK_INIT


def _param_vector(value, name: str, width: int | None = None) -> np.ndarray:
    arr = as_numpy(value, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (width,), got shape {arr.shape}")
    if width is not None and arr.shape[0] != width:
        raise ValueError(f"{name} must have shape ({width},) like W1, got shape {arr.shape}")
    arr = np.array(arr, dtype=np.float64)  # own copy: the network is immutable
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got NaN or infinity")
    arr.flags.writeable = False
    return arr


class ReLUNet1D:
    """Two-layer ReLU network R -> R, immutable, of width m:

        s_theta(y) = (1/m) sum_l W2_l relu(W1_l y + b1_l)

    Calling the network on y of any shape gives ``s_theta(y)`` in float64, an array of
    y's shape and array type (a float for a scalar).

    Parameters
    ----------
    W1, b1, W2 : array
        Shape (width,), width >= 1, finite (copied into float64): the first-layer
        weights and biases and the second-layer weights (the d = 1 case of
        :class:`ReLUNetND`, stored flat).

    Attributes
    ----------
    W1, b1, W2 : numpy.ndarray
        The parameters, read-only float64 arrays of shape (width,).
    width : int
        The number of neurons m.
    dim : int
        1.
    kinks : numpy.ndarray
        ``-b1 / W1``, NaN where W1 == 0 or the quotient overflows (such a neuron is the
        constant ``relu(b1)``).

    Examples
    --------
    >>> import bigstep
    >>> net = bigstep.ReLUNet1D(W1=[1.0, -1.0], b1=[0.0, 0.0], W2=[2.0, 2.0])
    >>> float(net(3.0))            # (2 * 3 + 2 * 0) / 2
    3.0
    >>> net.kinks.tolist()
    [-0.0, 0.0]
    """

    __slots__ = ("_W1", "_b1", "_W2")
    dim = 1

    def __init__(self, W1, b1, W2):
        w1 = _param_vector(W1, "W1")
        if w1.shape[0] == 0:
            raise ValueError("W1 must have at least one neuron, got shape (0,)")
        object.__setattr__(self, "_W1", w1)
        object.__setattr__(self, "_b1", _param_vector(b1, "b1", w1.shape[0]))
        object.__setattr__(self, "_W2", _param_vector(W2, "W2", w1.shape[0]))

    def __setattr__(self, name, value):
        raise AttributeError("ReLUNet1D is immutable; use with_theta() for new parameters")

    @property
    def W1(self) -> np.ndarray:
        return self._W1

    @property
    def b1(self) -> np.ndarray:
        return self._b1

    @property
    def W2(self) -> np.ndarray:
        return self._W2

    @property
    def width(self) -> int:
        return int(self._W1.shape[0])

    @property
    def kinks(self) -> np.ndarray:
        return _kinks(self._W1, self._b1)

    def __call__(self, y):
        """s_theta(y) for y of any shape, computed in float64: an array of y's shape and
        array type (a float for a scalar)."""
        ya = np.asarray(as_numpy(y, "y"), dtype=np.float64)
        flat = ya.reshape(-1)
        out = np.empty_like(flat)
        m = self.width
        step = max(1, (1 << 22) // m)  # bounded temporaries: O(step * width)
        for s in range(0, flat.shape[0], step):
            pre = np.multiply.outer(flat[s:s + step], self._W1) + self._b1
            out[s:s + step] = np.maximum(pre, 0.0) @ self._W2 / m
        return wrap_like(out.reshape(ya.shape), y) if ya.ndim else float(out[0])

    def __repr__(self) -> str:
        return f"ReLUNet1D(width={self.width})"

    def theta(self, *, wrt: str = "outer_bias") -> np.ndarray:
        """Flat parameters in the order of the exact-risk family (:mod:`bigstep.relu_risk`):
        (W2, b1) for ``wrt="outer_bias"``, (W1, W2, b1) for ``wrt="all"``."""
        check_wrt(wrt)
        parts = (self._W2, self._b1) if wrt == "outer_bias" else (self._W1, self._W2, self._b1)
        return np.concatenate(parts)

    def with_theta(self, theta, *, wrt: str = "outer_bias") -> "ReLUNet1D":
        """A new network with the parameters theta (layout of :meth:`theta`)."""
        check_wrt(wrt)
        k = 2 if wrt == "outer_bias" else 3
        m = self.width
        th = as_numpy(theta, "theta")
        if th.shape != (k * m,):
            raise ValueError(f"theta must have shape ({k * m},) for wrt={wrt!r} and width={m}, "
                             f"got shape {th.shape}")
        th = np.asarray(th, dtype=np.float64)
        if wrt == "outer_bias":
            return ReLUNet1D(self._W1, b1=th[m:], W2=th[:m])
        return ReLUNet1D(th[:m], b1=th[2 * m:], W2=th[m:2 * m])

    @classmethod
    def init(cls, width, seed, *, inner: str = "gaussian", bias=0.0) -> "ReLUNet1D":
        """Random network from the Philox stream 2 of ``seed`` (NETWORK_INIT).

        W2 ~ N(0, 1) from counters [0, width) and W1 from counters [width, 2 width) of the
        stream; b1 = ``bias``.

        Parameters
        ----------
        width : int
            The number of neurons m >= 1.
        seed : int
            The Philox seed, >= 0.
        inner : str
            "gaussian" (default, the practical setting of Appendix E): W1 ~ N(0, 1);
            "sign" (the theory setting): W1 uniform in {+1, -1}.
        bias : float or array
            The initial b1: a scalar or an array of shape (width,).

        Returns
        -------
        ReLUNet1D

        Examples
        --------
        >>> import bigstep
        >>> net = bigstep.ReLUNet1D.init(4, seed=0, inner="sign")
        >>> sorted(set(net.W1.tolist()))
        [-1.0, 1.0]
        """
        m = integer(width, "width", minimum=1)
        seed = integer(seed, "seed", minimum=0)
        w2 = gaussian_noise(seed, m, stream=_STREAM_INIT, offset=0)
        if inner == "sign":
            w1 = np.where(uniform(seed, m, stream=_STREAM_INIT, offset=m) < 0.5, -1.0, 1.0)
        elif inner == "gaussian":
            w1 = gaussian_noise(seed, m, stream=_STREAM_INIT, offset=m)
        else:
            raise ValueError(f"inner must be 'sign' or 'gaussian', got {inner!r}")
        if isinstance(bias, numbers.Real) and not isinstance(bias, bool):
            b = np.full(m, float(bias))
        else:
            b = bias
        return cls(w1, b, w2)


def _kinks(w1: np.ndarray, b: np.ndarray) -> np.ndarray:
    """tau = -b / w1, NaN where there is no finite kink (w1 = 0, or |b / w1| overflows:
    such a neuron is the constant relu(b) on every representable y)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k = -b / w1
    k[~np.isfinite(k)] = np.nan
    return k


def init_params(seed: int, m: int, p: int, d: int):
    """(W1 (m, p), b1 (m,), W2 (d, m)) float64 from Philox stream 2 of ``seed``:
    W2 = gaussian_noise(seed, (d, m), stream=2), W1 = gaussian_noise(seed, (m, p), stream=2,
    offset=d m) / sqrt(p), b1 = 0 (for d = p = 1 this is ``ReLUNet1D.init(m, seed)``)."""
    W2 = gaussian_noise(seed, (d, m), stream=_STREAM_INIT, offset=0)
    W1 = gaussian_noise(seed, (m, p), stream=_STREAM_INIT, offset=d * m) / math.sqrt(p)
    return W1, np.zeros(m), W2


class ReLUNetND:
    """Two-layer ReLU network R^d -> R^d in the mean-field scaling, of width m:

        s(y) = (1/m) W2 relu(W1 y + b1)

    The networks :func:`bigstep.train_dsm` returns (``TrainResult.network(r)``).
    Calling it on y of shape (N, d) (or (d,)) returns an array of the same shape, float64,
    in y's array type.

    Parameters
    ----------
    W1 : array
        Shape (m, d), finite.
    b1 : array
        Shape (m,), finite.
    W2 : array
        Shape (d, m), finite.

    Attributes
    ----------
    W1, b1, W2 : numpy.ndarray
        The parameters, float64.
    width : int
        m.
    dim : int
        d.

    Examples
    --------
    >>> import numpy as np
    >>> from bigstep.nets import ReLUNetND
    >>> net = ReLUNetND(np.eye(2), np.zeros(2), 2 * np.eye(2))
    >>> net(np.array([[1.0, -1.0]]))      # (1/2) * 2 * relu(y)
    array([[1., 0.]])
    """

    def __init__(self, W1, b1, W2):
        w1, bb, w2, m, d = two_layer_weights(W1, b1, W2)
        self.W1, self.b1, self.W2 = w1, bb, w2
        self.width, self.dim = m, d

    def __call__(self, y):
        """s(y) for y of shape (N, d) or (d,), float64, in y's array type."""
        ya = np.asarray(as_numpy(y, "y"), dtype=np.float64)
        single = ya.ndim == 1
        y2 = ya.reshape(1, -1) if single else ya
        if y2.ndim != 2 or y2.shape[1] != self.dim:
            raise ValueError(f"y must have shape (N, {self.dim}) or ({self.dim},), got shape {ya.shape}")
        out = np.empty_like(y2)
        step = max(1, (1 << 22) // self.width)  # bounded temporaries: O(step * m)
        w1t, w2t = self.W1.T, self.W2.T / self.width
        for s in range(0, y2.shape[0], step):
            out[s:s + step] = np.maximum(y2[s:s + step] @ w1t + self.b1, 0.0) @ w2t
        return wrap_like(out[0] if single else out, y)

    def __repr__(self):
        return f"ReLUNetND(width={self.width}, dim={self.dim})"


class TimeReLUScore(Score):
    """Time-conditional two-layer ReLU network of Appendix E, of width m:

        r_theta(t, x) = (1/m) W2 relu(W1 [x; t] + b1) + b2
        s_theta(x, t) = -r_theta(t, x) / sigma(t)

    ``[x; t]`` is in R^(d+1) with the time LAST: ``W1[:, :d]`` multiplies x and
    ``W1[:, d]`` multiplies t.  This is the layout of the authors' notebook
    (docs/design.md section 2b), so weights trained there load as they are; the 1/m
    factor is the mean-field scaling used throughout the paper (Section 4) and the
    notebook.  ``r_theta`` predicts the noise (loss ``|r_theta(t, X_t) - xi|^2``), hence
    ``s = -r / sigma``.  A :class:`bigstep.scores.Score`: ``net(x, t)`` is the score.

    Parameters
    ----------
    W1 : array
        Shape (m, d + 1), finite.
    b1 : array
        Shape (m,), finite.
    W2 : array
        Shape (d, m), finite.
    b2 : array or None
        Shape (d,), finite; None is zero (the notebook's choice).
    schedule : str
        "ou" (default) or "notebook" (only sigma(t) enters, identical in both).

    Attributes
    ----------
    W1, b1, W2, b2 : numpy.ndarray
        The parameters, float64.
    width : int
        m.
    dim : int
        d.
    schedule : str
        The noise schedule.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> net = bigstep.TimeReLUScore(np.ones((3, 3)), np.zeros(3), np.ones((2, 3)))
    >>> net(np.ones((1, 2)), 1.0).round(4)    # r = (1/3) 3 * 3 = 3 per coordinate
    array([[-3.2262, -3.2262]])
    """

    def __init__(self, W1, b1, W2, *, b2=None, schedule: str = "ou"):
        self._check_schedule(schedule)
        dev = None
        if device_route("auto", {"W1": W1, "b1": b1, "W2": W2, "b2": b2}):  # checked on the host, kept on the device
            from ._torch._api import to_host

            dev, (W1, b1, W2, b2) = to_host(W1=W1, b1=b1, W2=W2, b2=b2)
        w1, bb1, w2, m, d = two_layer_weights(W1, b1, W2, extra_inputs=1)
        bb2 = np.zeros(d) if b2 is None else np.array(as_numpy(b2, "b2"), dtype=np.float64)
        if bb2.shape != (d,):
            raise ValueError(f"b2 must have shape ({d},), got shape {bb2.shape}")
        if not np.isfinite(bb2).all():
            raise ValueError("b2 must be finite, got NaN or infinity")
        self.W1, self.b1, self.W2, self.b2 = w1, bb1, w2, bb2
        self.width = m
        self.dim = d
        self.schedule = schedule
        if dev is not None:
            from ._torch._api import to_device

            self._device, self._like = to_device(dev, w1=w1, b1=bb1, w2t=np.ascontiguousarray(w2.T), b2=bb2)

    def _arrays(self) -> dict:
        return {"W1": self.W1 if self._device is None else self._device["w1"]}

    def r(self, x, t):
        """The network output ``r_theta(t, x)``, shape (N, d), in x's array type."""
        if device_route("auto", {"x": x, "t": t, **self._arrays()}):  # device arrays: torch on their device
            from ._torch._api import call_score

            return call_score(self, x, t, raw=True)
        xa, ta = self._inputs(x, t)
        return wrap_like(self._r(xa, ta), x)

    def _r(self, x, t):
        d = self.dim
        pre = x @ self.W1[:, :d].T + np.multiply.outer(np.broadcast_to(t, (x.shape[0],)), self.W1[:, d]) + self.b1
        return np.maximum(pre, 0.0) @ self.W2.T / self.width + self.b2

    def _evaluate(self, x, t, mu, sigma):
        return -self._r(x, t) / sigma[:, None]

    def __repr__(self):
        return f"TimeReLUScore(width={self.width}, dim={self.dim}, schedule={self.schedule!r})"
