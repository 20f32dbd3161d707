"""The kernel registry: every backend's namespace of a family has the same function names
and parameter names (bigstep._backend.FAMILIES), a backend is listed only where its
kernels exist, and nothing compiled or mirrored escapes the registry."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
import threading
import types

import numpy as np
import pytest

import bigstep
from bigstep import _backend

# Compiled functions that are not kernels of a family: build facts, instruction-set
# control, and the benchmarks' and tests' utilities.
_CORE_UTILITIES = {"available_isas", "compiler", "openmp_max_threads", "set_isa", "set_num_threads", "simd_level",
                   "exp_nonpos", "sampler_normals"}
# Numba modules that are shared helpers, not families: jit intrinsics, and the jit loops
# of bigstep.theory (tv: pure numerics with no other backend, called directly).
_NUMBA_HELPERS = {"_fast_exp", "_intrinsics", "tv"}


def param_names(fn) -> tuple:
    """Parameter names of a Python function, a wrapped or Numba-compiled one, or a
    pybind11 function (from its signature line; every overload must agree)."""
    while hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    fn = getattr(fn, "py_func", fn)
    if isinstance(fn, types.BuiltinFunctionType) or type(fn).__name__ == "builtin_function_or_method":
        name = fn.__name__
        sigs = re.findall(rf"^(?:\d+\. )?{name}\((.*?)\) ->", fn.__doc__ or "", flags=re.M)
        if not sigs:
            raise AssertionError(f"no signature line in the docstring of {name}")
        names = {tuple(p.split(":")[0].strip() for p in _split_params(s)) for s in sigs}
        if len(names) != 1:
            raise AssertionError(f"the overloads of {name} disagree on their parameters: {names}")
        return names.pop()
    return tuple(p for p in inspect.signature(fn).parameters)


def _split_params(s: str) -> list:
    """Split 'a: T[x, y], b: U = 1' at top-level commas."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def namespace_mismatches(family: str, ns) -> list:
    """What differs between a namespace and the family's spec ([] if nothing)."""
    spec = _backend.FAMILIES[family]
    problems = []
    have = {k for k in vars(ns) if not k.startswith("_")}
    for missing in sorted(set(spec) - have):
        problems.append(f"{missing} is missing")
    for extra in sorted(have - set(spec)):
        problems.append(f"{extra} is not in the spec")
    for name in sorted(set(spec) & have):
        got = param_names(getattr(ns, name))
        if got != spec[name]:
            problems.append(f"{name}{got} != {name}{spec[name]}")
    return problems


@pytest.mark.parametrize("family", sorted(_backend.FAMILIES))
def test_every_backend_namespace_matches_the_spec(family):
    listed = _backend.backends(family)
    assert "cpp" in listed and "numba" in listed, listed  # every family has both CPU backends
    for backend in listed:
        ns = _backend.kernels(family, backend)
        assert namespace_mismatches(family, ns) == [], (family, backend)


def test_the_check_sees_a_differing_namespace():
    """The conformance check fails for a missing function, an extra one or renamed
    parameters (so the test above can fail)."""
    good = _backend.kernels("metrics", "numba")
    assert namespace_mismatches("metrics", good) == []
    missing = types.SimpleNamespace(**{k: v for k, v in vars(good).items() if k != "mmd2"})
    assert namespace_mismatches("metrics", missing) == ["mmd2 is missing"]
    extra = types.SimpleNamespace(**vars(good), mmd3=good.mmd2)
    assert namespace_mismatches("metrics", extra) == ["mmd3 is not in the spec"]

    def nearest_neighbors(samples, training, k):  # a renamed parameter
        return None

    renamed = types.SimpleNamespace(**{**vars(good), "nearest_neighbors": nearest_neighbors})
    assert namespace_mismatches("metrics", renamed) == [
        "nearest_neighbors('samples', 'training', 'k') != nearest_neighbors('samples', 'train', 'k')"]


def test_compiled_signature_parser_reads_overloads():
    core = pytest.importorskip("bigstep._core")
    assert param_names(core.optimal_score_nd) == ("y", "x", "mu", "sigma", "what")  # float and double overloads
    assert param_names(core.gaussian_noise) == ("seed", "stream", "offset", "count", "dtype")


def test_every_compiled_and_numba_kernel_is_registered():
    """A new compiled function or Numba module must be declared in FAMILIES (or listed
    here as a utility): nothing is reachable around the registry."""
    registered = {fn for spec in _backend.FAMILIES.values() for fn in spec}
    core = pytest.importorskip("bigstep._core")
    compiled = {n for n in dir(core) if not n.startswith("_") and callable(getattr(core, n))}
    assert compiled - registered - _CORE_UTILITIES == set()
    assert registered - compiled == set(), "the spec names kernels the compiled module lacks"
    import bigstep._numba as nb

    modules = {m.name for m in pkgutil.iter_modules(nb.__path__)} - _NUMBA_HELPERS
    assert modules == set(_backend.FAMILIES), "a Numba module that is not a family, or a family without one"


def test_a_backend_is_listed_only_where_its_kernels_exist():
    for family in _backend.FAMILIES:
        for backend in _backend.BACKENDS:
            if backend in _backend.backends(family):
                continue
            with pytest.raises(ValueError, match=repr(backend)):
                _backend.kernels(family, backend)
    with pytest.raises(ValueError, match="unknown kernel family 'nope'"):
        _backend.kernels("nope", "cpp")
    with pytest.raises(ValueError, match="backend must be one of"):
        _backend.kernels("metrics", "fortran")


def test_numba_kernels_take_read_only_inputs_without_copies():
    """Read-only (and memory-mapped) inputs reach the Numba kernels as writeable aliases
    of the same memory."""
    from bigstep._arrays import writable_alias

    a = np.arange(12.0).reshape(3, 4)
    a.flags.writeable = False
    v = writable_alias(a)
    assert v.flags.writeable and np.shares_memory(v, a) and np.array_equal(v, a)
    w = np.arange(3.0)
    assert writable_alias(w) is w
    x = np.linspace(-1, 1, 50)
    x.flags.writeable = False
    y = np.linspace(-2, 2, 7)
    y.flags.writeable = False
    np.testing.assert_array_equal(bigstep.optimal_score(y, x, 0.9, 0.4, backend="numba"),
                                  bigstep.optimal_score(y.copy(), x.copy(), 0.9, 0.4, backend="numba"))


def test_memory_mapped_inputs_are_not_copied(backend, tmp_path, monkeypatch):
    """np.load(mmap_mode='r') data goes to the kernels without a copy (prepare returns
    a view of it; the kernels see the mapping's memory)."""
    from bigstep import _arrays

    x = np.random.default_rng(0).standard_normal((300, 3))
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert np.shares_memory(_arrays.prepare(xm, np.dtype(np.float64)), xm)
    seen = []
    real = _backend.kernels("optimal_score", backend)

    def spy(y, x, mu, sigma, what):
        seen.append(x)
        return real.optimal_score_nd(y, x, mu, sigma, what)

    fake = types.SimpleNamespace(optimal_score_1d=real.optimal_score_1d, optimal_score_nd=spy)
    monkeypatch.setattr(_backend, "kernels", lambda family, b: fake)
    y = x[:5] + 0.1
    got = bigstep.optimal_score(y, xm, 0.9, 0.5, backend=backend)
    assert np.shares_memory(seen[0], xm)
    monkeypatch.undo()
    np.testing.assert_array_equal(got, bigstep.optimal_score(y, x, 0.9, 0.5, backend=backend))


def test_numba_families_importable():
    """Every Numba family module imports (compiles) cleanly."""
    for family in _backend.FAMILIES:
        importlib.import_module(f"bigstep._numba.{family}")


def test_kernels_take_their_parameters_by_keyword():
    """The namespace's parameter names are usable: every backend accepts the spec's names
    as keywords (the Numba wrapper that aliases read-only inputs included)."""
    names = _backend.FAMILIES["random"]["gaussian_noise"]
    args = dict(zip(names, (7, 3, 5, 4, np.float64)))
    want = bigstep.gaussian_noise(7, 4, stream=3, offset=5)
    for backend in _backend.backends("random"):
        got = _backend.kernels("random", backend).gaussian_noise(**args)
        np.testing.assert_array_equal(np.asarray(got), want)


def test_resolve_names_an_unknown_family():
    with pytest.raises(ValueError, match="unknown kernel family 'nope'"):
        _backend.resolve("auto", np.zeros(3), family="nope")


@pytest.fixture
def scratch_package(tmp_path, monkeypatch):
    """A folder whose modules import as bigstep.<name> (appended to bigstep.__path__);
    the registry's caches are restored afterwards."""
    monkeypatch.setattr(bigstep, "__path__", [*bigstep.__path__, str(tmp_path)])
    monkeypatch.setattr(_backend, "_modules", dict(_backend._modules))
    monkeypatch.setattr(_backend, "_errors", dict(_backend._errors))
    before = set(sys.modules)
    _backend.kernels.cache_clear()
    importlib.invalidate_caches()
    yield tmp_path
    _backend.kernels.cache_clear()
    for name in set(sys.modules) - before:
        if name.startswith("bigstep."):
            del sys.modules[name]


@pytest.fixture
def scratch_torch(scratch_package, monkeypatch):
    """A stand-in for the torch backend's package (bigstep._scratch_torch, so a real
    bigstep._torch changes nothing): write its __init__.py and family modules."""
    pytest.importorskip("torch")
    real = _backend._module_name
    monkeypatch.setattr(_backend, "_module_name",
                        lambda family, backend: f"_scratch_torch.{family}" if backend == "torch" else real(family, backend))
    pkg = scratch_package / "_scratch_torch"
    pkg.mkdir()
    return pkg


def test_a_module_backend_missing_a_kernel_is_not_listed(scratch_torch):
    """A torch backend whose metrics module lacks a kernel is not listed for metrics, and
    asking for it is a ValueError naming what is missing (not an AttributeError)."""
    (scratch_torch / "__init__.py").write_text("")
    (scratch_torch / "metrics.py").write_text("def nearest_neighbors(samples, train, k):\n    return None\n")
    assert "torch" not in _backend.backends("metrics")
    with pytest.raises(ValueError, match="'torch'"):
        _backend.kernels("metrics", "torch")
    # a Numba module that lacks a kernel (found, not imported, by backends): kernels names it
    fake = types.ModuleType("bigstep._numba.metrics")
    fake.nearest_neighbors = lambda samples, train, k: None
    _backend._modules["_numba.metrics"] = fake
    with pytest.raises(ValueError, match=r"'numba' lacks the metrics kernels gaussian_kernel_sum, mmd2"):
        _backend.kernels("metrics", "numba")


def test_a_backend_package_that_fails_to_import_is_not_listed(scratch_torch):
    (scratch_torch / "__init__.py").write_text("raise ImportError('this torch is too old')\n")
    assert "torch" not in _backend.backends("metrics")  # no exception escapes the listing
    assert "cpp" in _backend.backends("metrics")


def test_a_module_may_use_the_registry_while_it_is_imported(scratch_package):
    """_load does not hold its lock across the import: a module that asks the registry for
    something at import time (here the compiled module) loads instead of deadlocking."""
    (scratch_package / "_probe_reentrant.py").write_text(
        "from bigstep import _backend\nCORE = _backend.core()\n")
    got = []
    t = threading.Thread(target=lambda: got.append(_backend._load("_probe_reentrant")), daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "_load deadlocked on a module that calls the registry while imported"
    assert got[0] is not None and got[0].CORE is _backend.core()
