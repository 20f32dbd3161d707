"""Figure 1: learned 1-D scores s_theta next to s* for several learning rates.

Setting (Appendix E): n = 20 standard-normal points, width m = 1000; SGD with batch 50,
all of (w1, w2, b) trained, lr in {0.5, 0.1, 0.05} for {5k, 25k, 50k} steps;
(mu, sigma) from t in {0.05, 0.2}.  The paper shows one run per lr; here each of R
replicates draws its own 20 points (used for both noise levels, so the comparison
across sigma is paired; the paper drew one set per noise level) and its own SGD seed,
and trains every lr on them.  The distance of s_theta to s* is the exact excess risk
R_n(theta) - R_n(s*) = (1/n) sum_i E_i[(s_theta - s*)^2] (no sampling), averaged over
the readings in the last 20% of training (the SGD iterate keeps moving), and its
relative size excess / ||s*||^2 with ||s*||^2 = (1/n) sum_i E_i[s*(Y)^2] = 1/sigma^2 - R_n(s*).

Claim, as comparisons over replicates (sign tests, ``bigstep.reproduce._stats``):
  - at each noise level, the excess risk falls at each step down in lr (0.5 > 0.1 > 0.05);
  - at each lr, s_theta is relatively farther from s* at the smaller sigma (so a smaller
    lr is needed there to approach s*).
The plot shows replicate 0.  Quick and full runs use the paper's sizes (the figure is
cheap); they differ in the number of replicates.
"""

from __future__ import annotations

import time

import numpy as np

from ..optimal_score import optimal_score
from . import _stats
from ._common import (BATCH, LR_STEPS_1D, N_1D, TIMES_1D, WIDTH, fmt, late_excess_risk, noise_level, replicate_seed,
                      score_norm2, training_set)
from ._parallel import map_jobs
from ._report import Report, mean_ci, pandas, plt

CLAIM = ("As the learning rate decreases, s_theta approaches s*; when sigma is smaller, s* is more "
         "irregular and a smaller learning rate is needed for s_theta to approach s*.")


def settings_for(quick: bool) -> dict:
    """The paper's sizes in both; quick: 12 replicates, full: 30 (Figure 2's count)."""
    lrs = (0.5, 0.1, 0.05)
    return dict(lrs=lrs, steps={lr: LR_STEPS_1D[lr] for lr in lrs}, width=WIDTH, replicates=12 if quick else 30,
                readings=50)


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    from ..training import train_sgd

    start = time.perf_counter()
    cfg = settings_for(quick)
    lrs, steps, reps = cfg["lrs"], cfg["steps"], cfg["replicates"]
    pairs = [noise_level(t) for t in TIMES_1D]
    data = [training_set(seed, N_1D, index=r) for r in range(reps)]
    norms = {(r, k): score_norm2(data[r], *pairs[k]) for r in range(reps) for k in range(len(pairs))}
    jobs = [dict(k=k, lr=lr, rep=r) for r in range(reps) for k in range(len(pairs)) for lr in lrs]

    def one(job):
        (mu, sigma), x, n_steps = pairs[job["k"]], data[job["rep"]], steps[job["lr"]]
        s = replicate_seed(seed, job["rep"])
        res = train_sgd(x, mu, sigma, lr=job["lr"], steps=n_steps, batch_size=BATCH, width=cfg["width"],
                        inner="gaussian", seed=s, record=("excess_risk",),
                        record_every=max(1, n_steps // cfg["readings"]), progress=False)
        diverged = bool(res.diverged[0])
        gap = float("nan") if diverged else late_excess_risk(res.history, n_steps)
        return dict(replicate=job["rep"], t=TIMES_1D[job["k"]], mu=mu, sigma=sigma, lr=job["lr"], seed=s,
                    steps=n_steps, diverged=diverged, excess_risk=gap,
                    relative_excess_risk=gap / norms[(job["rep"], job["k"])],
                    network=None if diverged or job["rep"] else res.networks[0])

    rows = map_jobs(one, jobs, cost=[steps[j["lr"]] for j in jobs], progress=progress, label="fig1")
    frame = pandas().DataFrame([{k: v for k, v in r.items() if k != "network"} for r in rows])
    lines, comparisons = _verdict(frame)
    curves = []
    for k, (t, (mu, sigma)) in enumerate(zip(TIMES_1D, pairs)):
        x = data[0]
        grid = np.linspace(mu * x.min() - 3 * sigma, mu * x.max() + 3 * sigma, 600)
        nets = {r["lr"]: (None if r["network"] is None else r["network"](grid))
                for r in rows if r["t"] == t and r["replicate"] == 0}
        curves.append(dict(mu=mu, sigma=sigma, x=x, grid=grid, s_star=optimal_score(grid, x, mu, sigma), nets=nets))
        dead = [lr for lr, v in nets.items() if v is not None and not np.any(v)]
        if dead:
            lines.append(f"(mu, sigma) = ({mu:.3f}, {sigma:.3f}): replicate 0 at lr {dead} ended with every ReLU "
                         "inactive on the plotted range (s_theta = 0 there): the first large steps pushed the "
                         "biases out")
    data_path = out / "fig1_excess_risk.csv"
    frame.to_csv(data_path, index=False)
    plot = out / "fig1.png"
    _plot(curves, lrs, plot)
    settings = dict(cfg, n=N_1D, batch=BATCH, times=TIMES_1D, seed=seed,
                    setting="practical (Appendix E): w1 ~ N(0,1), w2 ~ N(0,1), b = 0, all trained",
                    distance="exact excess risk, mean over the last 20% of training; relative: / ||s*||^2",
                    data="one set of 20 points per replicate, shared by both noise levels (the paper: one set "
                         "per noise level, one run per lr)", quick=quick)
    return Report("fig1", CLAIM, _stats.verdict(comparisons), lines, settings, [str(data_path), str(plot)],
                  time.perf_counter() - start, comparisons)


def _verdict(frame):
    """Lines and evaluated comparisons (see the module docstring)."""
    lrs = sorted(frame["lr"].unique(), reverse=True)
    times = sorted(frame["t"].unique())
    lines, comps = [], []
    for t in times:
        g = frame[frame["t"] == t]
        mu, sigma = g["mu"].iloc[0], g["sigma"].iloc[0]
        stats = [mean_ci(g.loc[g["lr"] == lr, "excess_risk"]) for lr in lrs]
        rel = [mean_ci(g.loc[g["lr"] == lr, "relative_excess_risk"]) for lr in lrs]
        lines.append(f"(mu, sigma) = ({mu:.3f}, {sigma:.3f}): exact excess risk (late-training mean, mean +- 95% CI "
                     f"over {g['replicate'].nunique()} replicates) "
                     + ", ".join(f"lr {lr}: {fmt(m)} +- {fmt(h, 2)}" for lr, (m, h) in zip(lrs, stats))
                     + "; relative to ||s*||^2: " + ", ".join(f"{fmt(m)}" for m, _ in rel))
        for a, b in zip(lrs, lrs[1:]):
            comps.append(_stats.Comparison(f"sigma {sigma:.2f}: excess risk at lr {a} > at lr {b}",
                                           _stats.paired(g, "lr", "excess_risk", a, b)))
    if len(times) == 2:
        small, large = (frame[frame["t"] == t] for t in times)  # t = 0.05: the smaller sigma
        s1, s2 = small["sigma"].iloc[0], large["sigma"].iloc[0]
        for lr in lrs:
            a = small[small["lr"] == lr].set_index("replicate")["relative_excess_risk"]
            b = large[large["lr"] == lr].set_index("replicate")["relative_excess_risk"]
            idx = sorted(set(a.index) | set(b.index))
            comps.append(_stats.Comparison(f"lr {lr}: relative excess risk at sigma {s1:.2f} > at sigma {s2:.2f}",
                                           (a.reindex(idx) - b.reindex(idx)).to_numpy(dtype=float)))
    div = _stats.divergence_line(frame)
    if div:
        lines.append(div)
    return lines, _stats.evaluate(comps)


def _plot(curves, lrs, path):
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(curves), figsize=(5 * len(curves), 3.6))
    for ax, c in zip(np.atleast_1d(axes), curves):
        ax.plot(c["grid"], c["s_star"], color="black", lw=1.2, label="s*")
        for lr in lrs:
            if c["nets"].get(lr) is not None:
                ax.plot(c["grid"], c["nets"][lr], lw=1.5, label=f"lr = {lr}")
        ax.plot(c["mu"] * c["x"], np.zeros_like(c["x"]), "|", color="tab:blue", ms=10)
        ax.set_title(f"mu = {c['mu']:.2f}, sigma = {c['sigma']:.2f}")
        ax.set_xlabel("y")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("score")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)
