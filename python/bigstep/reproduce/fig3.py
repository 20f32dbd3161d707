"""Figure 3: memorization of diffusion samples as a function of the learning rate (d = 2).

Setting (Section 7, Appendix E): n = 10 training points of N(0, 2^2 I) in d = 2, kept
for every learning rate; the time-conditional two-layer ReLU net
r_theta(t, x) = (1/m) W2 relu(W1 [x; t] + b1), s_theta = -r_theta / sigma(t), trained by
SGD on the DSM loss with times on a 100-point grid drawn with probability proportional
to sigma(t) (the paper's text); 1,000 samples by Euler-Maruyama from T = 1 to
delta = 0.01 (100 steps) with s_theta, with s* and from the Gaussian fitted to the
data.  Memorization: the fraction of samples whose nearest/second-nearest training
distance ratio is below 1/3, and the unbiased MMD^2 (Gaussian kernel, h = 1) to the
s*-samples and to the fitted-Gaussian samples.
"""

from __future__ import annotations

import time

import numpy as np

from ._common import fmt, training_set
from ._diffusion import measure, reference_samples, sample_learned
from ._report import Report, pandas, plt

CLAIM = ("A small learning rate makes the learned diffusion reproduce the training points (memorization, "
         "like s*); a large learning rate generates new points and is close to the Gaussian fitted on the data.")

N, D, SCALE = 10, 2, 2.0


def settings_for(quick: bool) -> dict:
    if quick:
        return dict(lrs=(2.0, 1.0, 0.1, 0.05), steps={2.0: 4_000, 1.0: 4_000, 0.1: 20_000, 0.05: 40_000}, width=200,
                    batch=1000, samples=1000)
    return dict(lrs=(2.0, 1.0, 0.1, 0.05, 0.01), steps={2.0: 20_000, 1.0: 20_000, 0.1: 200_000, 0.05: 1_000_000,
                                                      0.01: 2_000_000}, width=1000, batch=5000, samples=1000)


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    from ..training import train_diffusion

    start = time.perf_counter()
    cfg = settings_for(quick)
    x = training_set(seed, N, D, scale=SCALE)
    star, gauss = reference_samples(x, cfg["samples"], seed)
    rows, clouds = [dict(model="s*", lr=np.nan, steps=0, diverged=False, **measure(star, x, star, gauss))], {}
    for lr in cfg["lrs"]:
        res = train_diffusion(x, lr=lr, steps=cfg["steps"][lr], batch_size=cfg["batch"], width=cfg["width"],
                              device=device, seed=seed, progress=progress,
                              num_threads=1 if device == "cpu" else None)
        diverged = bool(np.asarray(res.diverged).any())
        if diverged:
            rows.append(dict(model="s_theta", lr=lr, steps=cfg["steps"][lr], diverged=True))
            continue
        samples = sample_learned(res.score, cfg["samples"], D, seed + 1)
        clouds[lr] = samples
        rows.append(dict(model="s_theta", lr=lr, steps=cfg["steps"][lr], diverged=False,
                         **measure(samples, x, star, gauss)))
    frame = pandas().DataFrame(rows)
    data = out / "fig3_memorization.csv"
    frame.to_csv(data, index=False)
    lines, ok = _verdict(frame)
    plot = out / "fig3.png"
    _plot(x, star, clouds, frame, plot)
    settings = dict(cfg, n=N, d=D, data_std=SCALE, seed=seed, time_weights="sigma (paper text)",
                    mmd="unbiased, h = 1", quick=quick)
    return Report("fig3", CLAIM, ok, lines, settings, [str(data), str(plot)], time.perf_counter() - start)


def _verdict(frame):
    star = frame[frame["model"] == "s*"].iloc[0]
    learned = frame[(frame["model"] == "s_theta") & ~frame["diverged"]].sort_values("lr")
    lines = [f"s*-sampler: memorized fraction {fmt(star['memorized_fraction'])}, "
             f"MMD^2 to the fitted Gaussian {fmt(star['mmd2_to_gaussian'])}"]
    for _, r in learned.iterrows():
        lines.append(f"lr {r['lr']}: memorized fraction {fmt(r['memorized_fraction'])}, MMD^2 to s*-samples "
                     f"{fmt(r['mmd2_to_star'])}, to fitted-Gaussian samples {fmt(r['mmd2_to_gaussian'])}")
    n_div = int(frame["diverged"].sum())
    if n_div:
        lines.append(f"{n_div} learning rate(s) diverged: " + ", ".join(str(v) for v in frame.loc[frame['diverged'], 'lr']))
    if len(learned) < 2:
        return lines, None
    small, large = learned.iloc[0], learned.iloc[-1]
    ok = (small["memorized_fraction"] > large["memorized_fraction"]
          and small["mmd2_to_star"] < large["mmd2_to_star"]
          and large["mmd2_to_gaussian"] < large["mmd2_to_star"])
    lines.append(f"smallest lr ({small['lr']}) memorizes more and is closer to s* than the largest ({large['lr']}), "
                 "and the largest is closer to the fitted Gaussian than to s*: " + ("yes" if ok else "no"))
    return lines, bool(ok)


def _plot(x, star, clouds, frame, path):
    pyplot = plt()
    lrs = sorted(clouds)
    panels = [lrs[0], lrs[-1]] if len(lrs) >= 2 else lrs
    fig, axes = pyplot.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 3.8))
    for ax, lr in zip(axes, panels):
        ax.scatter(star[:, 0], star[:, 1], s=3, alpha=0.4, color="tab:orange", label="s*")
        ax.scatter(clouds[lr][:, 0], clouds[lr][:, 1], s=3, alpha=0.4, color="tab:green", label=f"s_theta, lr {lr}")
        ax.scatter(x[:, 0], x[:, 1], s=25, color="tab:blue", label="training data")
        ax.set_title(f"learning rate {lr}")
        ax.legend(fontsize=7, markerscale=2)
    ax = axes[-1]
    learned = frame[(frame["model"] == "s_theta") & ~frame["diverged"]].sort_values("lr")
    ax.plot(learned["lr"], learned["mmd2_to_star"], "o-", color="tab:green", label="MMD^2(s_theta, s*)")
    ax.plot(learned["lr"], learned["mmd2_to_gaussian"], "s-", color="tab:pink", label="MMD^2(s_theta, Gaussian fit)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)
