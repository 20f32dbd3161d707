"""Figure 3: memorization of diffusion samples as a function of the learning rate (d = 2).

Setting (Section 7, Appendix E): n = 10 training points of N(0, 2^2 I) in d = 2, kept
for every learning rate; the time-conditional two-layer ReLU net
r_theta(t, x) = (1/m) W2 relu(W1 [x; t] + b1), s_theta = -r_theta / sigma(t), trained by
SGD (the fused CPU trainer, or torch on a GPU) on the DSM loss with times on a 100-point
grid drawn with probability proportional to sigma(t) (the paper's text); 1,000 samples by
Euler-Maruyama from T = 1 to delta = 0.01 (100 steps) with s_theta, with s* and from the
Gaussian fitted to the data.  Memorization: the fraction of samples whose
nearest/second-nearest training distance ratio is below 1/3, and the unbiased MMD^2
(Gaussian kernel, h = 1) to the s*-samples and to the fitted-Gaussian samples.

The paper shows one data set; here R replicates each draw their own 10 points and SGD
seed and train every lr on them (the samplers of a replicate share their draws across
lrs).  Claim, as comparisons over replicates between the paper's two learning rates
(small 0.05, large 2; sign tests, ``bigstep.reproduce._stats``):
  - the small lr memorizes more (memorized fraction) and is closer to s* (MMD^2) than the large;
  - the small lr's samples are closer to the s*-samples than to the Gaussian fit ("like s*");
  - the large lr's samples are closer to the Gaussian fit than to the s*-samples.
The other learning rates are measured and plotted, not compared.
"""

from __future__ import annotations

import time

import numpy as np

from . import _stats
from ._common import fmt, replicate_seed, training_set
from ._diffusion import measure, reference_samples, sample_learned
from ._report import Report, mean_ci, pandas, plt

CLAIM = ("A small learning rate makes the learned diffusion reproduce the training points (memorization, "
         "like s*); a large learning rate generates new points and is close to the Gaussian fitted on the data.")

N, D, SCALE = 10, 2, 2.0
SMALL, LARGE = 0.05, 2.0  # the two learning rates of the paper's Figure 3 (Appendix E)


def settings_for(quick: bool) -> dict:
    """quick: width 200, batch 1000, lrs 2 and 0.05 (compared) and 1 (plotted) for 4k, 40k
    and 4k steps, 8 replicates; full: the paper's sizes (width 1000, batch 5000, the
    notebook's five lrs and steps) with 8 replicates."""
    if quick:
        return dict(lrs=(2.0, 1.0, 0.05), steps={2.0: 4_000, 1.0: 4_000, 0.05: 40_000}, width=200,
                    batch=1000, samples=1000, replicates=8, dtype="float32")
    return dict(lrs=(2.0, 1.0, 0.1, 0.05, 0.01), steps={2.0: 20_000, 1.0: 20_000, 0.1: 200_000, 0.05: 1_000_000,
                                                      0.01: 2_000_000}, width=1000, batch=5000, samples=1000,
                replicates=8, dtype="float32")


def learned_seed(seed: int, r: int) -> int:
    """Seed of the learned samplers of replicate r (the references use replicate_seed)."""
    return replicate_seed(seed, r) + 32768


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    from ..training import train_diffusion

    start = time.perf_counter()
    cfg = settings_for(quick)
    lrs = list(cfg["lrs"])
    rows, clouds, shown = [], {}, None
    for r in range(cfg["replicates"]):
        x = training_set(seed, N, D, scale=SCALE, index=r)
        rs = replicate_seed(seed, r)
        star, gauss = reference_samples(x, cfg["samples"], rs)
        rows.append(dict(replicate=r, model="s*", lr=np.nan, steps=0, diverged=False, **measure(star, x, star, gauss)))
        res = train_diffusion(x, lr=lrs, steps=[cfg["steps"][lr] for lr in lrs], batch_size=cfg["batch"],
                              width=cfg["width"], device=device, seed=rs, dtype=cfg["dtype"], progress=progress)
        for i, lr in enumerate(lrs):
            if res.diverged[i]:
                rows.append(dict(replicate=r, model="s_theta", lr=lr, steps=cfg["steps"][lr], diverged=True,
                                 diverged_step=int(res.diverged_step[i])))
                continue
            samples = sample_learned(res.network(i), cfg["samples"], D, learned_seed(seed, r))
            if r == 0:
                clouds[lr] = samples
            rows.append(dict(replicate=r, model="s_theta", lr=lr, steps=cfg["steps"][lr], diverged=False,
                             diverged_step=-1, **measure(samples, x, star, gauss)))
        if r == 0:
            shown = (x, star)
    frame = pandas().DataFrame(rows)
    data = out / "fig3_memorization.csv"
    frame.to_csv(data, index=False)
    lines, comparisons = _verdict(frame)
    plot = out / "fig3.png"
    _plot(shown[0], shown[1], clouds, frame, plot)
    settings = dict(cfg, n=N, d=D, data_std=SCALE, seed=seed, compared=(SMALL, LARGE),
                    time_weights="sigma (paper text)", schedule="ou (paper text)", mmd="unbiased, h = 1",
                    quick=quick)
    return Report("fig3", CLAIM, _stats.verdict(comparisons), lines, settings, [str(data), str(plot)],
                  time.perf_counter() - start, comparisons)


def _verdict(frame):
    star = frame[frame["model"] == "s*"]
    learned = frame[frame["model"] == "s_theta"]
    lines = [f"s*-sampler: memorized fraction {fmt(star['memorized_fraction'].mean())}, MMD^2 to the fitted "
             f"Gaussian {fmt(star['mmd2_to_gaussian'].mean())} (means over {len(star)} replicates)"]
    for lr in sorted(learned["lr"].unique()):
        g = learned[(learned["lr"] == lr) & ~learned["diverged"].astype(bool)]
        n_div = int(learned.loc[learned["lr"] == lr, "diverged"].astype(bool).sum())
        if len(g) == 0:
            lines.append(f"lr {lr:g}: every run diverged ({n_div})")
            continue
        mf, st, ga = (mean_ci(g[c]) for c in ("memorized_fraction", "mmd2_to_star", "mmd2_to_gaussian"))
        lines.append(f"lr {lr:g}: memorized fraction {fmt(mf[0])} +- {fmt(mf[1], 2)}, MMD^2 to s*-samples "
                     f"{fmt(st[0])} +- {fmt(st[1], 2)}, to fitted-Gaussian samples {fmt(ga[0])} +- {fmt(ga[1], 2)}"
                     + (f" ({n_div} of {n_div + len(g)} runs diverged)" if n_div else ""))
    div = _stats.divergence_line(learned.assign(diverged=learned["diverged"].astype(bool)))
    if div:
        lines.append(div)

    def col(lr, c):
        g = learned[learned["lr"] == lr].set_index("replicate")
        return g[c].where(~g["diverged"].astype(bool)).reindex(sorted(frame["replicate"].unique()))

    comps = [
        _stats.Comparison(f"memorized fraction at lr {SMALL} > at lr {LARGE}",
                          (col(SMALL, "memorized_fraction") - col(LARGE, "memorized_fraction")).to_numpy(float)),
        _stats.Comparison(f"MMD^2 to the s*-samples at lr {LARGE} > at lr {SMALL}",
                          (col(LARGE, "mmd2_to_star") - col(SMALL, "mmd2_to_star")).to_numpy(float)),
        _stats.Comparison(f"lr {SMALL}: MMD^2 to the fitted-Gaussian samples > to the s*-samples",
                          (col(SMALL, "mmd2_to_gaussian") - col(SMALL, "mmd2_to_star")).to_numpy(float)),
        _stats.Comparison(f"lr {LARGE}: MMD^2 to the s*-samples > to the fitted-Gaussian samples",
                          (col(LARGE, "mmd2_to_star") - col(LARGE, "mmd2_to_gaussian")).to_numpy(float)),
    ]
    return lines, _stats.evaluate(comps)


def _plot(x, star, clouds, frame, path):
    pyplot = plt()
    lrs = sorted(clouds)
    panels = [lr for lr in (SMALL, LARGE) if lr in clouds] or lrs[:1]
    fig, axes = pyplot.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 3.8))
    for ax, lr in zip(axes, panels):
        ax.scatter(star[:, 0], star[:, 1], s=3, alpha=0.4, color="tab:orange", label="s*")
        ax.scatter(clouds[lr][:, 0], clouds[lr][:, 1], s=3, alpha=0.4, color="tab:green", label=f"s_theta, lr {lr}")
        ax.scatter(x[:, 0], x[:, 1], s=25, color="tab:blue", label="training data")
        ax.set_title(f"learning rate {lr} (replicate 0)")
        ax.legend(fontsize=7, markerscale=2)
    ax = axes[-1]
    learned = frame[(frame["model"] == "s_theta") & ~frame["diverged"].astype(bool)]
    agg = learned.groupby("lr", sort=True)[["mmd2_to_star", "mmd2_to_gaussian"]].mean()
    ax.plot(agg.index, agg["mmd2_to_star"], "o-", color="tab:green", label="MMD^2(s_theta, s*)")
    ax.plot(agg.index, agg["mmd2_to_gaussian"], "s-", color="tab:pink", label="MMD^2(s_theta, Gaussian fit)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_title("mean over replicates")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)
