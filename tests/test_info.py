"""bigstep.info(), the backend registry's "auto", and the command line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import bigstep
from bigstep import _backend
from conftest import core_module


def test_info_keys():
    d = bigstep.info()
    assert d["version"] == bigstep.__version__
    assert isinstance(d["backends"], list) and d["backends"], "no backend available at all"
    assert set(d["backends"]) <= {"cuda", "torch", "cpp", "numba"}
    assert "numba" in d["backends"], d["unavailable"].get("numba")
    assert isinstance(d["unavailable"], dict)
    assert set(d["backends"]).isdisjoint(d["unavailable"])
    assert set(d["backends"]) | set(d["unavailable"]) == {"cuda", "torch", "cpp", "numba"}
    for why in d["unavailable"].values():
        assert isinstance(why, str) and why
    assert d["cpu_count"] == os.cpu_count()
    assert set(d["numba"]) >= {"version", "threads"}
    import numba

    assert d["numba"]["version"] == numba.__version__


def test_info_cpp_section():
    core = core_module()
    if core is None:
        pytest.skip("bigstep._core does not import")
    d = bigstep.info()
    assert "cpp" in d["backends"]
    c = d["cpp"]
    assert set(c) >= {"compiler", "simd", "simd_available", "openmp", "threads"}
    assert isinstance(c["compiler"], str) and c["compiler"]
    assert c["simd_available"] == core.available_isas().split(",")
    assert c["simd"] in c["simd_available"]
    # the default build has every ISA from baseline up; BIGSTEP_NATIVE=ON builds "native" only
    assert "baseline" in c["simd_available"] or c["simd_available"] == ["native"]
    assert isinstance(c["openmp"], bool)
    assert isinstance(c["threads"], int) and c["threads"] >= 1


def test_set_isa_switches_and_restores():
    """set_isa picks each runnable ISA, refuses unknown or unavailable ones, and "auto"
    restores the best one."""
    core = core_module()
    if core is None:
        pytest.skip("bigstep._core does not import")
    best = core.simd_level()
    try:
        for isa in core.available_isas().split(","):
            assert core.set_isa(isa) is True
            assert core.simd_level() == isa
            assert bigstep.info()["cpp"]["simd"] == isa
        assert core.set_isa("no-such-isa") is False
        for isa in ("baseline", "avx2", "avx512", "native"):
            if isa not in core.available_isas().split(","):
                assert core.set_isa(isa) is False
    finally:
        assert core.set_isa("auto") is True
    assert core.simd_level() == best


def test_auto_resolves_to_cpp_when_available():
    x = np.array([-1.0, 0.5, 2.0])
    y = np.array([0.0, 1.0])
    if core_module() is None:
        assert _backend.resolve("auto", y, x) == "numba"
        return
    assert _backend.resolve("auto", y, x) == "cpp"
    np.testing.assert_array_equal(bigstep.optimal_score(y, x, 0.9, 0.5),
                                  bigstep.optimal_score(y, x, 0.9, 0.5, backend="cpp"))
    np.testing.assert_array_equal(bigstep.gaussian_noise(3, 10), bigstep.gaussian_noise(3, 10, backend="cpp"))


def test_set_num_threads(restore_threads):
    """set_num_threads sets the compiled kernels' and numba's thread count (for the
    calling thread) and rejects non-integers and counts below 1."""
    import numba

    bigstep.set_num_threads(1)
    assert numba.get_num_threads() == 1
    if core_module() is not None and core_module().openmp:
        assert core_module().openmp_max_threads() == 1
    bigstep.set_num_threads(2)
    assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)
    if core_module() is not None and core_module().openmp:
        assert core_module().openmp_max_threads() == 2
    for bad, exc in ((0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError)):
        with pytest.raises(exc, match="n"):
            bigstep.set_num_threads(bad)


def test_set_num_threads_is_process_wide_for_the_compiled_kernels(restore_threads):
    """The compiled kernels' count set in one thread holds in every thread (a library
    called from worker threads must not silently ignore it)."""
    import threading

    core = core_module()
    if core is None or not core.openmp:
        pytest.skip("compiled extension without OpenMP")
    bigstep.set_num_threads(1)
    seen = []
    worker = threading.Thread(target=lambda: seen.append(core.openmp_max_threads()))
    worker.start()
    worker.join()
    assert seen == [1]


def test_version_matches_metadata():
    from importlib.metadata import version

    assert bigstep.__version__ == version("bigstep")


def _run(args, timeout=120):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _check_info_output(out):
    assert f"bigstep {bigstep.__version__}" in out
    m = re.search(r"backends available: (.*)", out)
    assert m, out
    listed = {b.strip() for b in m.group(1).split(",")}
    assert listed == set(bigstep.info()["backends"]), out
    if core_module() is not None:
        assert "SIMD" in out and core_module().simd_level() in out


def test_python_m_bigstep_info():
    _check_info_output(_run([sys.executable, "-m", "bigstep", "info"]))


def _console_script():
    exe = shutil.which("bigstep")
    if exe is None:  # installed next to this interpreter but not on PATH
        cand = os.path.join(os.path.dirname(sys.executable), "bigstep")
        exe = cand if os.path.exists(cand) else None
    if exe is None:
        pytest.fail("the `bigstep` console script is not installed (pyproject [project.scripts])")
    return exe


def test_console_script_info():
    _check_info_output(_run([_console_script(), "info"]))


def test_console_script_demo():
    """`bigstep demo --n 200 --q 200` prints a table with a row per (t, backend) and
    agreement between backends far below float64 noise."""
    out = _run([_console_script(), "demo", "--n", "200", "--q", "200"], timeout=300)
    assert "n = 200" in out and "q = 200" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*\d+\.\d+\s+\d", line)]
    backends = [b for b in _backend.backends("optimal_score") if b != "cuda"]
    assert len(rows) == 4 * len(backends), out
    assert {r[3] for r in rows} == set(backends)
    for r in rows:
        assert float(r[-1]) < 1e-10, f"backends disagree in the demo: {r}"


def test_cli_usage_errors():
    proc = subprocess.run([sys.executable, "-m", "bigstep"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "usage" in proc.stderr.lower()
    proc = subprocess.run([sys.executable, "-m", "bigstep", "frobnicate"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "invalid choice" in proc.stderr


def test_importing_bigstep_does_not_load_compiled_modules():
    """Importing bigstep loads neither the CUDA module nor (before first use) the CPU one."""
    code = "import sys, bigstep; print('bigstep._cuda' in sys.modules, 'bigstep._core' in sys.modules)"
    out = _run([sys.executable, "-c", code]).split()
    assert out[0] == "False", "importing bigstep imported bigstep._cuda"
    assert out[1] == "False", "importing bigstep imported bigstep._core"
