"""Signals from any shell: the signal tests pass when the shell that started pytest
ignores SIGINT (``nohup``, a script's background job), and a reproduction stops
promptly on Ctrl-C without leaving a process behind.

A process started with SIGINT ignored passes that on to its children, and Python then
installs no KeyboardInterrupt handler in them: every child that a signal test interrupts
restores Python's own handler first (``signal.signal(SIGINT, default_int_handler)``),
and every wait on a child is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import proctree
import pytest

REPO = Path(__file__).resolve().parents[1]

# Every test that sends a signal or depends on what a signal does.
SIGNAL_TESTS = [
    "tests/test_sampler.py::test_ctrl_c_stops_a_long_run_within_a_second_or_two",
    "tests/test_determinism.py::test_sigint_stops_long_call_within_a_second",
    "tests/test_determinism.py::test_interrupted_call_leaves_library_usable",
    "tests/test_sweep.py::test_no_process_outlives_the_driver",
    "tests/test_sweep.py::test_tied_worker_dies_with_its_parent",
    "tests/test_signals.py::test_reproduction_jobs_stop_on_ctrl_c",
]

slow = pytest.mark.skipif(os.environ.get("BIGSTEP_TEST_SLOW") != "1", reason="slow: set BIGSTEP_TEST_SLOW=1")


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_JOBS = textwrap.dedent("""
    import signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from bigstep.reproduce._parallel import map_jobs

    def job(j):
        print(f"start {j}", flush=True)
        time.sleep(3.0)
        return j

    map_jobs(job, list(range(8)), workers=2)
    print("finished", flush=True)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_reproduction_jobs_stop_on_ctrl_c():
    """A reproduction's job pool (threads) starts no process, and Ctrl-C stops it after
    the jobs in flight: the 6 queued 3-s jobs are cancelled (before, the pool's `with`
    block ran every one of them: 12 s)."""
    with subprocess.Popen([sys.executable, "-c", _JOBS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as proc:
        try:
            assert proc.stdout.readline().startswith("start"), proc.stderr.read()
            time.sleep(0.5)
            assert proctree.descendants(proc.pid) == {}  # threads only: nothing can outlive it
            t0 = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail("the reproduction did not stop within 30 s of Ctrl-C")
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
        out, err = proc.stdout.read(), proc.stderr.read()
    assert "KeyboardInterrupt" in err and "finished" not in out, (out, err[-2000:])
    started = out.count("start") + 1  # the first line was read above
    assert started <= 4, f"{started} of 8 jobs ran after Ctrl-C"
    assert took < 6.0, f"took {took:.1f} s to stop (the jobs in flight need at most 3 s)"


@pytest.mark.slow
@slow
@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="POSIX signals")
def test_signal_tests_pass_with_sigint_ignored():
    """The whole signal test set, in a pytest started the way `nohup` starts it: SIGINT
    ignored, inherited by every child.  It must pass as it does from a terminal."""
    probe = subprocess.run([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"],
                           capture_output=True, text=True, preexec_fn=_ignore_sigint, timeout=60)
    assert probe.stdout.strip() == "True", probe.stdout  # the child really inherits the ignored SIGINT
    env = {**os.environ, "BIGSTEP_TEST_SLOW": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *SIGNAL_TESTS],
                          cwd=REPO, env=env, capture_output=True, text=True, preexec_fn=_ignore_sigint,
                          timeout=1200)
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    summary = proc.stdout.split("short test summary info")[-1]
    for name in ("test_ctrl_c_stops_a_long_run_within_a_second_or_two", "test_sigint_stops_long_call_within_a_second",
                 "test_no_process_outlives_the_driver[local-ctrl-c]", "test_reproduction_jobs_stop_on_ctrl_c"):
        assert any(line.startswith("PASSED tests/") and f"::{name}" in line for line in summary.splitlines()), \
            f"{name} did not pass:\n{tail}"
