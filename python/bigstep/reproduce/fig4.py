"""Figure 4: memorization of diffusion samples as a function of the dimension.

Setting (Appendix E): learning rate 0.5 for 50,000 steps; dimensions
{2, 5, 10, 50, 80, 100, 200, 400, 1000}; per dimension several simulations, each with
its own n = 10 points of N(0, 2^2 I) (the paper: 3 simulations and 5 sample sets each;
here 8 simulations, so that a sign test over them can reach 95%); the net, loss and
sampler of Figure 3.  MMD^2 (unbiased, h = 1) of the s_theta-samples to the s*-samples
and to the fitted-Gaussian samples, both divided by the MMD^2 between the s*-samples and
the fitted-Gaussian samples (the paper's normalisation); the memorized fraction
(d1/d2 < 1/3) is reported beside it.

Claim, as comparisons over simulations (sign tests, ``bigstep.reproduce._stats``), with the paper's
measure (the normalised MMD^2 to the s*-samples, averaged over a simulation's sets):
  - it grows with the dimension: per simulation, Kendall's tau between d and the measure
    is positive;
  - it is larger at the highest dimension than at the lowest;
  - at the highest dimension the samples are closer to the fitted Gaussian than to the
    s*-samples (normalised MMD^2 to the Gaussian < to s*).
Simulation s trains its network at each d on its own data set: the pairing across d is
by simulation number only (independent draws), which the sign test allows.
"""

from __future__ import annotations

import time

import numpy as np

from . import _stats
from ._common import fmt, replicate_seed, training_set
from ._diffusion import measure, reference_samples, sample_learned
from ._parallel import map_jobs
from ._report import Report, mean_ci, pandas, plt

CLAIM = ("As the dimension grows, the learned diffusion generates points less similar to the training "
         "data (it memorizes less), and in high dimension it is close to the Gaussian fitted on the data.")

N, SCALE, LR = 10, 2.0, 0.5


def settings_for(quick: bool) -> dict:
    if quick:
        return dict(dims=(2, 10, 50), steps=5_000, sims=8, sets=1, width=128, batch=256, samples=1000,
                    dtype="float32")
    return dict(dims=(2, 5, 10, 50, 80, 100, 200, 400, 1000), steps=50_000, sims=8, sets=5, width=1000, batch=5000,
                samples=1000, dtype="float32")


def set_seeds(seed: int, sim: int, k: int, sets: int) -> tuple[int, int]:
    """(seed of the reference samples, seed of the learned sampler) of sample set k of
    simulation sim: 2j and 2j + 1 past the run's replicate seeds for the set's number
    j = sim * sets + k, so no two sets of a run (nor a set's two samplers) share X_0 or
    Brownian increments."""
    j = sim * sets + k
    base = replicate_seed(seed, 0)
    return base + 2 * j, base + 2 * j + 1


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    from ..training import train_diffusion

    start = time.perf_counter()
    cfg = settings_for(quick)
    jobs = [dict(d=d, sim=sim) for d in cfg["dims"] for sim in range(cfg["sims"])]

    def one(job):
        d, sim = job["d"], job["sim"]
        x = training_set(seed, N, d, scale=SCALE, index=2000 * sim + d)
        res = train_diffusion(x, lr=LR, steps=cfg["steps"], batch_size=cfg["batch"], width=cfg["width"],
                              device=device, seed=replicate_seed(seed, sim), dtype=cfg["dtype"], progress=False)
        if bool(res.diverged[0]):
            return [dict(d=d, replicate=sim, set=0, diverged=True)]
        rows = []
        for k in range(cfg["sets"]):
            ref_seed, learned_seed = set_seeds(seed, sim, k, cfg["sets"])
            star, gauss = reference_samples(x, cfg["samples"], ref_seed)
            samples = sample_learned(res.score, cfg["samples"], d, learned_seed)
            ref = measure(star, x, star, gauss)
            r = measure(samples, x, star, gauss)
            scale = ref["mmd2_to_gaussian"]  # MMD^2(s*-samples, Gaussian samples)
            rows.append(dict(d=d, replicate=sim, set=k, diverged=False, **r,
                             star_memorized_fraction=ref["memorized_fraction"], mmd2_star_gaussian=scale,
                             normalised_mmd2_to_star=r["mmd2_to_star"] / scale,
                             normalised_mmd2_to_gaussian=r["mmd2_to_gaussian"] / scale))
        return rows

    cost = [job["d"] + 10 for job in jobs]
    results = map_jobs(one, jobs, cost=cost, progress=progress, label="fig4", workers=None if device == "cpu" else 1)
    frame = pandas().DataFrame([row for rows in results for row in rows])
    data = out / "fig4_memorization.csv"
    frame.to_csv(data, index=False)
    lines, comparisons = _verdict(frame)
    plot = out / "fig4.png"
    _plot(frame, plot)
    settings = dict(cfg, n=N, lr=LR, data_std=SCALE, seed=seed, mmd="unbiased, h = 1, normalised by "
                    "MMD^2(s*-samples, Gaussian samples)", quick=quick)
    return Report("fig4", CLAIM, _stats.verdict(comparisons), lines, settings, [str(data), str(plot)],
                  time.perf_counter() - start, comparisons)


_MEASURES = ["memorized_fraction", "normalised_mmd2_to_star", "normalised_mmd2_to_gaussian"]


def _per_simulation(frame):
    """One row per (d, simulation): the measures averaged over its sample sets (NaN if it diverged)."""
    f = frame.copy()
    for c in _MEASURES:
        if c not in f.columns:
            f[c] = np.nan
    f["diverged"] = f["diverged"].astype(bool)
    return f.groupby(["d", "replicate"], sort=True).agg(
        **{c: (c, "mean") for c in _MEASURES}, diverged=("diverged", "any")).reset_index()


def _kendall(a, b):
    """Kendall's tau-a of two sequences (finite pairs only; NaN with fewer than 2)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 2:
        return float("nan")
    s = np.sign(a[:, None] - a[None, :]) * np.sign(b[:, None] - b[None, :])
    return float(s[np.triu_indices(a.size, 1)].mean())


def _verdict(frame):
    sims = _per_simulation(frame)
    dims = sorted(sims["d"].unique())
    lines = []
    for d in dims:
        g = sims[(sims["d"] == d) & ~sims["diverged"]]
        n_div = int(sims.loc[sims["d"] == d, "diverged"].sum())
        if len(g) == 0:
            lines.append(f"d = {d}: every simulation diverged ({n_div})")
            continue
        mf, st, ga = (mean_ci(g[c]) for c in _MEASURES)
        lines.append(f"d = {d}: normalised MMD^2 to s*-samples {fmt(st[0])} +- {fmt(st[1], 2)}, to fitted-Gaussian "
                     f"samples {fmt(ga[0])} +- {fmt(ga[1], 2)}; memorized fraction {fmt(mf[0])} +- {fmt(mf[1], 2)}"
                     + (f" ({n_div} diverged)" if n_div else ""))
    div = _stats.divergence_line(sims, key="d", label="d")
    if div:
        lines.append(div)
    if len(dims) < 2:
        return lines, []
    wide = sims.assign(v=sims["normalised_mmd2_to_star"].where(~sims["diverged"])).pivot(
        index="replicate", columns="d", values="v")
    taus = [_kendall(dims, wide.loc[r, dims].to_numpy()) for r in wide.index]
    lo, hi = dims[0], dims[-1]
    top = sims[sims["d"] == hi].set_index("replicate")
    top_ok = ~top["diverged"]
    comps = [
        _stats.Comparison(f"Kendall's tau between d and the normalised MMD^2 to the s*-samples > 0", taus),
        _stats.Comparison(f"normalised MMD^2 to the s*-samples at d = {hi} > at d = {lo}",
                          (wide[hi] - wide[lo]).to_numpy(float)),
        _stats.Comparison(f"d = {hi}: normalised MMD^2 to the s*-samples > to the fitted-Gaussian samples",
                          (top["normalised_mmd2_to_star"] - top["normalised_mmd2_to_gaussian"]).where(top_ok)
                          .to_numpy(float)),
    ]
    return lines, _stats.evaluate(comps)


def _plot(frame, path):
    pyplot = plt()
    sims = _per_simulation(frame)
    agg = sims[~sims["diverged"]].groupby("d", sort=True)[_MEASURES].mean()
    fig, axes = pyplot.subplots(1, 2, figsize=(9, 3.6))
    ax = axes[0]
    ax.plot(agg.index, agg["normalised_mmd2_to_star"], "o-", color="tab:green", label="MMD^2(s_theta, s*) / ref")
    ax.plot(agg.index, agg["normalised_mmd2_to_gaussian"], "s-", color="tab:pink",
            label="MMD^2(s_theta, Gaussian fit) / ref")
    ax.set_xscale("log")
    ax.set_xlabel("dimension")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(agg.index, agg["memorized_fraction"], "o-")
    ax.set_xscale("log")
    ax.set_xlabel("dimension")
    ax.set_ylabel("memorized fraction")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)
