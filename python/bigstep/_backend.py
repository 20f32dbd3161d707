"""The kernel registry: which implementations exist and which one a call uses.

Backends:

- ``"cuda"``: ``bigstep._cuda_kernels.<family>``, Python launchers of the compiled CUDA
  kernels in ``bigstep._cuda`` (torch CUDA tensors in and out, on the caller's stream);
- ``"torch"``: ``bigstep._torch.<family>``, the kernels written in torch operations,
  on whatever device the tensors are on (torch tensors in and out);
- ``"cpp"``: ``bigstep._core``, the compiled CPU kernels (numpy arrays);
- ``"numba"``: ``bigstep._numba.<family>``, the JIT-compiled CPU mirror (numpy arrays).

Every family's kernels are declared once, in :data:`FAMILIES` (function names and their
parameter names); :func:`kernels` returns, for one family and one backend, a namespace
with exactly those functions, so a caller writes the same call whichever backend runs
it.  A backend is listed for a family (:func:`backends`) only where all of the family's
kernels exist.  Compiled modules are imported on first use; an import failure is
remembered and reported by :func:`bigstep.info` and in the error of a call that asks
for that backend.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import threading
import types

BACKENDS = ("cuda", "torch", "cpp", "numba")
CPU_BACKENDS = ("cpp", "numba")  # the order "auto" tries them in, for host arrays

_SAMPLER = ("x", "k0", "k1", "h", "r", "mu", "sigma", "tau", "c", "seed", "keep", "path")

#: family -> {kernel name: parameter names}.  The kernels' arguments are arrays of the
#: backend's kind (numpy for cpp/numba, device arrays for cuda/torch), already checked
#: by the public functions.
FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "optimal_score": {
        "optimal_score_1d": ("y", "x_sorted", "mu", "sigma", "what"),
        "optimal_score_nd": ("y", "x", "mu", "sigma", "what"),
        "optimal_score_vjp_y": ("y", "x", "mu", "sigma", "lse", "mean", "g"),
        "optimal_score_vjp_x": ("y", "x", "mu", "sigma", "lse", "a", "b", "u", "e", "f"),
    },
    "fgt": {  # the fast Gauss transform of the s* family (bigstep.fgt); mode 0 auto, 1 fgt
        "fgt_1d": ("y", "x_sorted", "mu", "sigma", "what", "mode"),
        "fgt_nd": ("y", "x", "mu", "sigma", "what", "mode"),
        "sampler_empirical_fgt_1d": _SAMPLER + ("data_sorted", "mode"),
        "sampler_empirical_fgt_nd": _SAMPLER + ("data", "mode"),
    },
    "metrics": {
        "gaussian_kernel_sum": ("x", "y", "bandwidth", "symmetric"),
        "mmd2": ("a", "b", "bandwidth", "unbiased"),
        "nearest_neighbors": ("samples", "train", "k"),
    },
    "random": {
        "gaussian_noise": ("seed", "stream", "offset", "count", "dtype"),
        "uniform": ("seed", "stream", "offset", "count", "dtype"),
        "philox4x32_10": ("c0", "c1", "c2", "c3", "k0", "k1"),
    },
    "relu_risk": {
        "segment_moments": ("t", "c", "sigma"),
        "hessian_gauss_newton": ("cls", "jpos", "w1", "w2", "b", "L", "U", "total", "scale", "wrt_all", "H"),
    },
    "random_features": {
        "rf_gram": ("x", "w", "mu", "sigma", "n_noise", "seed", "stream", "rho"),
        "rf_features": ("y", "w", "rho"),
    },
    "sampler": {
        "sampler_empirical_1d": _SAMPLER + ("data_sorted",),
        "sampler_empirical_nd": _SAMPLER + ("data",),
        "sampler_gaussian": _SAMPLER + ("mean", "vecs", "lam"),
        "sampler_relu": _SAMPLER + ("w1", "b1", "w2t", "b2"),
    },
    "local": {
        "local_posterior_mean": ("y", "x", "mu", "sigma", "rh", "rw", "padding", "equivariant", "what"),
    },
    "sgd": {
        "sgd_train": ("x", "mu", "sigma", "lr", "seed", "w1", "w2", "b", "batch", "train_inner", "clip", "k0", "k1",
                      "diverged_step", "loss_sum", "loss_count"),
    },
    "sgd_nd": {
        "sgd_nd_train": ("x", "data_of", "diffusion", "mu", "sigma", "times", "mus", "sigmas", "cdf", "norm", "lr",
                         "seed", "w1t", "b", "w2", "batch", "max_abs", "k0", "k1", "steps", "diverged_step",
                         "loss_sum", "loss_count"),
    },
}

_lock = threading.Lock()
_modules: dict[str, object] = {}
_errors: dict[str, str] = {}


def _load(name: str):
    """Import bigstep.<name> once; returns the module or None (reason in _errors).

    The lock guards the two dicts only, never the import itself: Python's import
    machinery serialises imports of one module, and a module that calls back into this
    registry while it is being imported (directly, or from a thread that holds that
    module's import lock) must not wait on a lock its own import holds."""
    with _lock:
        if name in _modules:
            return _modules[name]
        if name in _errors:
            return None
    try:
        mod = importlib.import_module(f"bigstep.{name}")
    except Exception as exc:  # ImportError, OSError from a missing libcudart, ...
        with _lock:
            _errors.setdefault(name, f"{type(exc).__name__}: {exc}")
        return None
    with _lock:
        return _modules.setdefault(name, mod)


def core():
    """The compiled CPU module, or None."""
    return _load("_core")


def cuda_module():
    """The compiled CUDA module, or None."""
    return _load("_cuda")


def cuda_devices() -> list:
    mod = cuda_module()
    if mod is None:
        return []
    try:
        return list(mod.devices())
    except Exception as exc:
        _errors.setdefault("_cuda_devices", str(exc))
        return []


def numba_error() -> str | None:
    try:
        import numba  # noqa: F401
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def torch_error() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install torch)"
    try:
        import torch  # noqa: F401
    except Exception as exc:
        return f"torch failed to import ({type(exc).__name__}: {exc})"
    return None


def why_unavailable(backend: str) -> str | None:
    """None if the backend can run here, otherwise the reason."""
    if backend == "cpp":
        return None if core() is not None else f"bigstep._core failed to import ({_errors.get('_core')})"
    if backend == "numba":
        err = numba_error()
        return None if err is None else f"numba failed to import ({err})"
    if backend == "torch":
        return torch_error()
    if backend == "cuda":
        if cuda_module() is None:
            reason = _errors.get("_cuda", "")
            if "No module named" in reason:
                return "bigstep was built without CUDA (no CUDA compiler found, or BIGSTEP_CUDA=OFF)"
            return f"bigstep._cuda failed to import ({reason})"
        if not cuda_devices():
            return "no CUDA device is visible"
        return None
    return f"unknown backend {backend!r}"


def available() -> list[str]:
    return [b for b in BACKENDS if why_unavailable(b) is None]


def _module_name(family: str, backend: str) -> str:
    return {"cpp": "_core", "cuda": f"_cuda_kernels.{family}", "numba": f"_numba.{family}",
            "torch": f"_torch.{family}"}[backend]


def _has_family(family: str, backend: str) -> bool:
    """Whether ``backend`` implements the kernels of ``family``.

    numba: its module exists (found, not imported: importing compiles it; a module that
    lacks a kernel is refused by :func:`kernels`, and tests/test_registry.py checks that
    each has every kernel).  torch and cuda (asked only once the backend is available,
    so the import is cheap): the module imports and has every kernel of the family."""
    if backend == "numba":
        try:
            return importlib.util.find_spec(f"bigstep.{_module_name(family, backend)}") is not None
        except ImportError:
            return False
    if backend in ("torch", "cuda"):
        name = _module_name(family, backend)
        try:
            if importlib.util.find_spec(f"bigstep.{name}") is None:  # no module for this family
                return False
        except ModuleNotFoundError:  # no bigstep._torch (or _cuda_kernels) package at all
            return False
        except Exception as exc:  # the package exists but fails to import
            with _lock:
                _errors.setdefault(name, f"{type(exc).__name__}: {exc}")
            return False
        mod = _load(name)
    else:
        mod = core()
    return mod is not None and not _missing(mod, family)


def _missing(mod, family: str) -> list[str]:
    """The kernels of ``family`` that ``mod`` lacks."""
    return [fn for fn in FAMILIES[family] if not callable(getattr(mod, fn, None))]


def backends(family: str) -> list[str]:
    """Backends that can run ``family`` here, best first (cuda, torch, cpp, numba)."""
    _check_family(family)
    return [b for b in BACKENDS if why_unavailable(b) is None and _has_family(family, b)]


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}; families: {', '.join(sorted(FAMILIES))}")


@functools.lru_cache(maxsize=None)
def kernels(family: str, backend: str) -> types.SimpleNamespace:
    """The kernels of ``family`` on ``backend``: a namespace whose attributes are the
    functions named in ``FAMILIES[family]``, with those parameter names.

    Raises ValueError if the backend cannot run here or has no kernels for the family."""
    _check_family(family)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    reason = why_unavailable(backend)
    if reason is not None:
        raise ValueError(f"backend {backend!r} is not available: {reason}")
    if not _has_family(family, backend):
        raise ValueError(f"backend {backend!r} has no {family} kernels; backends with them here: "
                         f"{backends(family)}")
    mod = _load(_module_name(family, backend))
    if mod is None:
        raise ValueError(f"backend {backend!r} failed to load its {family} kernels: "
                         f"{_errors.get(_module_name(family, backend))}")
    missing = _missing(mod, family)
    if missing:
        raise ValueError(f"backend {backend!r} lacks the {family} kernels {', '.join(missing)}")
    fns = {name: getattr(mod, name) for name in FAMILIES[family]}
    if backend == "numba":
        fns = {name: _host_arrays_as_mutable(fn) for name, fn in fns.items()}
    return types.SimpleNamespace(**fns)


def _host_arrays_as_mutable(fn):
    """Numba's explicit signatures ask for mutable arrays; its kernels never write their
    inputs, so read-only (or memory-mapped) inputs go in as writeable aliases, no copy."""
    from ._arrays import writable_alias

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return fn(*(writable_alias(a) for a in args), **{k: writable_alias(v) for k, v in kwargs.items()})

    return call


def resolve(backend: str, *arrays, family: str | None = None, **named) -> str:
    """Pick the backend for a call on ``arrays`` and the keyword ``named`` arrays (whose
    names the device errors use: "y is on cpu but x is on cuda:0").

    ``"auto"``: the inputs' device decides: host arrays run on cpp, then numba; device
    arrays on cuda (where built, a device is visible and the family has CUDA kernels),
    else torch (any device array: the device path converts it through DLPack).  A named
    backend that cannot run (or, given ``family``, has no kernels for it) raises
    ValueError listing what is available and why the others are not."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend must be one of 'auto', {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    if family is not None:
        _check_family(family)
    from ._arrays import common_device

    named = {**{f"argument {i}": a for i, a in enumerate(arrays)}, **named}
    device = common_device(named)
    if backend == "auto":
        if device == "cpu":
            for b in CPU_BACKENDS:
                if why_unavailable(b) is None and (family is None or _has_family(family, b)):
                    return b
            raise RuntimeError("no CPU backend is available: " + _report())
        candidates = []
        if device.startswith("cuda"):
            candidates.append("cuda")
        candidates.append("torch")  # torch reads any device array (CuPy, JAX, ... through DLPack)
        for b in candidates:
            if why_unavailable(b) is None and (family is None or _has_family(family, b)):
                return b
        raise ValueError(f"no backend runs {family or 'this function'} on {device} arrays here; " + _report())
    reason = why_unavailable(backend)
    if reason is not None:
        raise ValueError(f"backend {backend!r} is not available: {reason}. Available: {available()}; " + _report())
    if family is not None and not _has_family(family, backend):
        raise ValueError(f"backend {backend!r} has no {family} kernels; backends with them here: {backends(family)}")
    return backend


def _report() -> str:
    parts = []
    for b in BACKENDS:
        r = why_unavailable(b)
        parts.append(f"{b}: {'ok' if r is None else r}")
    return "; ".join(parts)
