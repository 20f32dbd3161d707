"""What is built and available: bigstep.info() and ``bigstep info``."""

from __future__ import annotations

import os

from . import _backend

__version__ = "0.1.0"


def info() -> dict:
    """Version, backends available (with reasons for the others), compiler, the
    instruction set the CPU kernels chose at run time, OpenMP threads, CUDA devices.

    Example
    -------
    >>> import bigstep
    >>> "cpp" in bigstep.info()["backends"] or "numba" in bigstep.info()["backends"]
    True
    """
    out: dict = {"version": __version__}
    out["backends"] = _backend.available()
    out["unavailable"] = {b: r for b in _backend.BACKENDS if (r := _backend.why_unavailable(b)) is not None}
    core = _backend.core()
    if core is not None:
        out["cpp"] = {
            "compiler": core.compiler(),
            "simd": core.simd_level(),
            "simd_available": core.available_isas().split(","),
            "openmp": bool(core.openmp),
            "threads": core.openmp_max_threads(),
        }
    try:
        import numba

        out["numba"] = {"version": numba.__version__, "threads": numba.config.NUMBA_NUM_THREADS}
    except Exception:
        pass
    cuda = _backend.cuda_module()
    if cuda is not None:
        from ._cuda_kernels import status, verification

        out["cuda"] = {
            "status": status(cuda),  # "compiled, not verified on a device" until a device run passed
            "verified": verification(cuda),
            "compiled_archs": cuda.compiled_archs,
            "runtime_version": cuda.runtime_version(),
            "driver_version": cuda.driver_version(),
            "devices": _backend.cuda_devices(),
        }
    out["cpu_count"] = os.cpu_count()
    return out


def format_info(d: dict | None = None) -> str:
    d = info() if d is None else d
    lines = [f"bigstep {d['version']}", f"backends available: {', '.join(d['backends']) or 'none'}"]
    for b, why in d["unavailable"].items():
        lines.append(f"  {b}: unavailable ({why})")
    if "cpp" in d:
        c = d["cpp"]
        lines.append(f"cpp: {c['compiler']}; SIMD {c['simd']} (runnable: {', '.join(c['simd_available'])}); "
                     f"OpenMP {'on' if c['openmp'] else 'off'}, {c['threads']} threads")
    if "numba" in d:
        lines.append(f"numba: {d['numba']['version']}, {d['numba']['threads']} threads")
    if "cuda" in d:
        c = d["cuda"]
        lines.append(f"cuda: {c['status']}")
        lines.append(f"  archs {c['compiled_archs']}; runtime {c['runtime_version']}, driver {c['driver_version']}")
        for dev in c["devices"]:
            cc = ".".join(map(str, dev["compute_capability"]))
            lines.append(f"  device {dev['index']}: {dev['name']} (sm_{cc.replace('.', '')}, "
                         f"{dev['total_memory'] / 2**30:.1f} GiB)")
        if not c["devices"]:
            lines.append("  no CUDA device visible")
    return "\n".join(lines)
