"""The batched SGD step and training loop of the d-D trainers (see :mod:`bigstep.training.problems`)."""

from __future__ import annotations

import time

import numpy as np

from .. import _streams as streams
from .._progress import Progress, run_in_chunks
from ..nets import init_params
from ..random import uniform
from ._args import LOSS_LIMIT, torch_module
from .recorder import History
from .result import TrainResult

_STREAM_INDEX = streams.SGD_INDEX
ND_RECORDS = ("loss", "excess_risk")
_BLOCK_ELEMS = 1 << 20  # CPU: hidden-layer elements per block of rows (a cache-sized block)
_MIN_BLOCK_ROWS = 256   # smaller blocks lose more to per-call overhead than they gain in cache


def _loss_and_grads(torch, W1, b, W2, u, zc, norm):
    """Loss (R,) and its exact gradients for a batch, in closed form (the reference for tests).

    net(u) = (1/m) W2 relu(W1 u + b) with W1 (R, m, p), b (R, m), W2 (R, d, m), inputs u
    (R, B, p); F = net(u) + zc (zc (R, B, d)); loss = sum_{b, j} F^2 / norm.
    Returns (loss, dW1, db, dW2) with the shapes of the parameters."""
    m = W1.shape[1]
    H = torch.relu(torch.baddbmm(b.unsqueeze(1), u, W1.transpose(1, 2)))
    F = torch.bmm(H, W2.transpose(1, 2)) / m + zc
    loss = (F * F).sum((1, 2)) / norm
    G = F * (2.0 / norm)
    dW2 = torch.bmm(G.transpose(1, 2), H) / m
    A = torch.bmm(G, W2) * (H > 0) / m
    return loss, torch.bmm(A.transpose(1, 2), u), A.sum(1), dW2


class _Batch:
    """Parameters of the active networks on the device, in the layouts the step wants:
    W1t (Ra, p, m) (= W1 transposed), b (Ra, m), W2 (Ra, d, m), with double buffers so an
    update is written out of place and a refused update costs nothing to undo."""

    def __init__(self, torch, W1, b, W2, lr, norm, max_abs):
        self.torch = torch
        self.W1t, self.b, self.W2 = W1.transpose(1, 2).contiguous(), b.contiguous(), W2.contiguous()
        self.nW1t, self.nb, self.nW2 = (torch.empty_like(a) for a in (self.W1t, self.b, self.W2))
        self.m = self.W1t.shape[2]
        self.lr = lr
        self.scale = (lr * (2.0 / norm)).view(-1, 1, 1)  # G = lr * dL/dS: theta -= m lr grad in one go
        self.norm = norm
        self.max_abs = max_abs
        self.block_elems = _BLOCK_ELEMS if W1.device.type == "cpu" else 1 << 62
        self._bufs = None

    def _buffers(self, rows):
        if self._bufs is None or self._bufs[0].shape[1] != rows:
            t = self.torch
            R, m = self.W1t.shape[0], self.m
            kw = dict(dtype=self.W1t.dtype, device=self.W1t.device)
            self._bufs = (t.empty((R, rows, m), **kw), t.empty((R, rows, m), **kw))
        return self._bufs

    def step(self, u, zc):
        """One SGD step on inputs u (Ra, B, p) with F = net(u) + zc.  Returns the batch
        loss (Ra,) and a bool mask (Ra,) of networks whose update was accepted.

        The batch is processed in blocks of rows so that the (Ra, rows, m) hidden layer
        stays in cache (the step is memory-bound); gradients are summed over the blocks
        before the update, so the result is the full-batch step."""
        t = self.torch
        B = u.shape[1]
        rows = min(B, max(_MIN_BLOCK_ROWS, self.block_elems // (self.m * u.shape[0])))
        Hb, Ab = self._buffers(rows)
        relu_backward = t.ops.aten.threshold_backward.grad_input  # A <- A * (H > 0), one fused pass
        loss = None
        for s0 in range(0, B, rows):
            s1 = min(B, s0 + rows)
            k = s1 - s0
            H, A = Hb[:, :k], Ab[:, :k]
            ub = u[:, s0:s1]
            t.baddbmm(self.b.unsqueeze(1), ub, self.W1t, out=H)
            H.clamp_(min=0.0)
            F = t.bmm(H, self.W2.transpose(1, 2)).div_(self.m).add_(zc[:, s0:s1])   # (Ra, k, d)
            part = (F * F).sum((1, 2))
            loss = part if loss is None else loss.add_(part)
            G = F.mul_(self.scale)                                                   # lr * dL/dS
            t.bmm(G, self.W2, out=A)                                                 # m lr dL/dH
            relu_backward(A, H, 0.0, grad_input=A)
            if s0 == 0:
                t.baddbmm(self.W2, G.transpose(1, 2), H, alpha=-1.0, out=self.nW2)
                t.baddbmm(self.W1t, ub.transpose(1, 2), A, alpha=-1.0, out=self.nW1t)
                t.sub(self.b, A.sum(1), out=self.nb)
            else:
                self.nW2.baddbmm_(G.transpose(1, 2), H, alpha=-1.0)
                self.nW1t.baddbmm_(ub.transpose(1, 2), A, alpha=-1.0)
                self.nb.sub_(A.sum(1))
        loss.div_(self.norm)
        norm_inf = t.linalg.vector_norm                                              # max |.|, NaN propagates
        big = t.maximum(norm_inf(self.nW1t, float("inf"), (1, 2)), norm_inf(self.nW2, float("inf"), (1, 2)))
        big = t.maximum(big, norm_inf(self.nb, float("inf"), 1))
        ok = (loss <= LOSS_LIMIT) & (big <= self.max_abs)                            # NaN compares False
        if not bool(ok.all()):
            bad = ~ok
            self.nW1t[bad] = self.W1t[bad]
            self.nW2[bad] = self.W2[bad]
            self.nb[bad] = self.b[bad]
        self.W1t, self.nW1t = self.nW1t, self.W1t
        self.W2, self.nW2 = self.nW2, self.W2
        self.b, self.nb = self.nb, self.b
        return loss, ok

    def select(self, keep):
        """Keep only the networks at positions ``keep`` (a long tensor)."""
        self.W1t, self.b, self.W2 = self.W1t[keep].contiguous(), self.b[keep].contiguous(), self.W2[keep].contiguous()
        self.nW1t, self.nb, self.nW2 = (self.torch.empty_like(a) for a in (self.W1t, self.b, self.W2))
        self.lr = self.lr[keep]
        self.scale = self.scale[keep]
        self._bufs = None

    def params_numpy(self):
        """(W1 (Ra, m, p), b (Ra, m), W2 (Ra, d, m)) as float64 numpy copies."""
        f = lambda a: a.detach().to("cpu", self.torch.float64).numpy().copy()  # noqa: E731
        return np.ascontiguousarray(f(self.W1t).transpose(0, 2, 1)), f(self.b), f(self.W2)


# ------------------------------------------------------------------ the shared training loop


def train_networks(problem, *, lr, seeds, steps, batch_size, width, device, dtype, record_every, record, n_mc,
           progress, max_abs, label, num_threads):
    """Train len(lr) * len(seeds) networks of ``problem`` (torch threads set for the call)."""
    torch = torch_module()
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _train_loop(torch, problem, lr=lr, seeds=seeds, steps=steps, batch_size=batch_size, width=width,
                           device=device, dtype=dtype, record_every=record_every, record=record, n_mc=n_mc,
                           progress=progress, max_abs=max_abs, label=label)
    finally:
        if num_threads is not None:
            torch.set_num_threads(before)


def _train_loop(torch, problem, *, lr, seeds, steps, batch_size, width, device, dtype, record_every, record, n_mc,
                progress, max_abs, label):
    """Train len(lr) * len(seeds) networks of ``problem`` (see _DSMProblem/_DiffusionProblem)."""
    n_lr, n_seed = lr.shape[0], len(seeds)
    R = n_lr * n_seed
    lr_r = np.repeat(lr, n_seed)
    seed_pos = np.tile(np.arange(n_seed), n_lr)          # position in the seed list
    seed_r = np.array([seeds[k] for k in seed_pos], dtype=np.uint64)
    steps_r = np.repeat(np.asarray(steps if len(steps) > 1 else steps * n_lr, dtype=np.int64), n_seed)
    m, p, d = width, problem.p, problem.d

    init = [init_params(s, m, p, d) for s in seeds]
    W1 = torch.as_tensor(np.stack([init[k][0] for k in seed_pos]), dtype=dtype, device=device)
    b = torch.as_tensor(np.stack([init[k][1] for k in seed_pos]), dtype=dtype, device=device)
    W2 = torch.as_tensor(np.stack([init[k][2] for k in seed_pos]), dtype=dtype, device=device)
    final = [np.empty((R, m, p)), np.empty((R, m)), np.empty((R, d, m))]

    active = np.arange(R)
    batch = _Batch(torch, W1, b, W2, torch.as_tensor(lr_r, dtype=dtype, device=device), problem.norm(batch_size),
                   max_abs)
    diverged_step = np.full(R, -1, dtype=np.int64)
    steps_done = np.zeros(R, dtype=np.int64)
    loss_sum = torch.zeros(R, dtype=torch.float64, device=device)
    last_record = np.zeros(R, dtype=np.int64)
    rec_cols = [c for c in ND_RECORDS if c in record]
    if "excess_risk" in rec_cols:
        rec_cols = [c for c in rec_cols if c != "excess_risk"] + ["excess_risk", "excess_risk_se"]
    history = History(rec_cols, lr_r, seed_r)
    problem.setup(torch, device, dtype)

    def write_back(positions):
        W1n, bn, W2n = batch.params_numpy()
        for k in positions:
            r = active[k]
            final[0][r], final[1][r], final[2][r] = W1n[k], bn[k], W2n[k]

    def record_rows(positions, step):
        values = {}
        if "excess_risk" in rec_cols:
            W1n, bn, W2n = batch.params_numpy()
            for k in positions:
                values[k] = problem.excess_risk((W1n[k], bn[k], W2n[k]), active[k], n_mc)
        losses = loss_sum.cpu().numpy()
        for k in positions:
            r = active[k]
            row = []
            for c in rec_cols:
                if c == "loss":
                    row.append(float(losses[k] / (step - last_record[r])) if step > last_record[r] else float("nan"))
                elif c == "excess_risk":
                    row.extend(values[k])
            history.add(r, step, row)
            last_record[r] = step
        loss_sum[positions] = 0.0

    def leave(stop):
        """Write back the networks at positions ``stop`` and take them out of the batch."""
        nonlocal active, loss_sum
        write_back(stop)
        keep = np.setdiff1d(np.arange(active.shape[0]), np.array(stop, dtype=np.int64))
        batch.select(torch.as_tensor(keep, device=device))
        loss_sum = loss_sum[torch.as_tensor(keep, device=device)]
        active = active[keep]

    total = int(steps_r.max()) if R else 0
    bar = Progress(total, progress, label)
    t_start = time.perf_counter()
    if record_every and rec_cols:
        record_rows(list(range(R)), 0)
    idle = np.flatnonzero(steps_r == 0).tolist()  # steps = 0: no training, the initial weights
    if idle:
        if rec_cols and not record_every:
            record_rows(idle, 0)  # their end record
        leave(idle)

    def chunk(k0, k1):
        nonlocal loss_sum
        if active.shape[0] == 0:
            return
        live = np.unique(seed_pos[active])
        u_all, zc_all = problem.draws(live, [seeds[s] for s in live], k0, k1, batch_size)  # (C, S, B, .)
        where = np.empty(n_seed, dtype=np.int64)
        where[live] = np.arange(live.shape[0])

        def gather_rows():
            rows = where[seed_pos[active]]
            same = rows.shape[0] == live.shape[0] and bool((rows == np.arange(rows.shape[0])).all())
            return None if same else torch.as_tensor(rows, device=device)

        rows = gather_rows()
        for j in range(k0, k1):
            u, zc = u_all[j - k0], zc_all[j - k0]
            if rows is not None:  # several networks share a seed, or some left the batch
                u, zc = u[rows], zc[rows]
            loss, ok = batch.step(u, zc)
            loss_sum += loss.to(torch.float64)
            ok_np = ok.cpu().numpy()
            done = j + 1
            stop = []
            if not ok_np.all():
                bad = np.flatnonzero(~ok_np)
                for k in bad:
                    r = active[k]
                    diverged_step[r] = j
                    steps_done[r] = j
                    history.diverged(r, j)
                stop.extend(bad.tolist())
            due = ok_np & (steps_r[active] == done)                    # finished with this step
            if rec_cols and (due.any() or (record_every and done % record_every == 0)):
                rec = np.flatnonzero(ok_np if record_every and done % record_every == 0 else due)
                record_rows(rec.tolist(), done)
            finished = np.flatnonzero(due)
            steps_done[active[finished]] = done
            stop.extend(finished.tolist())
            if stop:
                leave(stop)
                if active.shape[0] == 0:
                    return
                rows = gather_rows()  # the chunk's draws stay valid for the networks left

    run_in_chunks(chunk, total, bar)
    seconds = time.perf_counter() - t_start
    return TrainResult(problem.kind, tuple(final), lr=lr_r, seed=seed_r, steps=steps_r, steps_done=steps_done,
                       diverged_step=diverged_step, history=history, seconds=seconds, info=problem.info())


def index_draws(seed, k0, k1, batch_size, n):
    u = uniform(seed, (k1 - k0, batch_size), stream=_STREAM_INDEX, offset=k0 * batch_size)
    return np.minimum((u * n).astype(np.int64), n - 1)
