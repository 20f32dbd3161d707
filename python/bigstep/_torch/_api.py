"""The device-array paths of the public functions.

A public function goes this way (``bigstep._torch.device_route``) when its backend is
"torch" or "cuda", or when it is "auto" and its arrays live on a device.  Then:

1. the arrays of the call must share one device (``_arrays.common_device``: a
   ValueError names both otherwise) and ``_backend.resolve`` picks the backend;
2. every array becomes a torch tensor on that device without a copy where it can:
   torch tensors as they are, CuPy/JAX/other DLPack producers through ``torch.from_dlpack``,
   ``__cuda_array_interface__`` objects through ``torch.as_tensor``, host arrays through
   ``torch.from_numpy`` (read-only and memory-mapped ones included); only dtypes the
   kernels do not take are converted (integers and bools to float64, float16/bfloat16 to
   float32), and non-contiguous arrays are made contiguous;
3. shapes are checked from the metadata and finiteness by one reduction on the device,
   with the messages of the host path (the validators of ``bigstep._validate`` with
   :func:`as_tensor` as their conversion);
4. the kernels run on the caller's current stream (torch's; for CuPy inputs CuPy's
   current stream, entered as a torch external stream), and the results go back in the
   caller's array type on the caller's device (``_arrays.wrap_like``).
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import torch

from .. import _backend
from .._arrays import _TORCH_INTS, _refuse_grad, as_numpy, common_device, device_of, kind, prepare, writable_alias
from .._validate import first_true
from ._common import ieee_matmul

_TORCH_DEVICE_TYPES = {"cuda": "cuda", "rocm": "cuda", "metal": "mps", "mps": "mps"}


def torch_device(dev: str) -> torch.device:
    """The torch device of an ``_arrays.device_of`` name ("cpu", "cuda:1", "rocm:0", ...)."""
    if dev == "cpu":
        return torch.device("cpu")
    typ, _, idx = dev.partition(":")
    return torch.device(_TORCH_DEVICE_TYPES.get(typ, typ), int(idx or 0))


def _check_dtype(t: torch.Tensor, name: str) -> None:
    dt = t.dtype
    if dt.is_complex or not (dt.is_floating_point or str(dt) in _TORCH_INTS):
        raise TypeError(f"{name} must have a real numeric dtype, got {dt}")


def as_tensor(a, name: str, *, device: torch.device | None = None, grad: bool = False) -> torch.Tensor:
    """``a`` as a torch tensor (float32 or float64) on its device, or on ``device`` for
    host data and Python numbers; no copy for contiguous float32/float64 inputs.

    TypeError for non-numeric dtypes and for tensors that require grad (unless ``grad``);
    ValueError naming the argument and its device when torch cannot read a device array."""
    k = kind(a)
    if k == "torch":
        if not grad:
            _refuse_grad(a, name)
        t = a.detach()
        _check_dtype(t, name)
    elif k in ("numpy", "other") or device_of(a) == "cpu":
        arr = as_numpy(a, name)
        small_float = arr.dtype.kind == "f" and arr.dtype.itemsize <= 4
        arr = prepare(arr, np.float32 if small_float else np.float64).reshape(arr.shape)  # keeps 0-d arrays 0-d
        if any(st < 0 for st in arr.strides):  # C-contiguous for numpy (a flipped axis of length 1), not for torch
            arr = arr.copy()
        t = torch.from_numpy(writable_alias(arr))  # the kernels never write their inputs
    else:
        dev = device_of(a)
        try:
            t = torch.as_tensor(a, device=torch_device(dev)) if k == "cai" else torch.from_dlpack(a)
        except Exception as exc:
            raise ValueError(f"{name} is a {type(a).__name__} on {dev}, which torch cannot read here "
                             f"({type(exc).__name__}: {exc})") from None
        _check_dtype(t, name)
    if not t.dtype.is_floating_point:
        t = t.double()
    elif t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if device is not None and t.device != device:
        t = t.to(device)
    return t


def result_dtype(*tensors) -> torch.dtype:
    """float32 if every tensor is float32, else float64 (the host path's rule)."""
    return torch.float32 if all(t.dtype == torch.float32 for t in tensors) else torch.float64


@contextlib.contextmanager
def caller_stream(arrays):
    """Runs the block on the caller's current CUDA stream: CuPy's for CuPy arrays (as a
    torch external stream); torch's own current stream otherwise (nothing to do)."""
    for a in arrays:
        if kind(a) == "cupy":
            import cupy

            dev = torch.device("cuda", int(a.device.id))
            with a.device:
                ptr = cupy.cuda.get_current_stream().ptr
            with torch.cuda.device(dev), torch.cuda.stream(torch.cuda.ExternalStream(ptr, device=dev)):
                yield
            return
    yield


def start(backend: str, family: str, named: dict):
    """Steps 1 and 2 of the module docstring: (backend name, torch device, conversion)."""
    dev = common_device(named)
    name = _backend.resolve(backend, family=family, **named)
    if name not in ("torch", "cuda"):  # an explicit CPU backend never comes here
        raise AssertionError(name)
    tdev = torch_device(dev)
    if tdev.type == "mps":
        raise ValueError(f"arrays on {dev}: the torch backend computes sums and the small-sigma recomputation in "
                         f"float64, which MPS does not have; move the arrays to the CPU (or a CUDA/ROCm device)")
    if name == "cuda" and tdev.type != "cuda":  # backend="cuda" on host arrays: the current CUDA device
        tdev = torch.device("cuda", torch.cuda.current_device())
    return name, tdev, functools.partial(as_tensor, device=tdev)


# ------------------------------------------------------------------ optimal score


def optimal_score_family(y, x, mu, sigma, what: int, backend: str, one_d_only: bool, method: str = "auto"):
    """bigstep.optimal_score._run for device arrays: (outputs as torch tensors, backend
    used, (mu, sigma) as float64 tensors of shape (1,) or (q,)).  The device backends have
    no fast Gauss transform: ``method`` "auto" and "pairwise" run the pairwise kernels,
    "fgt" is a ValueError."""
    from .._validate import float32_levels, noise_level, queries, training_data

    named = {"y": y, "x": x, "mu": mu, "sigma": sigma}
    name, _, conv = start(backend, "optimal_score", named)
    if method == "fgt":
        raise ValueError(f"method='fgt' runs on the cpp and numba backends, not on {name!r}; use 'auto' or 'pairwise'")
    with caller_stream(named.values()):
        xa = training_data(x, ndim=1 if one_d_only else None, convert=conv)
        ya = queries(y, xa, convert=conv)
        single = ya.ndim == xa.ndim - 1
        q = 1 if single else ya.shape[0]
        mua = noise_level(mu, "mu", q, convert=conv)
        siga = noise_level(sigma, "sigma", q, convert=conv)
        dtype = result_dtype(ya, xa)
        if dtype == torch.float32:
            float32_levels(mua, "mu")
            float32_levels(siga, "sigma")
        impl = _backend.kernels("optimal_score", name)
        yk = (ya.reshape((1,) + tuple(ya.shape)) if single else ya).to(dtype).contiguous()
        xk = xa.to(dtype).contiguous()
        muk, sigk = mua.to(dtype), siga.to(dtype)
        if xa.ndim == 1:
            outs = impl.optimal_score_1d(yk, torch.sort(xk, stable=True).values, muk, sigk, what)
        else:
            outs = impl.optimal_score_nd(yk, xk, muk, sigk, what)
    if single:
        outs = tuple(None if o is None else o[0] for o in outs)
    return outs, name, (mua, siga)


# ------------------------------------------------------------------ local denoisers


def local_family(y, x, mu, sigma, what: int, patch, equivariant, padding, backend):
    """bigstep.local._compute for device arrays (or backend torch/cuda): (score, mean) as
    torch tensors of y's shape on the device, None where not asked for by ``what``."""
    from ..local import PADDINGS, checked

    named = {"y": y, "x": x, "mu": mu, "sigma": sigma}
    name, _, conv = start(backend, "local", named)
    with caller_stream(named.values()):
        ya, xa, mua, siga, p, single = checked(y, x, mu, sigma, patch, equivariant, padding, convert=conv)
        dtype = torch.float32 if single else torch.float64
        image = tuple(xa.shape[1:]) if xa.ndim == 4 else tuple(xa.shape[1:]) + (1,)
        yk = ya.to(dtype).contiguous().reshape((ya.shape[0],) + image)
        xk = xa.to(dtype).contiguous().reshape((xa.shape[0],) + image)
        r = (p - 1) // 2
        impl = _backend.kernels("local", name)
        out = impl.local_posterior_mean(yk, xk, mua.to(dtype), siga.to(dtype), r, r, PADDINGS[padding],
                                        bool(equivariant), what)
    return tuple(None if o is None else o.reshape(ya.shape) for o in out)


# ------------------------------------------------------------------------ metrics


def mmd2(a, b, bandwidth, unbiased, backend) -> float:
    """bigstep.mmd2 for device arrays."""
    from ..metrics import _mmd2_args

    named = {"a": a, "b": b, "bandwidth": bandwidth}
    name, _, conv = start(backend, "metrics", named)
    with caller_stream(named.values()):
        aa, ba, h = _mmd2_args(a, b, bandwidth, unbiased, convert=conv)
        dtype = result_dtype(aa, ba)
        impl = _backend.kernels("metrics", name)
        return float(impl.mmd2(aa.to(dtype).contiguous(), ba.to(dtype).contiguous(), h, bool(unbiased)))


def nearest_neighbors(samples, train, k, backend):
    """(dist, idx) of bigstep.nearest_neighbors for device arrays, as torch tensors."""
    from ..metrics import _neighbor_args

    named = {"samples": samples, "train": train}
    name, _, conv = start(backend, "metrics", named)
    with caller_stream(named.values()):
        sa, ta, k = _neighbor_args(samples, train, k, convert=conv)
        dtype = result_dtype(sa, ta)
        impl = _backend.kernels("metrics", name)
        return impl.nearest_neighbors(sa.to(dtype).contiguous(), ta.to(dtype).contiguous(), k)


def memorization_ratio(samples, train, backend):
    """d1 / d2 (1 where d2 = 0) of bigstep.memorization_ratio for device arrays, a torch tensor."""
    t = as_tensor(train, "train") if kind(train) == "torch" or device_of(train) != "cpu" else None
    shape = tuple(t.shape) if t is not None else np.shape(as_numpy(train, "train"))
    if len(shape) in (1, 2) and shape[0] < 2:
        raise ValueError(f"train must contain at least 2 points for the memorization ratio, got shape {shape}")
    dist, _ = nearest_neighbors(samples, train, 2, backend)
    d1, d2 = dist[:, 0].to(torch.float64), dist[:, 1].to(torch.float64)
    pos = d2 > 0
    ratio = torch.where(pos, d1 / torch.where(pos, d2, torch.ones_like(d2)), torch.ones_like(d2))
    return ratio.to(dist.dtype)


def memorized_fraction(samples, train, threshold: float, backend) -> float:
    """bigstep.memorized_fraction for device arrays (threshold already checked)."""
    s = as_tensor(samples, "samples") if kind(samples) == "torch" or device_of(samples) != "cpu" else None
    shape = tuple(s.shape) if s is not None else np.shape(as_numpy(samples, "samples"))
    if len(shape) in (1, 2) and shape[0] == 0:
        raise ValueError(f"samples must contain at least one point, got shape {shape}")
    ratio = memorization_ratio(samples, train, backend)
    return float((ratio.to(torch.float64) < threshold).to(torch.float64).mean())


# ------------------------------------------------------------------ score objects


def _like_of(dev: torch.device, a):
    """An empty array of ``a``'s type on ``dev`` (what results of a score built from ``a``
    come back as), without keeping ``a`` alive."""
    from .._arrays import wrap_like

    return wrap_like(torch.empty(0, dtype=torch.float64, device=dev), a)


def empirical_data(x_train):
    """(float64 copy of the training data on its device, like) for EmpiricalScore."""
    from .._validate import training_data

    named = {"x_train": x_train}
    dev = torch_device(common_device(named))
    with caller_stream(named.values()):
        xa = training_data(x_train, convert=functools.partial(as_tensor, device=dev))
        return xa.to(torch.float64, copy=True).contiguous(), _like_of(dev, x_train)


def to_host(**named):
    """((torch device, like), host numpy copies of ``named``'s values, None kept None) for
    the small parameter arrays of GaussianScore and TimeReLUScore."""
    dev = torch_device(common_device(named))
    like = next(a for a in named.values() if a is not None and kind(a) != "other")
    with caller_stream(named.values()):
        host = [None if a is None else as_tensor(a, name).cpu().numpy() for name, a in named.items()]
    return (dev, _like_of(dev, like)), host


def to_device(dev_like, **arrays):
    """({name: float64 tensor on the device}, like) from host arrays."""
    dev, like = dev_like
    return {k: torch.as_tensor(np.ascontiguousarray(v, dtype=np.float64)).to(dev) for k, v in arrays.items()}, like


def gaussian_moments(x_train):
    """(mean, covariance with divisor n) of device training data (n, d), float64 tensors there."""
    from .._validate import training_data

    named = {"x_train": x_train}
    dev = torch_device(common_device(named))
    with caller_stream(named.values()):
        xa = training_data(x_train, ndim=2, convert=functools.partial(as_tensor, device=dev)).double()
        m = xa.mean(0)
        xc = xa - m
        return m, xc.T @ xc / xa.shape[0]


def schedule_tensors(t: torch.Tensor, rate: float):
    """(mu, sigma) = (exp(-rate t), sqrt(1 - exp(-2t))) of float64 times t > 0 (checked
    with one reduction on the device, with the host path's message)."""
    bad = ~((t > 0) & (t < np.inf))
    if bool(bad.any()):
        raise ValueError(f"t must be positive and finite, got {np.float64(float(t.flatten()[first_true(bad.flatten())]))!r}")
    return torch.exp(-rate * t), torch.sqrt(-torch.expm1(-2.0 * t))


def noise_schedule(t, rate: float):
    """(mu(t), sigma(t)) of bigstep.noise_schedule for t on a device, torch tensors there
    (float32 stays float32, as on the host)."""
    named = {"t": t}
    dev = torch_device(common_device(named))
    with caller_stream(named.values()):
        return schedule_tensors(as_tensor(t, "t", device=dev), rate)


def score_tensors(score, dev: torch.device) -> dict:
    """A built-in score's arrays as float64 tensors on ``dev`` (those of a score built from
    device arrays, else its host arrays read without a copy on the CPU)."""
    from ..scores import EmpiricalScore, GaussianScore

    if score._device is not None:
        return score._device
    conv = functools.partial(as_tensor, device=dev)
    if isinstance(score, EmpiricalScore):
        return {"data": conv(score.x_train, "x_train")}
    if isinstance(score, GaussianScore):
        return {"mean": conv(score.mean, "mean"), "vecs": conv(score.eigenvectors, "eigenvectors"),
                "lam": conv(score.eigenvalues, "eigenvalues")}
    return {"w1": conv(score.W1, "W1"), "b1": conv(score.b1, "b1"),
            "w2t": conv(np.ascontiguousarray(score.W2.T), "W2"), "b2": conv(score.b2, "b2")}


def call_score(score, x, t, raw: bool = False):
    """score(x, t) (or TimeReLUScore.r with ``raw``) for device arrays, in x's array type."""
    from .._arrays import wrap_like
    from ..optimal_score import optimal_score
    from .._validate import schedule_rate
    from ..scores import EmpiricalScore, GaussianScore, _points, _times
    from .sampler import gaussian_score, relu_output

    named = {"x": x, "t": t, **score._arrays()}
    dev = torch_device(common_device(named))
    with caller_stream(named.values()):
        conv = functools.partial(as_tensor, device=dev)
        xa = _points(x, score.dim, convert=conv)
        ta = _times(t, xa.shape[0], convert=conv)
        mu, sigma = schedule_tensors(ta, schedule_rate(score.schedule))
        if isinstance(score, EmpiricalScore):
            levels = (mu[0], sigma[0]) if mu.shape[0] == 1 else (mu, sigma)
            data = score.x_train if isinstance(score.x_train, torch.Tensor) else conv(score.x_train, "x_train")
            if score.one_d:
                out = optimal_score(xa[:, 0].contiguous(), data, *levels, method=score.method)[:, None]
            else:
                out = optimal_score(xa, data, *levels, method=score.method)
        else:
            p = score_tensors(score, dev)
            with ieee_matmul():
                if isinstance(score, GaussianScore):
                    out = gaussian_score(xa, p["mean"], p["vecs"], p["lam"], mu[:, None], sigma[:, None])
                else:
                    out = relu_output(xa, p["w1"], p["b1"], p["w2t"], p["b2"], ta[:, None].expand(xa.shape[0], 1))
                    out = out if raw else -out / sigma[:, None]
    return wrap_like(out, x)



# ------------------------------------------------------------------------ sampler


def _fused(score, name: str, dev: torch.device):
    """(kernel, extra arguments) of the fused loop of a built-in score on backend ``name``."""
    from ..scores import EmpiricalScore, GaussianScore

    k = _backend.kernels("sampler", name)
    p = score_tensors(score, dev)
    if isinstance(score, EmpiricalScore):
        if score.one_d:
            return k.sampler_empirical_1d, (torch.sort(p["data"], stable=True).values,)
        return k.sampler_empirical_nd, (p["data"].contiguous(),)
    if isinstance(score, GaussianScore):
        return k.sampler_gaussian, (p["mean"], p["vecs"], p["lam"])
    return k.sampler_relu, (p["w1"], p["b1"], p["w2t"], p["b2"])


def sample_reverse(score, n_samples, dim, tau, h, c, seed, x0, return_path, progress, backend):
    """bigstep.sample_reverse for device arrays (or backend torch/cuda); arguments checked,
    ``tau``/``h`` the host grid.  The fused kernels get the state, the path and the step
    tables as float64 tensors on the device."""
    from .._arrays import wrap_like
    from .._progress import Progress, run_in_chunks
    from ..sampler import _STREAM_STEPS, _STREAM_X0, _check_x0, _first_chunk
    from ..nets import TimeReLUScore
    from ..local import LocalScore
    from ..scores import EmpiricalScore, GaussianScore, noise_schedule
    from .random import normals

    builtin = isinstance(score, (EmpiricalScore, GaussianScore, TimeReLUScore))
    named = {"x0": x0, **(score._arrays() if builtin else {})}
    name, dev, conv = start(backend, "sampler", named)
    like = x0 if x0 is not None else (score._like if builtin else None)
    n, d, n_steps = n_samples, dim, h.shape[0]
    r = np.sqrt(2.0 * h) if c == 2.0 else np.zeros(n_steps)
    with caller_stream(named.values()):
        if x0 is None:
            x = normals(seed, _STREAM_X0, 0, n * d, device=dev).view(n, d)
        else:
            x = conv(x0, "x0").to(torch.float64, copy=True).contiguous()  # a copy: updated in place
            _check_x0(x, n, d)
        path = torch.empty((n_steps + 1, n, d) if return_path else (1, 1, 1), dtype=torch.float64, device=dev)
        if return_path:
            path[0] = x
        bar = Progress(n_steps, progress, "sample_reverse")
        if type(score) in (EmpiricalScore, GaussianScore, TimeReLUScore):  # subclasses may override __call__
            kernel, extra = _fused(score, name, dev)
            mu, sigma = noise_schedule(tau[:-1], kind=score.schedule)
            tables = torch.as_tensor(np.stack([h, r, mu, sigma, tau[:-1]])).to(dev)

            def chunk(k0, k1):
                kernel(x, k0, k1, *tables, c, seed, bool(return_path), path, *extra)

            run_in_chunks(chunk, n_steps, bar, first_chunk=_first_chunk(score, n, d, n_steps))
        else:  # any callable: the same update and noise, the score in the caller's array type
            if type(score) is LocalScore:  # stepped: the local kernels of this backend (torch where it has none)
                score = functools.partial(score.evaluate, backend=name if name in _backend.backends("local")
                                          else "torch")
            for k in range(n_steps):
                s = as_tensor(score(wrap_like(x, like), float(tau[k])), "score(x, t)", device=dev).double()
                if tuple(s.shape) != (n, d):
                    raise ValueError(f"score(x, t) must return shape ({n}, {d}) for x of shape ({n}, {d}), "
                                     f"got {tuple(s.shape)}")
                new = x + float(h[k]) * (x + c * s)
                if r[k] != 0:
                    new = new + float(r[k]) * normals(seed, _STREAM_STEPS, k * n * d, n * d, device=dev).view(n, d)
                x.copy_(new)
                if return_path:
                    path[k + 1] = x
                bar.update(k + 1)
    return wrap_like(path if return_path else x, like)


def sample_forward(x0, t, seed: int, schedule: str, backend):
    """bigstep.sample_forward for device arrays (or backend torch/cuda)."""
    from .._arrays import wrap_like
    from ..sampler import _STREAM_FORWARD, _forward_args
    from .._validate import schedule_rate
    from .random import normals

    named = {"x0": x0, "t": t}
    _, dev, conv = start(backend, "random", named)
    rate = schedule_rate(schedule)
    with caller_stream(named.values()):
        xa, ta = _forward_args(x0, t, convert=conv)
        mu, sigma = schedule_tensors(ta, rate)
        if ta.ndim == 1 and xa.ndim == 2:
            mu, sigma = mu[:, None], sigma[:, None]
        xi = normals(seed, _STREAM_FORWARD, 0, xa.numel(), device=dev).view(xa.shape)
        return wrap_like(mu * xa + sigma * xi, x0)


# ------------------------------------------------------------------------ trainer


def training_data_1d(x, backend, family: str):
    """(backend name, x as a float64 tensor on its device) for the 1-D trainers: shape
    (n,), n >= 1, finite, checked on the device."""
    from .._validate import training_data

    named = {"x": x}
    name, _, conv = start(backend, family, named)
    with caller_stream(named.values()):
        return name, training_data(x, ndim=1, convert=conv).to(torch.float64).contiguous()


class DeviceTrainer:
    """The sgd kernel of a device backend behind the host trainer's calling convention:
    the parameters and per-network state live on x's device between calls and are copied
    into the host arrays after each call (the trainer records from them); the loss sums,
    which the host resets at each record, are sent before each call.  On the CPU the
    tensors share the host arrays' memory (no copies)."""

    def __init__(self, kernel, x, lr, seed, w1, w2, b):
        self.kernel, self.x, self.dev = kernel, x, x.device
        put = lambda a: torch.from_numpy(a).to(self.dev)  # noqa: E731
        self.lr = put(np.ascontiguousarray(lr, dtype=np.float64))
        self.seed = put(np.ascontiguousarray(seed, dtype=np.uint64).view(np.int64))
        self.params = [put(a) for a in (w1, w2, b)]

    def __call__(self, x, mu, sigma, lr, seed, w1, w2, b, batch, train_inner, clip, k0, k1, diverged_step,
                 loss_sum, loss_count):
        state = [torch.from_numpy(a).to(self.dev) for a in (diverged_step, loss_sum, loss_count)]
        self.kernel(self.x, mu, sigma, self.lr, self.seed, *self.params, batch, train_inner, clip, k0, k1, *state)
        for host, t in zip((w1, w2, b, diverged_step, loss_sum, loss_count), self.params + state):
            if t.device.type != "cpu" or t.data_ptr() != host.ctypes.data:
                host[...] = t.cpu().numpy()
