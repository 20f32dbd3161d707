"""Local and equivariant local empirical denoisers for images (docs/local.md).

Images y (queries) and x_1..x_n (training) of shape (H, W) or (H, W, C); an odd patch
size P = 2r + 1; Omega_u the P x P window centred at pixel u, read through the padding
rule (``"zeros"``: pixels outside the image are 0; ``"reflect"``: mirrored about the edge
pixel, as numpy's and torch's "reflect").  At a noise level (mu, sigma):

- local (``equivariant=False``): every pixel has its own softmax over the n training
  images at the same place,

      E_u[y] = sum_i w_i(u) x_i(u),
      w_i(u) = softmax_i( -|y[Omega_u] - mu x_i[Omega_u]|^2 / (2 sigma^2) );

- equivariant local (``equivariant=True``): every training image i and every position v
  compete,

      w_{i,v}(u) proportional to exp( -|y[Omega_u] - mu x_i[Omega_v]|^2 / (2 sigma^2) ),
      E_u[y] = sum_{i,v} w_{i,v}(u) x_i(v);

- the local score is (mu E[y] - y) / sigma^2, as for s*.

With zero padding and P >= 2 max(H, W) - 1 every window covers the whole image from
every centre (and only adds zeros beyond it), so the local posterior mean is the global
:func:`bigstep.posterior_mean` of the flattened images at every pixel.

The kernels never form a patch matrix: patch distances are box sums of per-pixel squared
differences, computed for all pixels at once per (query, image, shift), and every pixel
keeps an exact online softmax (its own running maximum; partial sums are merged by the
exact log-sum-exp rule, never normalised on their own).  Memory O(inputs + outputs).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _backend
from ._arrays import as_numpy, prepare, result_dtype, wrap_like
from ._torch import device_route
from ._validate import _all_finite, first_true, float32_levels, noise_level, schedule_rate
from .scores import Score

__all__ = ["posterior_mean", "score", "LocalScore", "PADDINGS"]

_SCORE, _MEAN = 1, 4
PADDINGS = {"zeros": 0, "reflect": 1}
"""The padding rules, by name, and the codes the kernels take for them."""


# --------------------------------------------------------------------------- checks


def _images(value, name: str, *, convert=as_numpy):
    """Images (N, H, W) or (N, H, W, C), finite: a numpy array, or a torch tensor when
    ``convert`` (the device-array path's conversion) gives tensors."""
    arr = convert(value, name)
    shape = tuple(arr.shape)
    if arr.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (N, H, W) or (N, H, W, C), got {arr.ndim} dimensions {shape}")
    if 0 in shape[1:]:
        raise ValueError(f"{name} must have images of at least one pixel and one channel, got shape {shape}")
    if (not isinstance(arr, np.ndarray) or arr.dtype.kind == "f") and not _all_finite(arr):
        raise ValueError(f"{name} must be finite, got NaN or infinity in the pixels")
    return arr


def check_patch(patch, image_shape, padding: str, name: str = "patch") -> int:
    """An odd positive patch size; with reflect padding no larger than the image."""
    if isinstance(patch, (bool, np.bool_)) or not isinstance(patch, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an odd positive integer, got {type(patch).__name__}")
    p = int(patch)
    if p < 1 or p % 2 == 0:
        raise ValueError(f"{name} must be an odd positive integer (a window centred on its pixel), got {p}")
    if padding == "reflect" and p > min(image_shape[0], image_shape[1]):
        raise ValueError(f"{name} must be at most min(H, W) = {min(image_shape[0], image_shape[1])} with reflect "
                         f"padding (every padded pixel a single mirror image of a pixel of the image), got {p}; "
                         "use padding='zeros' for larger patches")
    return p


def check_padding(padding) -> str:
    if not isinstance(padding, str) or padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(map(repr, PADDINGS))}, got {padding!r}")
    return padding


def _check_scale(sigma, dtype) -> None:
    """The logits -D / (2 sigma^2) are formed in the compute type: 1/(2 sigma^2) must be
    finite there (sigma: float64 numpy array or torch tensor; dtype: a numpy dtype)."""
    big = float(np.finfo(dtype).max)
    small = np.sqrt(0.5 / big)
    bad = sigma < small
    if bad.any():
        raise ValueError(f"sigma must be at least {small:.3g} for {np.dtype(dtype).name} inputs (1/(2 sigma^2) "
                         f"overflows below it), got {np.float64(float(sigma[first_true(bad)]))!r}")


def checked(y, x, mu, sigma, patch, equivariant, padding, *, convert=as_numpy):
    """The checked arguments of a call: (y, x, mu, sigma, patch, float32?) with y and x
    as read by ``convert`` (numpy arrays, or torch tensors on the device-array path) and
    mu, sigma float64 of shape (1,) or (q,)."""
    xa = _images(x, "x", convert=convert)
    ya = _images(y, "y", convert=convert)
    if ya.ndim != xa.ndim or tuple(ya.shape[1:]) != tuple(xa.shape[1:]):
        raise ValueError(f"y must have images of the shape of x's, {tuple(xa.shape[1:])}: shape (q, "
                         f"{', '.join(map(str, xa.shape[1:]))}), got shape {tuple(ya.shape)}")
    if xa.shape[0] == 0:
        raise ValueError("x must contain at least one training image, got an empty array")
    if not isinstance(equivariant, (bool, np.bool_)):
        raise TypeError(f"equivariant must be True or False, got {type(equivariant).__name__}")
    padding = check_padding(padding)
    p = check_patch(patch, tuple(xa.shape[1:3]), padding)
    q = ya.shape[0]
    mua = noise_level(mu, "mu", q, convert=convert)
    siga = noise_level(sigma, "sigma", q, convert=convert)
    if isinstance(ya, np.ndarray):
        single = result_dtype(ya, xa) == np.float32
    else:  # tensors of the device-array path: float32 or float64 (as_tensor converted the others)
        single = all(str(a.dtype) == "torch.float32" for a in (ya, xa))
    if single:
        float32_levels(mua, "mu")
        float32_levels(siga, "sigma")
    _check_scale(siga, np.float32 if single else np.float64)
    return ya, xa, mua, siga, p, single


def _compute(y, x, mu, sigma, what: int, patch, equivariant, padding, backend):
    if device_route(backend, {"y": y, "x": x, "mu": mu, "sigma": sigma}):  # device arrays, or backend torch/cuda
        from ._torch._api import local_family

        return local_family(y, x, mu, sigma, what, patch, equivariant, padding, backend)
    ya, xa, mua, siga, p, single = checked(y, x, mu, sigma, patch, equivariant, padding)
    q = ya.shape[0]
    dtype = np.dtype(np.float32 if single else np.float64)
    impl = _backend.kernels("local", _backend.resolve(backend, ya, xa, family="local"))
    image = xa.shape[1:] if xa.ndim == 4 else xa.shape[1:] + (1,)
    yk = prepare(ya, dtype).reshape((q,) + image)
    xk = prepare(xa, dtype).reshape(xa.shape[:1] + image)
    muk, sigk = prepare(mua, dtype), prepare(siga, dtype)
    r = (p - 1) // 2
    out = impl.local_posterior_mean(yk, xk, muk, sigk, r, r, PADDINGS[padding], bool(equivariant), what)
    return tuple(None if o is None else o.reshape(ya.shape) for o in out)


# --------------------------------------------------------------------------- public


def posterior_mean(y, x, mu, sigma, *, patch, equivariant=False, padding="zeros", backend="auto"):
    """Local (or equivariant local) posterior mean E_u[y] at every pixel u.

    ::

        local:        E_u = sum_i w_i(u) x_i(u),
                      w_i(u) = softmax_i(-|y[Omega_u] - mu x_i[Omega_u]|^2 / (2 sigma^2))
        equivariant:  E_u = sum_{i,v} w_{i,v}(u) x_i(v),
                      w_{i,v}(u) = softmax_{i,v}(-|y[Omega_u] - mu x_i[Omega_v]|^2 / (2 sigma^2))

    with Omega_u the patch x patch window centred at u.  Each pixel's softmax is shifted by
    its own maximum (an exact online log-sum-exp), so float32 stays finite at small sigma.

    Parameters
    ----------
    y : array
        Queries, shape (q, H, W) or (q, H, W, C), finite.
    x : array
        Training images, shape (n, H, W) or (n, H, W, C) like y, finite, n >= 1.
    mu, sigma : float or array
        Positive scalars or arrays of shape (q,) (one noise level per query).
    patch : int
        The odd window size P.  With zero padding a P >= 2 max(H, W) - 1 covers the whole
        image from every pixel: the result is then the global
        :func:`bigstep.posterior_mean` of the flattened images.
    equivariant : bool
        Let every position of every training image compete (True) or only the same
        position (False).
    padding : str
        "zeros" (pixels outside the image are 0, in y and in x) or "reflect" (mirrored
        about the edge pixel, numpy's "reflect"; needs patch <= min(H, W)).
    backend : str
        "auto" (cpp, then numba for host arrays; torch for tensors on a device), "cpp",
        "numba" or "torch" (torch operations on the tensors' device, computed in float64).

    Returns
    -------
    array
        E of y's shape: float32 for float32 inputs, float64 otherwise (a torch tensor if y
        is one).  Cost O(q n H W (C + 2P)) local, O(q n (H W)^2 (C + 2P)) equivariant;
        memory O(inputs + outputs).

    Raises
    ------
    ValueError
        An even or non-positive patch, a patch larger than the image with reflect padding,
        mismatched image shapes, non-finite pixels or noise levels, an unknown padding.
    TypeError
        A patch or equivariant of the wrong type.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> x = np.stack([np.zeros((4, 4)), np.ones((4, 4))])       # two training images
    >>> y = np.full((1, 4, 4), 0.9)                              # close to the second
    >>> m = bigstep.local.posterior_mean(y, x, 1.0, 0.1, patch=3)
    >>> m.shape, bool(np.allclose(m, 1.0))
    ((1, 4, 4), True)
    """
    return wrap_like(_compute(y, x, mu, sigma, _MEAN, patch, equivariant, padding, backend)[1], y)


def score(y, x, mu, sigma, *, patch, equivariant=False, padding="zeros", backend="auto"):
    """Local (or equivariant local) score (mu E_u[y] - y_u) / sigma^2 at every pixel.

    Parameters
    ----------
    y, x, mu, sigma, patch, equivariant, padding, backend
        As in :func:`posterior_mean`.

    Returns
    -------
    array
        The score, of y's shape and the dtype rule of :func:`posterior_mean`.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> x = np.stack([np.zeros((3, 3)), np.ones((3, 3))])
    >>> s = bigstep.local.score(np.zeros((1, 3, 3)), x, 1.0, 0.1, patch=3)
    >>> bool(np.abs(s).max() < 1e-12)   # y is the first training image: E = y (up to e^-450), s = 0
    True
    """
    return wrap_like(_compute(y, x, mu, sigma, _SCORE, patch, equivariant, padding, backend)[0], y)


class LocalScore(Score):
    """The local (or equivariant local) empirical score of training images, for
    :func:`bigstep.sample_reverse`::

        s(x, t) = (mu(t) E[x] - x) / sigma(t)^2,

    E the local posterior mean (:func:`posterior_mean`) with patch size
    ``patch_schedule(t)`` (or ``patch``) at the noise level (mu(t), sigma(t)) of
    ``schedule`` ("ou": (exp(-t), sqrt(1 - exp(-2t))); "notebook": mu = exp(-2t)).
    Particles are flattened images: x of shape (N, H W C) (or (N, H, W[, C])), dim = H W C.
    ``sample_reverse`` runs it step by step through the compiled kernels (the backend it
    is given), with the same Philox streams as every other score, so runs replay.

    Parameters
    ----------
    x_train : array
        Training images (n, H, W) or (n, H, W, C), finite.
    patch : int or None
        The odd patch size, used at every time unless ``patch_schedule`` is given.
    equivariant : bool
        The equivariant local machine (every position competes).
    patch_schedule : callable or None
        t -> odd patch size (t the diffusion time, a float): a patch size that depends on
        the noise level, e.g. ``lambda t: 7 if t > 0.5 else 3``.
    padding : str
        "zeros" or "reflect".
    schedule : str
        "ou" (default) or "notebook" (see :mod:`bigstep.scores`).

    Attributes
    ----------
    x_train : numpy.ndarray
        A float64 copy of the training images.
    image_shape : tuple
        (H, W) or (H, W, C).
    dim : int
        H W C, the particles' dimension.

    Examples
    --------
    >>> import numpy as np, bigstep
    >>> x = np.random.default_rng(0).standard_normal((10, 4, 4))
    >>> s = bigstep.LocalScore(x, patch=3)
    >>> s.dim, s(np.zeros((2, 16)), 0.5).shape
    (16, (2, 16))
    >>> bigstep.sample_reverse(s, 3, s.dim, n_steps=5, seed=0).shape
    (3, 16)
    """

    def __init__(self, x_train, *, patch=None, equivariant=False, patch_schedule=None, padding="zeros",
                 schedule: str = "ou"):
        schedule_rate(schedule)  # validates the schedule's name
        xa = _images(x_train, "x_train")
        if xa.shape[0] == 0:
            raise ValueError("x_train must contain at least one training image, got an empty array")
        self.x_train = np.array(xa, dtype=np.float64)  # a private copy
        self.image_shape = tuple(self.x_train.shape[1:])
        self.dim = int(np.prod(self.image_shape))
        self.padding = check_padding(padding)
        if not isinstance(equivariant, (bool, np.bool_)):
            raise TypeError(f"equivariant must be True or False, got {type(equivariant).__name__}")
        self.equivariant = bool(equivariant)
        if patch_schedule is None:
            if patch is None:
                raise ValueError("LocalScore needs patch (an odd int) or patch_schedule (t -> odd int)")
            self.patch = check_patch(patch, self.image_shape, self.padding)
        else:
            if not callable(patch_schedule):
                raise TypeError(f"patch_schedule must be a callable t -> odd patch size, got "
                                f"{type(patch_schedule).__name__}")
            self.patch = None if patch is None else check_patch(patch, self.image_shape, self.padding)
        self.patch_schedule = patch_schedule
        self.schedule = schedule

    def patch_at(self, t: float) -> int:
        """The patch size at diffusion time ``t`` (a float), checked."""
        if self.patch_schedule is None:
            return self.patch
        return check_patch(self.patch_schedule(float(t)), self.image_shape, self.padding,
                           name=f"patch_schedule({float(t)!r})")

    def __call__(self, x, t):
        return self.evaluate(x, t)

    def evaluate(self, x, t, *, backend: str = "auto"):
        """The score s(x, t), computed with ``backend``.

        Parameters
        ----------
        x : array
            Shape (N, dim) or (N,) + image shape.
        t : float or array
            A diffusion time, or one per row.
        backend : str
            "auto", "cpp" or "numba".

        Returns
        -------
        array
            float64, x's shape and array type.
        """
        xa = np.asarray(as_numpy(x, "x"), dtype=np.float64)
        flat = xa.ndim == 2 and xa.shape[1] == self.dim and len(self.image_shape) > 0
        if not (flat or xa.shape[1:] == self.image_shape):
            raise ValueError(f"x must have shape (N, {self.dim}) or (N, {', '.join(map(str, self.image_shape))}), "
                             f"got shape {xa.shape}")
        images = xa.reshape((xa.shape[0],) + self.image_shape)
        ta = np.asarray(as_numpy(t, "t"), dtype=np.float64)
        if ta.ndim != 0 and ta.shape != (xa.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({xa.shape[0]},) (one time per row), got shape "
                             f"{ta.shape}")
        kwargs = dict(equivariant=self.equivariant, padding=self.padding, backend=backend)
        if ta.ndim == 0:
            mu, sigma = self.noise_level(ta)
            out = score(images, self.x_train, float(mu), float(sigma), patch=self.patch_at(ta), **kwargs)
        else:  # one time per row: rows that share a patch size share a call
            mu, sigma = self.noise_level(ta)
            times, inverse = np.unique(ta, return_inverse=True)
            patch = np.array([self.patch_at(tv) for tv in times])[inverse.reshape(-1)]
            out = np.empty_like(images)
            for p in np.unique(patch):
                rows = np.flatnonzero(patch == p)
                out[rows] = score(images[rows], self.x_train, mu[rows], sigma[rows], patch=int(p), **kwargs)
        return wrap_like(out.reshape(xa.shape), x)

    def __repr__(self):
        size = f"patch={self.patch}" if self.patch_schedule is None else "patch_schedule=..."
        return (f"LocalScore(n={self.x_train.shape[0]}, image={self.image_shape}, {size}, "
                f"equivariant={self.equivariant}, padding={self.padding!r}, schedule={self.schedule!r})")
