"""The wheel and the sdist install and run outside the checkout (issue 9, item 1).

Runs tools/check_wheel.sh: builds the sdist and the CPU wheel from it, repairs the
wheel with auditwheel to a manylinux tag (libgomp vendored), installs it and the sdist
into fresh virtual environments and smoke-tests them (tools/wheel_smoke.py).  It
compiles the extension twice and takes several minutes, so it runs only when
BIGSTEP_TEST_WHEEL=1.  CI does not set it: .ci/run calls tools/check_wheel.sh itself
(README, "Release checks"); this test is the way to run the same check under pytest.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "check_wheel.sh"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("BIGSTEP_TEST_WHEEL") != "1", reason="set BIGSTEP_TEST_WHEEL=1 (several minutes)")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="auditwheel repairs Linux wheels")
def test_wheel_and_sdist_install_and_run(tmp_path):
    if not SCRIPT.exists() or shutil.which("bash") is None:
        pytest.skip("needs the checkout's tools/ and bash")
    env = {**os.environ, "PYTHON": sys.executable, "CHECK_WHEEL_OUT": str(tmp_path / "check-wheel")}
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"check_wheel.sh failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    assert "wheel_smoke: all checks passed" in proc.stdout
