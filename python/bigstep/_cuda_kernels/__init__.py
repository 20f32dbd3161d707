"""The ``cuda`` backend: Python launchers (one module per kernel family, the names and
parameters of bigstep._backend.FAMILIES) over the compiled module bigstep._cuda.

Verification.  A CUDA build compiles everywhere nvcc does, but only a run on a GPU shows
that its kernels are right.  ``tools/gpu_check.sh`` runs the CUDA tests on a device and,
when they all pass, writes ``cuda_verified.json`` (the GPU, driver, CUDA version, date,
test counts and the *source digest* of the CUDA module it tested, a SHA-256 over every
source the module is built from, compiled into it as ``bigstep._cuda.source_digest``).
Committing that file here as ``verified.json`` records the verification; :func:`verification`
returns it only while the installed module was built from the same sources, so any later
change to the kernels reads "compiled, not verified on a device" again until
gpu_check.sh passes on it.
"""

from __future__ import annotations

import json
import pathlib

_VERIFIED = pathlib.Path(__file__).with_name("verified.json")


def verification(module=None) -> dict | None:
    """The device run that verified the installed CUDA module's sources, or None."""
    if module is None:
        from .. import _backend

        module = _backend.cuda_module()
    if module is None:
        return None
    try:
        record = json.loads(_VERIFIED.read_text())
    except (OSError, ValueError):
        return None
    digest = getattr(module, "source_digest", "")
    if not digest or record.get("source_digest") != digest or not record.get("passed"):
        return None
    return record


def status(module=None) -> str:
    """'verified on <GPU> (<date>)', or 'compiled, not verified on a device'."""
    record = verification(module)
    if record is None:
        return "compiled, not verified on a device"
    return f"verified on {record.get('gpu', 'a GPU')} ({record.get('date', 'undated')})"
