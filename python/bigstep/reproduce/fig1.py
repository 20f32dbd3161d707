"""Figure 1: learned 1-D scores s_theta next to s* for several learning rates.

Setting (Appendix E): n = 20 standard-normal points per (mu, sigma) pair, kept for every
learning rate; width m = 1000; SGD with batch 50, all of (w1, w2, b) trained,
lr in {0.5, 0.1, 0.05} for {5k, 25k, 50k} steps; (mu, sigma) from t in {0.05, 0.2}.
The distance of each s_theta to s* is the exact excess risk
R_n(theta) - R_n(s*) = (1/n) sum_i E_i[(s_theta - s*)^2] (no sampling).
"""

from __future__ import annotations

import time

import numpy as np

from ..optimal_risk import optimal_risk
from ..optimal_score import optimal_score
from ..relu_risk import excess_risk
from ._common import BATCH, LR_STEPS_1D, N_1D, TIMES_1D, WIDTH, fmt, noise_level, training_set
from ._report import Report, pandas, plt

CLAIM = ("As the learning rate decreases, s_theta approaches s*; when sigma is smaller, s* is more "
         "irregular and a smaller learning rate is needed for s_theta to approach s*.")


def settings_for(quick: bool) -> dict:
    lrs = (0.5, 0.1, 0.05)
    return dict(lrs=lrs, steps={lr: LR_STEPS_1D[lr] // (5 if quick else 1) for lr in lrs}, width=WIDTH)


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    from ..sgd import train_sgd

    start = time.perf_counter()
    cfg = settings_for(quick)
    lrs, steps, width = cfg["lrs"], cfg["steps"], cfg["width"]
    rows, curves, lines, ok = [], [], [], True
    for k, t in enumerate(TIMES_1D):
        mu, sigma = noise_level(t)
        x = training_set(seed, N_1D, index=k)
        grid = np.linspace(mu * x.min() - 3 * sigma, mu * x.max() + 3 * sigma, 600)
        curves.append(dict(t=t, mu=mu, sigma=sigma, x=x, grid=grid, s_star=optimal_score(grid, x, mu, sigma), nets={}))
        gaps, r_star = [], optimal_risk(x, mu, sigma)
        for lr in lrs:
            res = train_sgd(x, mu, sigma, lr=lr, steps=steps[lr], batch_size=BATCH, m=width, inner="gaussian",
                            seed=seed, record=("loss",), progress=progress)
            net, diverged = res.networks[0], bool(res.diverged[0])
            gap = float("nan") if diverged else excess_risk(net, x, mu, sigma)
            gaps.append(gap)
            curves[-1]["nets"][lr] = None if diverged else net(grid)
            rows.append(dict(t=t, mu=mu, sigma=sigma, lr=lr, steps=steps[lr], diverged=diverged, excess_risk=gap,
                             relative_excess_risk=gap / r_star))
        decreasing = all(a > b for a, b in zip(gaps, gaps[1:]))
        ok &= decreasing
        lines.append(f"(mu, sigma) = ({mu:.3f}, {sigma:.3f}): exact excess risk "
                     + ", ".join(f"lr {lr}: {fmt(g)}" for lr, g in zip(lrs, gaps))
                     + (" - decreases as lr decreases" if decreasing else " - does NOT decrease monotonically"))
    # the first pair (t = 0.05) has the smaller sigma: relative to the scale of its risk
    # (R_n(s*) ~ 1/sigma^2), its s_theta should be farther from s* at every lr
    small, large = rows[:len(lrs)], rows[len(lrs):]
    harder = all(a["relative_excess_risk"] > b["relative_excess_risk"] for a, b in zip(small, large))
    lines.append("at every lr the smaller-sigma fit is farther from s* relative to R_n(s*): "
                 + ("yes" if harder else "no") + " ("
                 + ", ".join(f"lr {r['lr']}: {fmt(r['relative_excess_risk'])} vs {fmt(q['relative_excess_risk'])}"
                             for r, q in zip(small, large)) + ")")
    ok &= harder

    frame = pandas().DataFrame(rows)
    data = out / "fig1_excess_risk.csv"
    frame.to_csv(data, index=False)
    plot = out / "fig1.png"
    _plot(curves, lrs, plot)
    settings = dict(cfg, n=N_1D, batch=BATCH, times=TIMES_1D, seed=seed,
                    setting="practical (Appendix E): w1 ~ N(0,1), w2 ~ N(0,1), b = 0, all trained",
                    distance="exact excess risk (paper: plot only)", quick=quick)
    return Report("fig1", CLAIM, ok, lines, settings, [str(data), str(plot)], time.perf_counter() - start)


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
