"""Figure 5: sharpness (largest Hessian eigenvalue of the risk) at the end of training
vs the learning rate, beside the linear-stability bound 2/(m lr) (paper eq. 8).

Setting (Appendix E and the authors' notebook): d = 1, n = 20 standard-normal points,
(mu, sigma) = (0.82, 0.57) (t = 0.2), width m = 1000, batch 50, all parameters trained,
lr = 0.5 * 10^linspace(0, -1, 11) with int(5000 * 0.5 / lr) steps.  The sharpness is
exact (Lanczos on the closed-form Hessian-vector product of R_n with respect to
(w1, w2, b)), where the notebook ran 20 power iterations on a grid-quadrature risk; it
is averaged over the readings in the last 20% of training, then over simulations.
"""

from __future__ import annotations

import time

import numpy as np

from ._common import BATCH, N_1D, WIDTH, fmt, noise_level, training_set
from ._parallel import map_jobs
from ._report import Report, mean_ci, pandas, plt

CLAIM = ("A larger learning rate leads to a flatter minimum: the sharpness at the end of training "
         "falls as the learning rate grows and stays below the stability bound 2/(m lr).")

T_FIG5 = 0.2
TOLERANCE = 1.10  # sharpness may exceed 2/(m lr) by 10%: SGD noise keeps theta near, not at, the minimum


def settings_for(quick: bool) -> dict:
    lrs = 0.5 * 10.0 ** np.linspace(0, -1, 6 if quick else 11)
    return dict(lrs=[float(v) for v in lrs], step_scale=0.5 if quick else 1.0, sims=2 if quick else 5,
                readings=50, width=WIDTH)


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    from ..sgd import train_sgd

    start = time.perf_counter()
    cfg = settings_for(quick)
    mu, sigma = noise_level(T_FIG5)
    jobs = [dict(sim=sim, lr=lr, steps=int(5000 * 0.5 / lr * cfg["step_scale"]))
            for sim in range(cfg["sims"]) for lr in cfg["lrs"]]
    data_sets = [training_set(seed, N_1D, index=200 + sim) for sim in range(cfg["sims"])]

    def one(job):
        x = data_sets[job["sim"]]
        steps = job["steps"]
        res = train_sgd(x, mu, sigma, lr=job["lr"], steps=steps, batch_size=BATCH, m=cfg["width"], inner="gaussian",
                        seed=seed + job["sim"], record_every=max(1, steps // cfg["readings"]),
                        record=("loss", "sharpness"), progress=False)
        h = res.history
        late = h[(h["step"] >= 0.8 * steps) & np.isfinite(h["sharpness"])]
        diverged = bool(res.diverged[0])
        return dict(sim=job["sim"], lr=job["lr"], steps=steps, diverged=diverged,
                    sharpness=float("nan") if diverged or late.empty else float(late["sharpness"].mean()),
                    bound=2.0 / (cfg["width"] * job["lr"]))

    rows = map_jobs(one, jobs, cost=[j["steps"] for j in jobs], progress=progress, label="fig5")
    frame = pandas().DataFrame(rows)
    data = out / "fig5_sharpness.csv"
    frame.to_csv(data, index=False)
    lines, ok = _verdict(frame)
    plot = out / "fig5.png"
    _plot(frame, plot)
    settings = dict(cfg, mu=mu, sigma=sigma, n=N_1D, batch=BATCH, seed=seed, tolerance=TOLERANCE,
                    sharpness="exact Lanczos on the closed-form HVP, wrt (w1, w2, b)", quick=quick,
                    left_out="the d = 10 and diffusion panels (middle, right) need a d-D Hessian; not reproduced")
    return Report("fig5", CLAIM, ok, lines, settings, [str(data), str(plot)], time.perf_counter() - start)


def _verdict(frame):
    lines = []
    agg = frame.groupby("lr", sort=True)[["sharpness", "bound"]].mean()
    lrs, sharp, bound = agg.index.to_numpy(), agg["sharpness"].to_numpy(), agg["bound"].to_numpy()
    fine = np.isfinite(sharp)
    rho = _spearman(lrs[fine], sharp[fine]) if fine.sum() > 2 else float("nan")
    falls = rho < -0.8
    runs = frame[~frame["diverged"] & np.isfinite(frame["sharpness"])]
    below = runs["sharpness"] <= TOLERANCE * runs["bound"]
    lines.append("mean sharpness per lr (bound 2/(m lr)): "
                 + ", ".join(f"lr {fmt(lr)}: {fmt(s)} ({fmt(b)})" for lr, s, b in zip(lrs, sharp, bound)))
    lines.append("sharpness / bound per lr: " + ", ".join(f"{fmt(s / b, 2)}" for s, b in zip(sharp, bound))
                 + " (1 = at the edge of stability)")
    lines.append(f"Spearman correlation of sharpness with lr: {rho:.2f} "
                 + ("(falls as lr grows)" if falls else "(does not fall clearly as lr grows)"))
    lines.append(f"{int(below.sum())} of {len(runs)} finished runs are below {TOLERANCE} x 2/(m lr); "
                 f"{int(frame['diverged'].sum())} diverged")
    return lines, bool(falls and below.all())


def _spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _plot(frame, path):
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(5, 3.6))
    agg = frame.groupby("lr", sort=True)["sharpness"]
    lrs = np.array(sorted(frame["lr"].unique()))
    stats = [mean_ci(v) for _, v in agg]
    ax.errorbar(lrs, [m for m, _ in stats], yerr=[h if np.isfinite(h) else 0 for _, h in stats], marker="o",
                capsize=3, label="sharpness at the end of training")
    ax.plot(lrs, frame.groupby("lr", sort=True)["bound"].mean(), "--", color="gray", label="2/(m lr)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("largest Hessian eigenvalue")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)
