"""asv benchmarks for the fast Gauss transform of s* (``method="fgt"``, bigstep.fgt).

n queries against n data points with x ~ N(0, I), y ~ N(0, 1.44 I), mu = 0.9, at sigma 0.1,
0.3 and 1 (the issue's settings), for 1-D and 2-D data, against the pairwise kernel on the
same inputs.  ``time_*`` is one call; ``track_pairs_per_second`` the equivalent rate
n^2 / (best of up to 3 calls), so the FGT and the pairwise kernel share one unit;
``track_max_order`` the largest expansion order the bound chose (a change of the bound or
of the box sizes shows there).  Sampler: n = 10^4 points in d = 2, 10^4 particles, 20 steps.
"""

from __future__ import annotations

import bigstep

try:
    from . import _common  # asv imports the suite as a package
except ImportError:  # imported as a plain module
    import _common

MU = 0.9
SIGMAS = [0.1, 0.3, 1.0]
BACKENDS = ["cpp", "numba"]


class _FgtBase:
    timeout = 300
    dims: int | None = None

    def setup(self, data, n, sigma, method, backend):
        reason = _common.bigstep_backend_error(backend, self.dims)
        if reason is not None:
            raise NotImplementedError(f"backend {backend!r} cannot run s* here: {reason}")
        self.x, self.y = data[n]
        self.pairs = float(n) * n
        bigstep.optimal_score(self.y[:64], self.x, MU, sigma, backend=backend, method=method)  # compile / load

    def time_optimal_score(self, data, n, sigma, method, backend):
        bigstep.optimal_score(self.y, self.x, MU, sigma, backend=backend, method=method)

    def track_pairs_per_second(self, data, n, sigma, method, backend):
        run = lambda: bigstep.optimal_score(self.y, self.x, MU, sigma, backend=backend, method=method)  # noqa: E731
        return self.pairs / _common.timed(run, repeat=3, warmup=False, max_seconds=2.0).best

    track_pairs_per_second.unit = "pairs/s"

    def track_max_order(self, data, n, sigma, method, backend):
        return bigstep.fgt_plan(self.y, self.x, MU, sigma, backend=backend)["max_order"]

    track_max_order.unit = "order"


class Fgt1D(_FgtBase):
    """s* of 1-D data by the FGT and by the pairwise kernel."""

    params = ([10_000, 100_000], SIGMAS, ["fgt", "pairwise"], BACKENDS)
    param_names = ["n", "sigma", "method", "backend"]
    dims = None

    def setup_cache(self):
        return {n: _common.score_inputs(n, n, None) for n in self.params[0]}


class Fgt2D(_FgtBase):
    """s* of 2-D data by the FGT and by the pairwise kernel."""

    params = ([10_000, 50_000], SIGMAS, ["fgt", "pairwise"], ["cpp"])
    param_names = ["n", "sigma", "method", "backend"]
    dims = 2

    def setup_cache(self):
        return {n: _common.score_inputs(n, n, 2) for n in self.params[0]}


class FgtSampler:
    """Reverse diffusion with EmpiricalScore(method=...): n = 10^4 points in d = 2."""

    params = (["fgt", "auto", "pairwise"],)
    param_names = ["method"]
    timeout = 300

    def setup_cache(self):
        return _common.score_inputs(10_000, 1, 2)[0]

    def setup(self, data, method):
        reason = _common.bigstep_backend_error("cpp", 2)
        if reason is not None:
            raise NotImplementedError(reason)
        self.score = bigstep.EmpiricalScore(data, method=method)

    def time_sample_reverse(self, data, method):
        bigstep.sample_reverse(self.score, 10_000, 2, n_steps=20, seed=0, backend="cpp")

    def track_particle_steps_per_second(self, data, method):
        run = lambda: bigstep.sample_reverse(self.score, 10_000, 2, n_steps=20, seed=0, backend="cpp")  # noqa: E731
        return 10_000 * 20 / _common.timed(run, repeat=2, warmup=False, max_seconds=5.0).best

    track_particle_steps_per_second.unit = "particle-steps/s"
