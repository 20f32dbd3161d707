"""Figure 2: excess risk of the learned score vs the learning rate (d = 1 and d = 10).

Setting (Appendix E): each simulation draws its own n = 20 training points (standard
normal); width m = 1000, batch 50, all parameters trained; lr in {0.5, 0.1, 0.05, 0.01}
for {5k, 25k, 50k, 200k} steps; 30 simulations; (mu, sigma) from t in {0.05, 0.2}.
d = 1: the excess risk R_n(theta) - R_n(s*) is computed exactly (closed-form risk and
adaptive quadrature for R_n(s*)), where the paper used 5,000 noise samples per point.
d = 10: a two-layer net R^10 -> R^10 trained the same way by the fused d-D trainer (no
torch needed), with the loss averaged over the coordinates as in the authors' notebook
(summing them, as eq. (5) reads, makes each step 10 times larger and lr = 0.5 diverges);
its excess risk (the sum over coordinates) is a Monte Carlo estimate with common random
numbers across the learning rates of a simulation (no closed form in d > 1).

Claim, as comparisons over simulations (sign tests, ``bigstep.reproduce._stats``): in every panel
(d, sigma), the excess risk falls at each step down in lr (0.5 > 0.1 > 0.05 > 0.01).
Quick: fewer steps and, in d = 10, width 200 (the settings are in summary.md).
"""

from __future__ import annotations

import time

import numpy as np

from . import _stats
from ._common import (BATCH, LR_STEPS_1D, N_1D, TIMES_1D, WIDTH, fmt, late_excess_risk, noise_level, replicate_seed,
                      training_set)
from ._parallel import map_jobs
from ._report import Report, mean_ci, pandas, plt

CLAIM = ("The excess risk of the learned score decreases as the learning rate decreases, in d = 1 and "
         "d = 10: a large learning rate keeps s_theta away from the memorizing s*.")

D_HIGH = 10
PANEL_NAMES = ("d=1", f"d={D_HIGH}")


def settings_for(quick: bool) -> dict:
    """Sizes.  quick: 8 simulations; d = 1 at half the paper's steps; d = 10 with width-200
    nets at 40% of the steps and 500 Monte Carlo draws per point."""
    lrs = (0.5, 0.1, 0.05, 0.01)
    if quick:
        return dict(lrs=lrs, steps={lr: LR_STEPS_1D[lr] // 2 for lr in lrs}, sims=8, width=WIDTH,
                    lrs_high=lrs, steps_high={lr: LR_STEPS_1D[lr] * 2 // 5 for lr in lrs}, sims_high=8,
                    width_high=200, n_mc=500)
    return dict(lrs=lrs, steps=dict(LR_STEPS_1D), sims=30, width=WIDTH, lrs_high=lrs, steps_high=dict(LR_STEPS_1D),
                sims_high=30, width_high=WIDTH, n_mc=5000)


def run(out, *, quick: bool, seed: int, device: str, progress: bool, panels=PANEL_NAMES) -> Report:
    start = time.perf_counter()
    cfg = settings_for(quick)
    rows, seconds = [], {}
    for name, panel in zip(PANEL_NAMES, (lambda: _panel_1d(cfg, seed, progress),
                                         lambda: _panel_high(cfg, seed, device, progress))):
        if name in panels:
            t0 = time.perf_counter()
            rows += panel()
            seconds[name] = round(time.perf_counter() - t0, 1)
    frame = pandas().DataFrame(rows)
    data = out / "fig2_excess_risk.csv"
    frame.to_csv(data, index=False)
    lines, comparisons = _verdict(frame)
    lines.append("panel wall times: " + ", ".join(f"{k}: {v:.0f} s" for k, v in seconds.items()))
    if tuple(panels) != PANEL_NAMES:
        lines.append(f"only the panel(s) {', '.join(panels)} ran: the verdict covers that part of the claim only")
    plot = out / "fig2.png"
    _plot(frame, plot)
    settings = dict(cfg, n=N_1D, batch=BATCH, times=TIMES_1D, seed=seed, d_high=D_HIGH,
                    excess_risk_1d="exact", excess_risk_high="Monte Carlo, n_mc noise draws per point",
                    loss_high="mean over batch and coordinates (the authors' notebook; the paper's eq. (5) sums the "
                              "coordinates, which makes every step d times larger and lr = 0.5 diverge in d = 10)",
                    quick=quick, panels=list(panels), panel_seconds=seconds)
    return Report("fig2", CLAIM, _stats.verdict(comparisons), lines, settings, [str(data), str(plot)],
                  time.perf_counter() - start, comparisons)


def _panel_1d(cfg, seed, progress):
    from ..training import train_sgd

    jobs = []
    for k, t in enumerate(TIMES_1D):
        mu, sigma = noise_level(t)
        for sim in range(cfg["sims"]):
            x = training_set(seed, N_1D, index=100 * k + sim)
            for lr in cfg["lrs"]:
                jobs.append(dict(t=t, mu=mu, sigma=sigma, sim=sim, lr=lr, steps=cfg["steps"][lr], x=x))

    def one(job):
        res = train_sgd(job["x"], job["mu"], job["sigma"], lr=job["lr"], steps=job["steps"], batch_size=BATCH,
                        width=cfg["width"], inner="gaussian", seed=replicate_seed(seed, job["sim"]),
                        record=("excess_risk",), record_every=max(1, job["steps"] // 50), progress=False)
        diverged = bool(res.diverged[0])
        gap = float("nan") if diverged else late_excess_risk(res.history, job["steps"])
        return dict(d=1, t=job["t"], mu=job["mu"], sigma=job["sigma"], replicate=job["sim"], lr=job["lr"],
                    steps=job["steps"], diverged=diverged, excess_risk=gap, standard_error=0.0)

    cost = [j["steps"] for j in jobs]
    return map_jobs(one, jobs, cost=cost, progress=progress, label="fig2 d=1")


def _panel_high(cfg, seed, device, progress):
    """d = 10: per (mu, sigma), every (lr, simulation) network trains in one call (simulation
    s has its own data set and seed); excess risk by Monte Carlo with its SE."""
    from ..training import excess_risk_mc, train_dsm

    rows = []
    lrs, sims = list(cfg["lrs_high"]), cfg["sims_high"]
    steps = [cfg["steps_high"][lr] for lr in lrs]
    for k, t in enumerate(TIMES_1D):
        mu, sigma = noise_level(t)
        xs = np.stack([training_set(seed, N_1D, D_HIGH, index=1000 + 100 * k + sim) for sim in range(sims)])
        res = train_dsm(xs, mu, sigma, lr=lrs, steps=steps, batch_size=BATCH, width=cfg["width_high"],
                        seed=[replicate_seed(seed, sim) for sim in range(sims)], device=device, record=("loss",),
                        progress=progress, coordinates="mean")
        for r in range(len(lrs) * sims):
            i, sim = divmod(r, sims)
            diverged = bool(res.diverged[r])
            gap, se = ((float("nan"), float("nan")) if diverged else
                       excess_risk_mc(res.network(r), xs[sim], mu, sigma, n_mc=cfg["n_mc"],
                                      seed=replicate_seed(seed, sim)))
            rows.append(dict(d=D_HIGH, t=t, mu=mu, sigma=sigma, replicate=sim, lr=lrs[i], steps=steps[i],
                             diverged=diverged, excess_risk=gap, standard_error=se))
    return rows


def _verdict(frame):
    """Per panel: mean excess risk per lr, and one comparison per step down in lr."""
    lines, comps = [], []
    for (d, t), group in frame.groupby(["d", "t"], sort=True):
        lrs = sorted(group["lr"].unique(), reverse=True)
        sigma = group["sigma"].iloc[0]
        stats = [mean_ci(group.loc[group["lr"] == lr, "excess_risk"]) for lr in lrs]
        n_div = [int(group.loc[group["lr"] == lr, "diverged"].sum()) for lr in lrs]
        lines.append(f"d = {d}, (mu, sigma) = ({group['mu'].iloc[0]:.2f}, {sigma:.2f}): mean excess risk +- 95% CI "
                     f"over {group['replicate'].nunique()} simulations: "
                     + ", ".join(f"lr {lr}: {fmt(m)} +- {fmt(h, 2)}" + (f" ({k} diverged)" if k else "")
                                 for lr, (m, h), k in zip(lrs, stats, n_div)))
        for a, b in zip(lrs, lrs[1:]):
            comps.append(_stats.Comparison(f"d = {d}, sigma {sigma:.2f}: excess risk at lr {a} > at lr {b}",
                                           _stats.paired(group, "lr", "excess_risk", a, b)))
    div = _stats.divergence_line(frame)
    if div:
        lines.append(div)
    return lines, _stats.evaluate(comps)


def _plot(frame, path):
    pyplot = plt()
    panels = sorted(frame["d"].unique())
    fig, axes = pyplot.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for ax, d in zip(np.atleast_1d(axes), panels):
        sub = frame[frame["d"] == d]
        for t, group in sub.groupby("t"):
            lrs = sorted(group["lr"].unique())
            stats = [mean_ci(group.loc[group["lr"] == lr, "excess_risk"]) for lr in lrs]
            ax.errorbar(lrs, [m for m, _ in stats], yerr=[h if np.isfinite(h) else 0 for _, h in stats], marker="o",
                        capsize=3, label=f"mu = {group['mu'].iloc[0]:.2f}, sigma = {group['sigma'].iloc[0]:.2f}")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(pyplot.NullFormatter())
        ax.set_xlabel("learning rate")
        ax.set_title(f"d = {d}")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("excess risk")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)
