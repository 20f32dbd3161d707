"""pytest plugin: run the suite's ``cuda`` backend cases on the CPU emulation of CUDA.

    PYTHONPATH=tools python -m pytest -p pytest_cuda_emu tests -k cuda --ignore=tests/test_cuda.py

The registry is told that the cuda backend can run, and the CUDA launchers
(bigstep._cuda_kernels) call bigstep._cuda_emu -- the same kernels compiled over
csrc/cuda/emu.hpp -- instead of bigstep._cuda.  Every test parametrized over the backends
then runs its cuda case here, through the public functions, without a GPU
(tools/gpu_check.sh --dry-run does this).  Tests that measure in a subprocess
(tests/test_memory.py) do not see the patch: leave them out.
"""

from __future__ import annotations


def pytest_configure(config):
    import bigstep._cuda_emu as emu
    from bigstep import _backend
    from bigstep._cuda_kernels import _common

    real = _backend.why_unavailable
    _backend.why_unavailable = lambda b: None if b == "cuda" else real(b)
    _common.module = lambda: emu  # every thread (the launchers look it up at each call)
    _backend.kernels.cache_clear()
