"""Shared fixtures: every kernel test runs on every backend and every instruction set.

The ``backend`` fixture is parametrized (in ``pytest_generate_tests``, so nothing
probes the hardware at import time) over

- ``cuda``: skipped unless bigstep reports the CUDA backend available;
- ``cpp-<isa>`` for each instruction set of ``bigstep._core.available_isas()``
  (``cpp-baseline``, ``cpp-avx2``, ...): the fixture switches the compiled kernels to
  that ISA with ``bigstep._core.set_isa`` and restores ``"auto"`` afterwards; a single
  skipped ``cpp`` if the extension does not import;
- ``numba``: never skipped (numba is a hard dependency);
- ``torch``: the kernels in torch operations, run on CPU tensors (the public functions
  convert numpy inputs to torch and back), skipped without torch.

A device backend (``cuda``, ``torch``) runs a test only where it has the kernels of the
test's family (:func:`test_family`: the module ``test_<family>.py``, or an entry of
``FAMILY_OF_TEST`` or ``FAMILY_OF_MODULE``); elsewhere the test is skipped with the reason.

The fixture's value is the backend name to pass as ``backend=`` ("cuda", "cpp",
"numba", "torch").  ``all_backend_ids()`` and ``use_backend(id)`` give the same list and switch
to tests that compare backends with each other inside one test.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis: no example database in the checkout, no deadline (numba compiles on first
# use), derandomized by default so CI is reproducible; `--hypothesis-profile=dev` for
# fresh random examples.
settings.register_profile(
    "ci", database=None, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "dev", database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("BIGSTEP_HYPOTHESIS_PROFILE", "ci"))


# ------------------------------------------------------------------ what can run


@functools.lru_cache(maxsize=None)
def core_module():
    """bigstep._core, or None if it does not import (reason in core_error())."""
    try:
        import bigstep._core as core
    except Exception:  # ImportError, or an OSError from a broken build
        return None
    return core


@functools.lru_cache(maxsize=None)
def core_error() -> str:
    try:
        import bigstep._core  # noqa: F401
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


@functools.lru_cache(maxsize=None)
def cpp_isas() -> tuple:
    """Instruction sets compiled in and runnable here (empty without the extension)."""
    core = core_module()
    if core is None:
        return ()
    return tuple(s for s in core.available_isas().split(",") if s)


@functools.lru_cache(maxsize=None)
def cuda_reason() -> str | None:
    """None if bigstep says the cuda backend can run, else why not."""
    from bigstep import _backend

    return _backend.why_unavailable("cuda")


def all_backend_ids() -> list:
    """Every runnable configuration: 'cuda' (if available), 'cpp-<isa>' ..., 'numba'."""
    ids = ["cuda"] if cuda_reason() is None else []
    ids += [f"cpp-{isa}" for isa in cpp_isas()]
    return ids + ["numba"]


@contextlib.contextmanager
def use_backend(config: str):
    """Switch to a configuration id ('cpp-avx2', 'numba', ...); yields the backend name."""
    if config.startswith("cpp-"):
        core = core_module()
        isa = config[len("cpp-"):]
        if not core.set_isa(isa):
            raise RuntimeError(f"set_isa({isa!r}) returned False although available_isas() lists it")
        try:
            assert core.simd_level() == isa
            yield "cpp"
        finally:
            core.set_isa("auto")
    else:
        yield config


@functools.lru_cache(maxsize=None)
def torch_reason() -> str | None:
    """None if the torch backend can run, else why not."""
    from bigstep import _backend

    return _backend.why_unavailable("torch")


def _backend_params() -> list:
    params = [pytest.param("cuda", marks=pytest.mark.skipif(cuda_reason() is not None,
                                                            reason=f"cuda backend: {cuda_reason()}"))]
    if core_module() is None:
        params.append(pytest.param("cpp", marks=pytest.mark.skip(reason=f"bigstep._core: {core_error()}")))
    else:
        params += [pytest.param(f"cpp-{isa}", id=f"cpp-{isa}") for isa in cpp_isas()]
    params.append(pytest.param("numba"))
    params.append(pytest.param("torch", marks=pytest.mark.skipif(torch_reason() is not None,
                                                              reason=f"torch backend: {torch_reason()}")))
    return params


#: Tests outside a ``test_<family>.py`` module that exercise one family's kernels.
FAMILY_OF_TEST = {
    "test_fuzz.py::test_regression_dirac_term_of_a_tiny_inner_weight": "relu_risk",
    "test_sgd.py::test_train_gd_decreases_the_exact_risk": "relu_risk",  # exact GD: relu_risk kernels
    "test_interop.py::test_memory_mapped_data_are_not_copied": "relu_risk",  # DSMRisk first (then rf, sgd)
}
# test module -> the family all its tests exercise (where the module's name is not the family's)
FAMILY_OF_MODULE = {
    "test_training_fused.py": "sgd_nd",  # the fused d-D trainer; torch's loop: test_training_nd.py
}


def test_family(node) -> str | None:
    """The kernel family a test exercises (None: several, or none in particular)."""
    from bigstep import _backend

    module = os.path.basename(str(node.fspath))
    name = f"{module}::{node.originalname}"
    if name in FAMILY_OF_TEST:
        return FAMILY_OF_TEST[name]
    if module in FAMILY_OF_MODULE:
        return FAMILY_OF_MODULE[module]
    stem = module[len("test_"):-len(".py")] if module.startswith("test_") else ""
    return stem if stem in _backend.FAMILIES else None


test_family.__test__ = False  # a helper, not a test


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", _backend_params(), indirect=True)


# A backend need not implement every family (bigstep._backend.kernels raises "backend
# 'cuda' has no relu_risk kernels"): a test parametrized over the backends that reaches a
# family its backend lacks is skipped with that message, not failed -- on a GPU machine
# the cuda backend runs the families it has and skips the rest.
_NO_KERNELS = re.compile(r"backend '(\w+)' has no (\w+) kernels")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    exc = call.excinfo
    if exc is None or not exc.errisinstance(ValueError) or "backend" not in getattr(item, "fixturenames", ()):
        return
    m = _NO_KERNELS.search(str(exc.value))
    param = getattr(getattr(item, "callspec", None), "params", {}).get("backend")
    if m and param is not None and param.split("-")[0] == m.group(1):
        rep.outcome = "skipped"
        rep.longrepr = (str(item.path), item.location[1] or 0, f"backend {m.group(1)!r} has no {m.group(2)} kernels")


@pytest.fixture
def backend(request):
    """Backend name for `backend=`, with the ISA of the parameter switched on for cpp;
    a device backend without the kernels of the test's family skips the test."""
    if request.param in ("cuda", "torch"):
        from bigstep import _backend

        family = test_family(request.node)
        if family is not None and request.param not in _backend.backends(family):
            pytest.skip(f"backend {request.param!r} has no {family} kernels")
    with use_backend(request.param) as name:
        yield name


@pytest.fixture
def restore_threads():
    """Restores the compiled kernels' and numba's thread counts after a test changes them."""
    import numba

    core = core_module()
    before_core = core.openmp_max_threads() if core is not None else None
    before_numba = numba.get_num_threads()
    yield
    numba.set_num_threads(before_numba)  # first: numba's OpenMP start can reset the OpenMP count
    if core is not None:
        core.set_num_threads(before_core)


# --------------------------------------------------------------------- header


def pytest_report_header(config):
    try:
        from bigstep.info import format_info

        return format_info().splitlines()
    except Exception as exc:  # the header must never break the run
        return [f"bigstep: info() failed: {type(exc).__name__}: {exc}"]
