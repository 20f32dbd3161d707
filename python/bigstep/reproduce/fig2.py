"""Figure 2: excess risk of the learned score vs the learning rate (d = 1 and d = 10).

Setting (Appendix E): each simulation draws its own n = 20 training points (standard
normal); width m = 1000, batch 50, all parameters trained; lr in {0.5, 0.1, 0.05, 0.01}
for {5k, 25k, 50k, 200k} steps; 30 simulations; (mu, sigma) from t in {0.05, 0.2}.
d = 1: the excess risk R_n(theta) - R_n(s*) is computed exactly (closed-form risk and
adaptive quadrature for R_n(s*)), where the paper used 5,000 noise samples per point.
d = 10: a two-layer net R^10 -> R^10 trained the same way, with the loss averaged over the
coordinates as in the authors' notebook (summing them, as eq. (5) reads, makes each step
10 times larger and lr = 0.5 diverges); its excess risk (the sum over coordinates) is a
Monte Carlo estimate with a stated standard error (no closed form in d > 1).
Quick: fewer simulations and shorter runs (the settings are in summary.md).
"""

from __future__ import annotations

import time

import numpy as np

from ._common import (BATCH, LR_STEPS_1D, N_1D, TIMES_1D, WIDTH, fmt, late_excess_risk, noise_level, torch_missing,
                      training_set)
from ._parallel import map_jobs
from ._report import Report, mean_ci, pandas, plt

CLAIM = ("The excess risk of the learned score decreases as the learning rate decreases, in d = 1 and "
         "d = 10: a large learning rate keeps s_theta away from the memorizing s*.")

D_HIGH = 10


def settings_for(quick: bool) -> dict:
    """Sizes.  quick: 6 simulations with half the paper's steps in d = 1; in d = 10, 3
    simulations of width-200 nets for lr in {0.5, 0.1, 0.05} at 40% of the paper's steps."""
    if quick:
        return dict(lrs=(0.5, 0.1, 0.05, 0.01), steps={0.5: 2_500, 0.1: 12_500, 0.05: 25_000, 0.01: 100_000},
                    sims=6, width=WIDTH, lrs_high=(0.5, 0.1, 0.05), steps_high={0.5: 2_000, 0.1: 10_000, 0.05: 20_000},
                    sims_high=3, width_high=200, n_mc=500)
    return dict(lrs=(0.5, 0.1, 0.05, 0.01), steps=dict(LR_STEPS_1D), sims=30, width=WIDTH,
                lrs_high=(0.5, 0.1, 0.05, 0.01), steps_high=dict(LR_STEPS_1D), sims_high=30, width_high=WIDTH,
                n_mc=5000)


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    start = time.perf_counter()
    cfg = settings_for(quick)
    rows = _panel_1d(cfg, seed, progress)
    skipped = torch_missing()
    if not skipped:
        rows += _panel_high(cfg, seed, device, progress)
    frame = pandas().DataFrame(rows)
    data = out / "fig2_excess_risk.csv"
    frame.to_csv(data, index=False)
    lines, ok = _verdict(frame)
    if skipped:
        lines.append(f"d = {D_HIGH} panel skipped: {skipped} (pip install 'bigstep[torch]')")
    plot = out / "fig2.png"
    _plot(frame, plot)
    settings = dict(cfg, n=N_1D, batch=BATCH, times=TIMES_1D, seed=seed, d_high=D_HIGH,
                    excess_risk_1d="exact", excess_risk_high="Monte Carlo, n_mc noise draws per point",
                    loss_high="mean over batch and coordinates (the authors' notebook; the paper's eq. (5) sums the "
                              "coordinates, which makes every step d times larger and lr = 0.5 diverge in d = 10)",
                    quick=quick)
    return Report("fig2", CLAIM, ok, lines, settings, [str(data), str(plot)], time.perf_counter() - start)


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
                        width=cfg["width"], inner="gaussian", seed=seed + job["sim"], record=("excess_risk",),
                        record_every=max(1, job["steps"] // 50), progress=False)
        diverged = bool(res.diverged[0])
        gap = float("nan") if diverged else late_excess_risk(res.history, job["steps"])
        return dict(d=1, t=job["t"], mu=job["mu"], sigma=job["sigma"], sim=job["sim"], lr=job["lr"],
                    steps=job["steps"], diverged=diverged, excess_risk=gap, standard_error=0.0)

    cost = [j["steps"] for j in jobs]
    return map_jobs(one, jobs, cost=cost, progress=progress, label="fig2 d=1")


def _panel_high(cfg, seed, device, progress):
    """d = 10: per (mu, sigma), every (lr, simulation) network trains in one batched torch call
    (simulation s has its own data set and seed); excess risk by Monte Carlo with its SE."""
    import numpy as np

    from ..training import excess_risk_mc, train_dsm

    rows = []
    lrs, sims = list(cfg["lrs_high"]), cfg["sims_high"]
    steps = [cfg["steps_high"][lr] for lr in lrs]
    for k, t in enumerate(TIMES_1D):
        mu, sigma = noise_level(t)
        xs = np.stack([training_set(seed, N_1D, D_HIGH, index=1000 + 100 * k + sim) for sim in range(sims)])
        res = train_dsm(xs, mu, sigma, lr=lrs, steps=steps, batch_size=BATCH, width=cfg["width_high"],
                        seed=[seed + sim for sim in range(sims)], device=device, record=("loss",),
                        progress=progress, num_threads=1 if device == "cpu" else None, coordinates="mean")
        for r in range(len(lrs) * sims):
            i, sim = divmod(r, sims)
            diverged = bool(res.diverged[r])
            gap, se = ((float("nan"), float("nan")) if diverged else
                       excess_risk_mc(res.network(r), xs[sim], mu, sigma, n_mc=cfg["n_mc"], seed=seed + sim))
            rows.append(dict(d=D_HIGH, t=t, mu=mu, sigma=sigma, sim=sim, lr=lrs[i], steps=steps[i],
                             diverged=diverged, excess_risk=gap, standard_error=se))
    return rows


def _paired(group, lr_a, lr_b):
    """Mean and 95% half-width of excess_risk(lr_a) - excess_risk(lr_b) over the simulations
    (each simulation trains every lr on the same data and draws, so the difference is paired)."""
    a = group[group["lr"] == lr_a].set_index("sim")["excess_risk"]
    b = group[group["lr"] == lr_b].set_index("sim")["excess_risk"]
    return mean_ci((a - b).dropna())


def _verdict(frame):
    """Supported when, for every panel, no step down in lr raises the excess risk significantly
    (paired 95% interval above zero) and the largest lr is significantly worse than the smallest."""
    lines, ok = [], True
    for (d, t), group in frame.groupby(["d", "t"], sort=True):
        lrs = sorted(group["lr"].unique(), reverse=True)
        mu, sigma = group["mu"].iloc[0], group["sigma"].iloc[0]
        stats = [mean_ci(group.loc[group["lr"] == lr, "excess_risk"]) for lr in lrs]
        n_div = [int(group.loc[group["lr"] == lr, "diverged"].sum()) for lr in lrs]
        steps = [_paired(group, a, b) for a, b in zip(lrs, lrs[1:])]
        rises = [m + h < 0 for m, h in steps]  # the smaller lr is significantly worse
        end_m, end_h = _paired(group, lrs[0], lrs[-1])
        separated = end_m - end_h > 0
        good = not any(rises) and separated
        ok &= good
        arrows = " ".join(("up" if r else ("down" if m - h > 0 else "flat")) for r, (m, h) in zip(rises, steps))
        lines.append(
            f"d = {d}, (mu, sigma) = ({mu:.2f}, {sigma:.2f}): mean excess risk +- 95% CI "
            + ", ".join(f"lr {lr}: {fmt(m)} +- {fmt(h, 2)}" + (f" ({k} diverged)" if k else "")
                        for lr, (m, h), k in zip(lrs, stats, n_div))
            + f"; going down in lr, paired changes: {arrows}"
            + f"; lr {lrs[0]} minus lr {lrs[-1]}: {fmt(end_m)} +- {fmt(end_h, 2)}"
            + (" - supports the claim" if good else " - does not support the claim"))
    return lines, ok


def _plot(frame, path):
    pyplot = plt()
    panels = sorted(frame["d"].unique())
    fig, axes = pyplot.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for ax, d in zip(np.atleast_1d(axes), panels):
        sub = frame[frame["d"] == d]
        for t, group in sub.groupby("t"):
            lrs = sorted(group["lr"].unique())
            stats = [mean_ci(group.loc[group["lr"] == lr, "excess_risk"]) for lr in lrs]
            ax.errorbar(lrs, [m for m, _ in stats], yerr=[h for _, h in stats], marker="o", capsize=3,
                        label=f"mu = {group['mu'].iloc[0]:.2f}, sigma = {group['sigma'].iloc[0]:.2f}")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(pyplot.NullFormatter())
        ax.set_xlabel("learning rate")
        ax.set_title(f"d = {d}")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("excess risk")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)
