"""No O(q n) temporaries (docs/design.md section 1): the kernels stream over the data, so a
call's memory is O(inputs + outputs).

Each measurement runs in a fresh subprocess: import bigstep, build the inputs, warm up
with a tiny call (imports, numba compilation, thread pools), read the peak RSS
(ru_maxrss), make the big call, read the peak RSS again.  The inputs and outputs of
the big call are a few MB; an O(q n) buffer would be 320 GB (1-D) or 0.5 GB (d-D), and
even a per-query window buffer (q x ~700 terms at sigma = 1e-4) would be > 1 GB, so
a 100 MB limit separates them with a wide margin while allowing for allocator noise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

LIMIT_MB = 100.0

_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import bigstep

    backend, isa, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    if isa:
        import bigstep._core as core
        assert core.set_isa(isa), isa
    # ru_maxrss is in KiB on Linux, bytes on macOS
    unit = 1.0 / 1024 if sys.platform != "darwin" else 1.0 / 2**20
    rng = np.random.default_rng(0)
    if kind == "1d":
        n = q = 200_000
        x = rng.standard_normal(n)
        y = rng.uniform(-4.0, 4.0, q)
        def run(y, x):
            s = bigstep.optimal_score(y, x, 0.9, 1e-4, backend=backend)
            d = bigstep.optimal_score_derivatives(y, x, 0.9, 1e-4, backend=backend)
            lp = bigstep.log_density(y, x, 0.9, 1e-4, backend=backend)
            return s, d, lp
        small = (y[:16], x[:64])
    else:  # "nd": many points in d = 8; "wide": one point in a huge dimension
        n, d = (1, 200_000) if kind == "wide" else (8_000, 8)
        q = n
        x = rng.standard_normal((n, d))
        y = rng.standard_normal((q, d))
        def run(y, x):
            return (bigstep.optimal_score(y, x, 0.9, 0.5, backend=backend),
                    bigstep.log_density(y, x, 0.9, 0.5, backend=backend))
        small = (y[:16, :64], x[:64, :64])
    run(*small)  # warm-up: imports, JIT, thread pools
    run(*small)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    out = run(y, x)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    arrays = [a for o in out for a in (o if isinstance(o, tuple) else (o,))]
    ok = all(np.isfinite(a).all() for a in arrays) and all(a.shape[0] == q for a in arrays)
    print(json.dumps({"before_mb": before, "after_mb": after, "finite": bool(ok)}))
""")


def _measure(backend: str, kind: str) -> dict:
    isa = ""
    if backend == "cpp":
        import bigstep._core as core

        isa = core.simd_level()  # the ISA the backend fixture switched on
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, backend, isa, kind], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["1d", "nd", "wide"])
def test_peak_memory_is_o_inputs_plus_outputs(backend, kind):
    """1-D: n = q = 200,000 (s*, s*' and s*'', log p); d-D: n = q = 8,000, d = 8; wide:
    n = q = 1, d = 200,000 (1.6 MB per input; tiles sized for 132 queries and 128 points
    would take 0.8 GB): the call raises the peak RSS by less than 100 MB."""
    r = _measure(backend, kind)
    grew = r["after_mb"] - r["before_mb"]
    assert r["finite"], "outputs not finite or of the wrong length"
    assert grew < LIMIT_MB, f"peak RSS grew by {grew:.1f} MB ({r})"
