"""Backend registry: which implementations exist and which one a call uses.

Backends: ``"cuda"`` (bigstep._cuda, GPU arrays), ``"cpp"`` (bigstep._core, the
compiled CPU extension), ``"numba"`` (pure-Python fallback, JIT-compiled).
Compiled modules are imported lazily on first use; an import failure is remembered
and reported by :func:`bigstep.info` and in the error of a call that asks for it.
"""

from __future__ import annotations

import importlib
import threading

BACKENDS = ("cuda", "cpp", "numba")

_lock = threading.Lock()
_modules: dict[str, object] = {}
_errors: dict[str, str] = {}


def _load(name: str):
    """Import bigstep.<name> once; returns the module or None (reason in _errors)."""
    with _lock:
        if name in _modules:
            return _modules[name]
        if name in _errors:
            return None
        try:
            mod = importlib.import_module(f"bigstep.{name}")
        except Exception as exc:  # ImportError, OSError from a missing libcudart, ...
            _errors[name] = f"{type(exc).__name__}: {exc}"
            return None
        _modules[name] = mod
        return mod


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


def why_unavailable(backend: str) -> str | None:
    """None if the backend can run here, otherwise the reason."""
    if backend == "cpp":
        return None if core() is not None else f"bigstep._core failed to import ({_errors.get('_core')})"
    if backend == "numba":
        err = numba_error()
        return None if err is None else f"numba failed to import ({err})"
    if backend == "cuda":
        if cuda_module() is None:
            reason = _errors.get("_cuda", "")
            if "No module named" in reason:
                return "bigstep was built without CUDA (no CUDA compiler found, or BIGSTEP_CUDA=OFF)"
            return f"bigstep._cuda failed to import ({reason})"
        if not cuda_devices():
            return "no CUDA device is visible"
        return "the CUDA kernels for this function are not implemented yet"
    return f"unknown backend {backend!r}"


def available() -> list[str]:
    return [b for b in BACKENDS if why_unavailable(b) is None]


def resolve(backend: str, *arrays) -> str:
    """Pick the backend for a call.

    ``"auto"`` picks ``cpp``, then ``numba`` (CPU inputs).  A named backend that
    cannot run raises ValueError listing what is available and why the others are not.
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend == "auto":
        for b in ("cpp", "numba"):
            if why_unavailable(b) is None:
                return b
        raise RuntimeError("no CPU backend is available: " + _report())
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of 'auto', {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    reason = why_unavailable(backend)
    if reason is not None:
        raise ValueError(f"backend {backend!r} is not available: {reason}. Available: {available()}; " + _report())
    return backend


def _report() -> str:
    parts = []
    for b in BACKENDS:
        r = why_unavailable(b)
        parts.append(f"{b}: {'ok' if r is None else r}")
    return "; ".join(parts)
