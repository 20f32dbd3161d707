"""Figure 4: memorization of diffusion samples as a function of the dimension.

Setting (Appendix E): learning rate 0.5 for 50,000 steps; dimensions
{2, 5, 10, 50, 80, 100, 200, 400, 1000}; per dimension 3 simulations, each with its own
n = 10 points of N(0, 2^2 I); the net, loss and sampler of Figure 3.  MMD^2 (unbiased,
h = 1) of the s_theta-samples to the s*-samples and to the fitted-Gaussian samples, both
divided by the MMD^2 between the s*-samples and the fitted-Gaussian samples (the paper's
normalisation); memorized fraction (d1/d2 < 1/3).
"""

from __future__ import annotations

import time

import numpy as np

from ._common import fmt, training_set
from ._diffusion import measure, reference_samples, sample_learned
from ._report import Report, pandas, plt

CLAIM = ("As the dimension grows, the learned diffusion generates points less similar to the training "
         "data (it memorizes less), and in high dimension it is close to the Gaussian fitted on the data.")

N, SCALE, LR = 10, 2.0, 0.5


def settings_for(quick: bool) -> dict:
    if quick:
        return dict(dims=(2, 10, 50), steps=5_000, sims=1, sets=1, width=128, batch=256, samples=1000)
    return dict(dims=(2, 5, 10, 50, 80, 100, 200, 400, 1000), steps=50_000, sims=3, sets=5, width=1000, batch=5000,
                samples=1000)


def set_seeds(seed: int, sim: int, k: int, sets: int) -> tuple[int, int]:
    """(seed of the reference samples, seed of the learned sampler) of sample set k of
    simulation sim: 2j and 2j + 1 past ``seed`` for the set's number j = sim * sets + k, so
    no two sets of a run (nor a set's two samplers) share X_0 or Brownian increments."""
    j = sim * sets + k
    return seed + 2 * j, seed + 2 * j + 1


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    from ..training import train_diffusion

    start = time.perf_counter()
    cfg = settings_for(quick)
    rows = []
    for d in cfg["dims"]:
        for sim in range(cfg["sims"]):
            x = training_set(seed, N, d, scale=SCALE, index=300 + 10 * sim + d)
            res = train_diffusion(x, lr=LR, steps=cfg["steps"], batch_size=cfg["batch"], width=cfg["width"],
                                  device=device, seed=seed + sim, progress=progress,
                                  num_threads=1 if device == "cpu" else None)
            if bool(np.asarray(res.diverged).any()):
                rows.append(dict(d=d, sim=sim, set=0, diverged=True))
                continue
            for k in range(cfg["sets"]):
                ref_seed, learned_seed = set_seeds(seed, sim, k, cfg["sets"])
                star, gauss = reference_samples(x, cfg["samples"], ref_seed)
                samples = sample_learned(res.score, cfg["samples"], d, learned_seed)
                ref = measure(star, x, star, gauss)
                r = measure(samples, x, star, gauss)
                scale = ref["mmd2_to_gaussian"]  # MMD^2(s*-samples, Gaussian samples)
                rows.append(dict(d=d, sim=sim, set=k, diverged=False, **r, star_memorized_fraction=ref["memorized_fraction"],
                                 mmd2_star_gaussian=scale, normalised_mmd2_to_star=r["mmd2_to_star"] / scale,
                                 normalised_mmd2_to_gaussian=r["mmd2_to_gaussian"] / scale))
    frame = pandas().DataFrame(rows)
    data = out / "fig4_memorization.csv"
    frame.to_csv(data, index=False)
    lines, ok = _verdict(frame)
    plot = out / "fig4.png"
    _plot(frame, plot)
    settings = dict(cfg, n=N, lr=LR, data_std=SCALE, seed=seed, mmd="unbiased, h = 1, normalised by "
                    "MMD^2(s*-samples, Gaussian samples)", quick=quick)
    return Report("fig4", CLAIM, ok, lines, settings, [str(data), str(plot)], time.perf_counter() - start)


def _summary(frame):
    good = frame[~frame["diverged"]]
    return good.groupby("d", sort=True)[["memorized_fraction", "normalised_mmd2_to_star",
                                         "normalised_mmd2_to_gaussian"]].mean()


def _verdict(frame):
    agg = _summary(frame)
    lines = [f"d = {d}: memorized fraction {fmt(r.memorized_fraction)}, normalised MMD^2 to s*-samples "
             f"{fmt(r.normalised_mmd2_to_star)}, to fitted-Gaussian samples {fmt(r.normalised_mmd2_to_gaussian)}"
             for d, r in agg.iterrows()]
    if len(agg) < 2:
        return lines, None
    lo, hi = agg.iloc[0], agg.iloc[-1]
    ok = (hi.memorized_fraction <= lo.memorized_fraction and hi.normalised_mmd2_to_star > lo.normalised_mmd2_to_star
          and hi.normalised_mmd2_to_gaussian < hi.normalised_mmd2_to_star)
    lines.append(f"highest dimension ({agg.index[-1]}) memorizes no more than the lowest ({agg.index[0]}), is farther "
                 "from s* and closer to the fitted Gaussian than to s*: " + ("yes" if ok else "no"))
    return lines, bool(ok)


def _plot(frame, path):
    pyplot = plt()
    agg = _summary(frame)
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
