"""The fused CPU route of :func:`bigstep.train_dsm` and :func:`bigstep.train_diffusion`:
every network's SGD steps run in one compiled call (C++ kernel, or its Numba mirror),
no PyTorch needed.  torch stays the GPU route (``device="cuda"``, or ``backend="torch"``).

The networks, loss, update and stream map are those of the torch trainers
(:mod:`bigstep.training.problems`), so a fused run and a torch CPU run with the same seed draw
the same numbers and agree up to rounding:

    net(u) = (1/m) W2 relu(W1 u + b),   W1 (m, p),  b (m,),  W2 (d, m),
    L_j = (1/norm) sum_b ||net(u_b) + c_b||^2,   theta <- theta - m lr grad L_j,

with, for a network drawing from seed s, step j, slot b (flat slot e = j B + b), the
streams of :mod:`bigstep._streams`:
  init (NETWORK_INIT = 2):   W2 = gaussian_noise(s, (d, m), 2),
                             W1 = gaussian_noise(s, (m, p), 2, offset=d m) / sqrt(p),  b = 0
                             (:func:`bigstep.nets.init_params`);
  data index (SGD_INDEX = 3): i_b = min(floor(n * uniform(s, (steps, B), 3)[j, b]), n - 1);
  noise (SGD_NOISE = 4):     z_b = gaussian_noise(s, (steps, B, d), 4)[j, b, :];
  time (DIFFUSION_TIME = 6): k_b = #{k : cdf[k] <= uniform(s, (steps, B), 6)[j, b]} (diffusion);
  DSM:       u_b = mu x_{i_b} + sigma z_b,  c_b = z_b / sigma,  norm = B ("sum") or B d ("mean");
  diffusion: u_b = [mu(t) x_{i_b} + sigma(t) z_b; t],  t = times[k_b],  c_b = -z_b,  norm = B d.
The 1-D trainer (:mod:`bigstep.training.sgd1d`) uses streams 3 and 4 the same way.  Divergence is
handled as there: a step whose batch loss is not finite or above 1e16, or whose new
parameters are not finite or above ``max_abs``, is refused; the network keeps the
parameters before it, is marked diverged with diverged_step = the steps it made, and
stops; the others go on.  Results are bit-identical on one backend and instruction set
whatever the thread count or the chunking of the steps (records).
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from .. import _backend
from .._progress import Progress, run_in_chunks
from ..nets import init_params
from .recorder import History

__all__ = ["train_fused", "kernel", "using_threads"]


def kernel(backend: str):
    """The compiled step function of a CPU backend ("cpp" or "numba"): the "sgd_nd"
    family of the kernel registry (bigstep._backend.FAMILIES)."""
    return _backend.kernels("sgd_nd", backend).sgd_nd_train


@contextlib.contextmanager
def using_threads(backend: str, threads):
    """Run the block with the kernel of ``backend`` on ``threads`` threads (None: as set);
    the compiled kernels' count is process-wide, numba's per calling thread."""
    if threads is None:
        yield
        return
    if backend == "cpp":
        core = _backend.core()
        before = core.openmp_max_threads()
        core.set_num_threads(int(threads))
        try:
            yield
        finally:
            core.set_num_threads(before)
    else:
        import numba

        before = numba.get_num_threads()
        numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
        try:
            yield
        finally:
            numba.set_num_threads(before)


def _marks(steps_r, total, record_every):
    """Steps at which the loop stops for records: every record_every, each network's end."""
    marks = set(int(s) for s in steps_r if 0 < s <= total)
    if record_every:
        marks |= set(range(record_every, total + 1, record_every))
    marks.add(total)
    return sorted(m for m in marks if m > 0)


def train_fused(problem, *, lr, seeds, steps, batch_size, width, dtype, record_every, record, n_mc, progress,
                max_abs, label, backend, result_cls):
    """Train len(lr) * len(seeds) networks of ``problem`` (a DSM or diffusion problem of
    :mod:`bigstep.training.problems`: x, p, d, kind, norm(B), info(), excess_risk()) with the fused
    kernel of ``backend`` ("cpp" or "numba"); the records and result of the torch loop."""
    n_lr, n_seed = lr.shape[0], len(seeds)
    R = n_lr * n_seed
    lr_r = np.repeat(lr, n_seed)
    seed_pos = np.tile(np.arange(n_seed), n_lr)
    seed_r = np.array([seeds[k] for k in seed_pos], dtype=np.uint64)
    steps_r = np.repeat(np.asarray(steps if len(steps) > 1 else steps * n_lr, dtype=np.int64), n_seed)
    m, p, d = width, problem.p, problem.d
    init = [init_params(s, m, p, d) for s in seeds]
    W1t = np.ascontiguousarray(np.stack([init[k][0].T for k in seed_pos]), dtype=dtype)   # (R, p, m)
    b = np.ascontiguousarray(np.stack([init[k][1] for k in seed_pos]), dtype=dtype)      # (R, m)
    W2 = np.ascontiguousarray(np.stack([init[k][2] for k in seed_pos]), dtype=dtype)     # (R, d, m)

    if problem.kind == "dsm":
        x_sets = np.ascontiguousarray(problem.x, dtype=np.float64)                       # (S, n, d)
        data_of = np.ascontiguousarray(problem.data_of, dtype=np.int64)
        grid = (np.zeros(0),) * 4
        mu, sigma, diffusion = float(problem.mu), float(problem.sigma), False
    else:
        x_sets = np.ascontiguousarray(problem.x[None], dtype=np.float64)
        data_of = np.zeros(R, dtype=np.int64)
        grid = tuple(np.ascontiguousarray(a, dtype=np.float64)
                     for a in (problem.times, problem.mus, problem.sigmas, problem.cdf))
        mu, sigma, diffusion = 1.0, 1.0, True
    norm = float(problem.norm(batch_size))
    step_fn = kernel(backend)
    diverged_step = np.full(R, -1, dtype=np.int64)
    loss_sum = np.zeros(R)
    loss_count = np.zeros(R, dtype=np.int64)
    closed = np.zeros(R, dtype=bool)  # finished or diverged: no more rows
    rec_cols = [c for c in ("loss", "excess_risk") if c in record]
    if "excess_risk" in rec_cols:
        rec_cols = [c for c in rec_cols if c != "excess_risk"] + ["excess_risk", "excess_risk_se"]
    history = History(rec_cols, lr_r, seed_r)

    def params(r):
        return (W1t[r].T.astype(np.float64), b[r].astype(np.float64), W2[r].astype(np.float64))

    def record_rows(rows, step):
        for r in rows:
            row = []
            for c in rec_cols:
                if c == "loss":
                    row.append(float(loss_sum[r] / loss_count[r]) if loss_count[r] else float("nan"))
                elif c == "excess_risk":
                    row.extend(problem.excess_risk(params(r), r, n_mc))
            history.add(r, step, row)
            loss_sum[r] = 0.0
            loss_count[r] = 0

    total = int(steps_r.max()) if R else 0
    marks = _marks(steps_r, total, record_every)
    bar = Progress(total, progress, label)
    t_start = time.perf_counter()
    if record_every and rec_cols:
        record_rows(range(R), 0)
    idle = np.flatnonzero(steps_r == 0)
    if idle.size:
        if rec_cols and not record_every:
            record_rows(idle, 0)
        closed[idle] = True
    state = {"next": 0}

    def run(k0, k1):
        k = k0
        while k < k1:
            stop = min(k1, marks[state["next"]])
            step_fn(x_sets, data_of, diffusion, mu, sigma, *grid, norm, lr_r, seed_r, W1t, b, W2, batch_size,
                    float(max_abs), k, stop, steps_r, diverged_step, loss_sum, loss_count)
            k = stop
            fresh = np.flatnonzero((diverged_step >= 0) & ~closed)
            for r in fresh:
                history.diverged(r, int(diverged_step[r]))
            closed[fresh] = True
            if k == marks[state["next"]]:
                live = ~closed
                due = live & (steps_r == k)
                periodic = bool(record_every) and k % record_every == 0
                if rec_cols:
                    record_rows(np.flatnonzero(live if periodic else due), k)
                closed[due] = True
                state["next"] += 1

    run_in_chunks(run, total, bar)
    seconds = time.perf_counter() - t_start
    steps_done = np.where(diverged_step >= 0, diverged_step, steps_r)
    final = (np.ascontiguousarray(W1t.transpose(0, 2, 1), dtype=np.float64), b.astype(np.float64),
             W2.astype(np.float64))
    return result_cls(problem.kind, final, lr=lr_r, seed=seed_r, steps=steps_r, steps_done=steps_done,
                      diverged_step=diverged_step, history=history, seconds=seconds, info=problem.info())
