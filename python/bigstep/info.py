"""What is built and available: bigstep.info() and ``bigstep info``."""

from __future__ import annotations

import os

from . import _backend

__version__ = "0.1.0"


def info() -> dict:
    """What is built and what runs here: ``bigstep info`` on the command line prints it.

    Returns
    -------
    dict
        The version, the backends available (with the reasons for the others), the
        compiler, the instruction set the CPU kernels chose at run time, OpenMP threads,
        numba's version, the torch backend's families and devices, and the CUDA devices.

    Examples
    --------
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
    if _backend.why_unavailable("torch") is None:
        out["torch"] = _torch_info()
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


def _torch_info() -> dict:
    """The torch backend: torch's version, the families it has kernels for, the devices
    torch can run them on (its own view: CUDA/ROCm and MPS), its CPU threads."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return {"version": torch.__version__, "families": [f for f in _backend.FAMILIES if "torch" in _backend.backends(f)],
            "devices": devices, "threads": torch.get_num_threads(),
            "hip": getattr(torch.version, "hip", None), "cuda_runtime": getattr(torch.version, "cuda", None)}


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
    if "torch" in d:
        t = d["torch"]
        lines.append(f"torch: {t['version']}, {t['threads']} CPU threads; families: {', '.join(t['families'])}; "
                     f"devices: {', '.join(t['devices'])}")
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
