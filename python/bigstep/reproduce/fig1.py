"""Figure 1: learned 1-D scores s_theta next to s* for several learning rates.

Setting (Appendix E): n = 20 standard-normal points per (mu, sigma) pair, kept for every
learning rate; width m = 1000; SGD with batch 50, all of (w1, w2, b) trained,
lr in {0.5, 0.1, 0.05} for {5k, 25k, 50k} steps; (mu, sigma) from t in {0.05, 0.2}.
The distance of each s_theta to s* is the exact excess risk
R_n(theta) - R_n(s*) = (1/n) sum_i E_i[(s_theta - s*)^2] (no sampling), averaged over the
last 20% of training and over 3 seeds (the SGD iterate keeps moving; the plot shows seed 0).
"""

from __future__ import annotations

import time

import numpy as np

from ..optimal_risk import optimal_risk
from ..optimal_score import optimal_score
from ._common import BATCH, LR_STEPS_1D, N_1D, TIMES_1D, WIDTH, fmt, late_excess_risk, noise_level, training_set
from ._parallel import map_jobs
from ._report import Report, pandas, plt

CLAIM = ("As the learning rate decreases, s_theta approaches s*; when sigma is smaller, s* is more "
         "irregular and a smaller learning rate is needed for s_theta to approach s*.")


def settings_for() -> dict:
    """Sizes: the paper's, also for quick=True (the whole figure is about 40 s of training on
    one core, so there is nothing to shorten)."""
    lrs = (0.5, 0.1, 0.05)
    return dict(lrs=lrs, steps={lr: LR_STEPS_1D[lr] for lr in lrs}, width=WIDTH, seeds=3, readings=50)


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    from ..training import train_sgd

    start = time.perf_counter()
    cfg = settings_for()
    lrs, steps = cfg["lrs"], cfg["steps"]
    pairs = [noise_level(t) for t in TIMES_1D]
    data = [training_set(seed, N_1D, index=k) for k in range(len(TIMES_1D))]
    jobs = [dict(k=k, lr=lr, sim=sim) for k in range(len(pairs)) for lr in lrs for sim in range(cfg["seeds"])]

    def one(job):
        (mu, sigma), x, n_steps = pairs[job["k"]], data[job["k"]], steps[job["lr"]]
        res = train_sgd(x, mu, sigma, lr=job["lr"], steps=n_steps, batch_size=BATCH, width=cfg["width"],
                        inner="gaussian", seed=seed + job["sim"], record=("excess_risk",),
                        record_every=max(1, n_steps // cfg["readings"]), progress=False)
        diverged = bool(res.diverged[0])
        return dict(t=TIMES_1D[job["k"]], mu=mu, sigma=sigma, lr=job["lr"], sim=job["sim"], steps=n_steps,
                    diverged=diverged, excess_risk=float("nan") if diverged else late_excess_risk(res.history, n_steps),
                    network=None if diverged else res.networks[0])

    rows = map_jobs(one, jobs, cost=[steps[j["lr"]] for j in jobs], progress=progress, label="fig1")
    curves, lines, ok = [], [], True
    for k, (t, (mu, sigma), x) in enumerate(zip(TIMES_1D, pairs, data)):
        grid = np.linspace(mu * x.min() - 3 * sigma, mu * x.max() + 3 * sigma, 600)
        mine = [r for r in rows if r["t"] == t]
        nets = {r["lr"]: (None if r["network"] is None else r["network"](grid)) for r in mine if r["sim"] == 0}
        curves.append(dict(mu=mu, sigma=sigma, x=x, grid=grid, s_star=optimal_score(grid, x, mu, sigma), nets=nets))
        gaps = [float(np.nanmean([r["excess_risk"] for r in mine if r["lr"] == lr])) for lr in lrs]
        r_star = optimal_risk(x, mu, sigma)
        dead = [lr for lr, v in nets.items() if v is not None and not np.any(v)]
        if dead:
            lines.append(f"(mu, sigma) = ({mu:.3f}, {sigma:.3f}): seed 0 at lr {dead} ended with every ReLU inactive "
                         "on the plotted range (s_theta = 0 there): the first large steps pushed the biases out")
        decreasing = all(a > b for a, b in zip(gaps, gaps[1:]))
        ok &= decreasing
        lines.append(f"(mu, sigma) = ({mu:.3f}, {sigma:.3f}): exact excess risk (late-training mean over "
                     f"{cfg['seeds']} seeds) " + ", ".join(f"lr {lr}: {fmt(g)}" for lr, g in zip(lrs, gaps))
                     + (" - decreases as lr decreases" if decreasing else " - does NOT decrease monotonically")
                     + f"; relative to R_n(s*) = {fmt(r_star)}: " + ", ".join(fmt(g / r_star) for g in gaps))
    n_div = sum(r["diverged"] for r in rows)
    if n_div:
        lines.append(f"{n_div} run(s) diverged")

    frame = pandas().DataFrame([{k: v for k, v in r.items() if k != "network"} for r in rows])
    data_path = out / "fig1_excess_risk.csv"
    frame.to_csv(data_path, index=False)
    plot = out / "fig1.png"
    _plot(curves, lrs, plot)
    settings = dict(cfg, n=N_1D, batch=BATCH, times=TIMES_1D, seed=seed,
                    setting="practical (Appendix E): w1 ~ N(0,1), w2 ~ N(0,1), b = 0, all trained",
                    distance="exact excess risk, mean over the last 20% of training and over seeds "
                             "(the paper shows one run per lr; the plot shows seed 0)", quick=quick)
    return Report("fig1", CLAIM, ok, lines, settings, [str(data_path), str(plot)], time.perf_counter() - start)


def _plot(curves, lrs, path):
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(curves), figsize=(5 * len(curves), 3.6))
    for ax, c in zip(np.atleast_1d(axes), curves):
        ax.plot(c["grid"], c["s_star"], color="black", lw=1.2, label="s*")
        for lr in lrs:
            if c["nets"][lr] is not None:
                ax.plot(c["grid"], c["nets"][lr], lw=1.5, label=f"lr = {lr}")
        ax.plot(c["mu"] * c["x"], np.zeros_like(c["x"]), "|", color="tab:blue", ms=10)
        ax.set_title(f"mu = {c['mu']:.2f}, sigma = {c['sigma']:.2f}")
        ax.set_xlabel("y")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("score")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)
