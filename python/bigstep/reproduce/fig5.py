"""Figure 5: sharpness (largest Hessian eigenvalue of the loss) at the end of training
vs the learning rate, beside the linear-stability bound 2/(m lr) (paper eq. 8), in three
panels.

Left (d = 1; Appendix E and the authors' notebook): n = 20 standard-normal points,
(mu, sigma) = (0.82, 0.57) (t = 0.2), width m = 1000, batch 50, all parameters trained,
lr = 0.5 * 10^linspace(0, -1, 11) with int(5000 * 0.5 / lr) steps.  The sharpness is
exact (Lanczos on the closed-form Hessian-vector product of R_n with respect to
(w1, w2, b)), where the notebook ran 20 power iterations on a grid-quadrature risk; it
is averaged over the readings in the last 20% of training, then over simulations.

Middle (d = 10): the Figure 2 d = 10 setup at the same (mu, sigma): n = 20 points of
N(0, I_10) (the data sets of fig2's d = 10, t = 0.2 panel), batch 50, the loss averaged
over the coordinates (coordinates="mean", as fig2 and the notebook), the same lr grid and
step rule.  Right (diffusion): the Figure 3 setup (n = 10 points of N(0, 4 I_2), the
time-conditional net, times drawn with probability proportional to sigma(t)) at a few
learning rates.  In both, the sharpness is that of a FIXED-SAMPLE Monte Carlo estimate
of the trained loss (``n_mc`` noise draws, and times, per training point, Philox stream
14; :func:`bigstep.sharpness_mc`, :func:`bigstep.diffusion_sharpness_mc`), read once, at
the end of training; the authors' notebook also took the Hessian of a fixed sample.  The
bound 2/(m lr) applies to the Hessian of the loss actually trained under
theta <- theta - m lr grad L, which is what is computed in every panel.
"""

from __future__ import annotations

import time

import numpy as np

from ._common import BATCH, N_1D, WIDTH, fmt, noise_level, training_set, torch_missing
from ._parallel import map_jobs
from ._report import Report, mean_ci, pandas, plt

CLAIM = ("A larger learning rate leads to a flatter minimum: the sharpness at the end of training "
         "falls as the learning rate grows and stays below the stability bound 2/(m lr) "
         "(d = 1, d = 10 and the diffusion model).")

T_FIG5 = 0.2
TOLERANCE = 1.10  # sharpness may exceed 2/(m lr) by 10%: SGD noise keeps theta near, not at, the minimum
D_HIGH = 10
N_DIFF, D_DIFF, SCALE_DIFF = 10, 2, 2.0  # the Figure 3 data
PANELS = ("d = 1", f"d = {D_HIGH}", f"diffusion (d = {D_DIFF})")


def settings_for(quick: bool) -> dict:
    """Sizes of the three panels (one dict).  quick: 6 learning rates and half the steps in
    d = 1; in d = 10, 4 learning rates of width-200 nets at 20% of the steps, 2 simulations;
    diffusion: 4 learning rates, width 200, batch 500, int(2000 / lr) steps, 2 seeds."""
    if quick:
        return dict(lrs=[float(v) for v in 0.5 * 10.0 ** np.linspace(0, -1, 6)], step_scale=0.5, sims=2,
                    readings=50, width=WIDTH,
                    lrs_high=[float(v) for v in 0.5 * 10.0 ** np.linspace(0, -1, 4)], step_scale_high=0.2,
                    sims_high=2, width_high=200, n_mc_high=100,
                    lrs_diff=[2.0, 1.0, 0.5, 0.25], steps_diff=2000.0, sims_diff=2, width_diff=200, batch_diff=500,
                    n_mc_diff=200)
    return dict(lrs=[float(v) for v in 0.5 * 10.0 ** np.linspace(0, -1, 11)], step_scale=1.0, sims=5,
                readings=50, width=WIDTH,
                lrs_high=[float(v) for v in 0.5 * 10.0 ** np.linspace(0, -1, 6)], step_scale_high=1.0,
                sims_high=5, width_high=WIDTH, n_mc_high=200,
                lrs_diff=[2.0, 1.0, 0.5, 0.2, 0.1], steps_diff=40_000.0, sims_diff=3, width_diff=1000,
                batch_diff=5000, n_mc_diff=500)


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    start = time.perf_counter()
    cfg = settings_for(quick)
    mu, sigma = noise_level(T_FIG5)
    rows = _panel_1d(cfg, seed, mu, sigma, progress)
    skipped = torch_missing()
    if not skipped:
        rows += _panel_high(cfg, seed, mu, sigma, device, progress)
        rows += _panel_diffusion(cfg, seed, device, progress)
    frame = pandas().DataFrame(rows)
    data = out / "fig5_sharpness.csv"
    frame.to_csv(data, index=False)
    lines, ok = _verdict(frame)
    if skipped:
        lines.append(f"d = {D_HIGH} and diffusion panels skipped: {skipped} (pip install 'bigstep[torch]')")
    plot = out / "fig5.png"
    _plot(frame, plot)
    settings = dict(cfg, mu=mu, sigma=sigma, n=N_1D, batch=BATCH, seed=seed, tolerance=TOLERANCE, quick=quick,
                    steps="d = 1 and d = 10: int(5000 * 0.5 / lr * step_scale); diffusion: int(steps_diff / lr)",
                    sharpness_1d="exact Lanczos on the closed-form HVP, wrt (w1, w2, b), mean over the last 20%",
                    sharpness_high="Lanczos on exact HVPs of a fixed-sample MC loss (n_mc_high draws per point, "
                                   "coordinates='mean' as trained), wrt (W1, b, W2), at the end of training",
                    sharpness_diff="Lanczos on exact HVPs of a fixed-sample MC diffusion loss (n_mc_diff draws of "
                                   "time and noise per point), wrt (W1, b1, W2), at the end of training",
                    data_diff=f"n = {N_DIFF} points of N(0, {SCALE_DIFF ** 2:g} I_{D_DIFF}) (fig3), "
                              "time weights sigma (paper text)")
    return Report("fig5", CLAIM, ok, lines, settings, [str(data), str(plot)], time.perf_counter() - start)


def _panel_1d(cfg, seed, mu, sigma, progress):
    from ..training import train_sgd

    jobs = [dict(sim=sim, lr=lr, steps=int(5000 * 0.5 / lr * cfg["step_scale"]))
            for sim in range(cfg["sims"]) for lr in cfg["lrs"]]
    data_sets = [training_set(seed, N_1D, index=200 + sim) for sim in range(cfg["sims"])]

    def one(job):
        x = data_sets[job["sim"]]
        steps = job["steps"]
        res = train_sgd(x, mu, sigma, lr=job["lr"], steps=steps, batch_size=BATCH, width=cfg["width"], inner="gaussian",
                        seed=seed + job["sim"], record_every=max(1, steps // cfg["readings"]),
                        record=("loss", "sharpness"), progress=False)
        h = res.history
        late = h[(h["step"] >= 0.8 * steps) & np.isfinite(h["sharpness"])]
        diverged = bool(res.diverged[0])
        return dict(panel=PANELS[0], sim=job["sim"], lr=job["lr"], steps=steps, diverged=diverged,
                    sharpness=float("nan") if diverged or late.empty else float(late["sharpness"].mean()),
                    bound=2.0 / (cfg["width"] * job["lr"]))

    return map_jobs(one, jobs, cost=[j["steps"] for j in jobs], progress=progress, label="fig5 d=1")


def _panel_high(cfg, seed, mu, sigma, device, progress):
    """d = 10: every (lr, simulation) network trains in one batched torch call (simulation s
    has fig2's data set and seed seed + s); sharpness of the coordinate-mean loss."""
    from ..training import sharpness_mc, train_dsm

    lrs, sims, width = list(cfg["lrs_high"]), cfg["sims_high"], cfg["width_high"]
    steps = [int(5000 * 0.5 / lr * cfg["step_scale_high"]) for lr in lrs]
    xs = np.stack([training_set(seed, N_1D, D_HIGH, index=1000 + 100 * 1 + sim) for sim in range(sims)])
    res = train_dsm(xs, mu, sigma, lr=lrs, steps=steps, batch_size=BATCH, width=width,
                    seed=[seed + sim for sim in range(sims)], device=device, record=("loss",), progress=progress,
                    num_threads=1 if device == "cpu" else None, coordinates="mean")
    rows = []
    for r in range(len(lrs) * sims):
        i, sim = divmod(r, sims)
        diverged = bool(res.diverged[r])
        sharp = float("nan") if diverged else sharpness_mc(res.network(r), xs[sim], mu, sigma,
                                                           n_mc=cfg["n_mc_high"], seed=seed + sim,
                                                           coordinates="mean", tol=1e-8, num_threads=1)
        rows.append(dict(panel=PANELS[1], sim=sim, lr=lrs[i], steps=steps[i], diverged=diverged, sharpness=sharp,
                         bound=2.0 / (width * lrs[i])))
    return rows


def _panel_diffusion(cfg, seed, device, progress):
    """The Figure 3 diffusion net: all (lr, seed) networks in one batched call on fig3's data."""
    from ..training import diffusion_sharpness_mc, train_diffusion

    lrs, sims, width = list(cfg["lrs_diff"]), cfg["sims_diff"], cfg["width_diff"]
    steps = [int(cfg["steps_diff"] / lr) for lr in lrs]
    x = training_set(seed, N_DIFF, D_DIFF, scale=SCALE_DIFF)
    res = train_diffusion(x, lr=lrs, steps=steps, batch_size=cfg["batch_diff"], width=width,
                          seed=[seed + sim for sim in range(sims)], device=device, progress=progress,
                          num_threads=1 if device == "cpu" else None)
    rows = []
    for r in range(len(lrs) * sims):
        i, sim = divmod(r, sims)
        diverged = bool(res.diverged[r])
        sharp = float("nan") if diverged else diffusion_sharpness_mc(res.network(r), x, n_mc=cfg["n_mc_diff"],
                                                                     seed=seed + sim, tol=1e-8, num_threads=1)
        rows.append(dict(panel=PANELS[2], sim=sim, lr=lrs[i], steps=steps[i], diverged=diverged, sharpness=sharp,
                         bound=2.0 / (width * lrs[i])))
    return rows


def _verdict(frame):
    """Per panel: supported when the mean sharpness falls as lr grows (Spearman correlation
    with lr below -0.8) and every finished run is below TOLERANCE x 2/(m lr); the claim
    is supported when every panel is."""
    if "panel" not in frame.columns:
        frame = frame.assign(panel=PANELS[0])
    lines, ok = [], True
    order = [p for p in PANELS if p in set(frame["panel"])] + sorted(set(frame["panel"]) - set(PANELS))
    for panel in order:
        sub = frame[frame["panel"] == panel]
        agg = sub.groupby("lr", sort=True)[["sharpness", "bound"]].mean()
        lrs, sharp, bound = agg.index.to_numpy(), agg["sharpness"].to_numpy(), agg["bound"].to_numpy()
        fine = np.isfinite(sharp)
        rho = _spearman(lrs[fine], sharp[fine]) if fine.sum() > 2 else float("nan")
        slope = (float(np.polyfit(np.log(lrs[fine]), np.log(sharp[fine]), 1)[0])
                 if fine.sum() > 1 and (sharp[fine] > 0).all() else float("nan"))
        falls = rho < -0.8
        runs = sub[~sub["diverged"] & np.isfinite(sub["sharpness"])]
        below = runs["sharpness"] <= TOLERANCE * runs["bound"]
        good = bool(falls and len(runs) > 0 and below.all())
        ok &= good
        lines.append(f"{panel}: mean sharpness per lr (bound 2/(m lr)): "
                     + ", ".join(f"lr {fmt(lr)}: {fmt(s)} ({fmt(b)})" for lr, s, b in zip(lrs, sharp, bound)))
        lines.append(f"{panel}: sharpness / bound per lr: "
                     + ", ".join(f"{fmt(s / b, 2)}" for s, b in zip(sharp, bound)) + " (1 = at the edge of stability)")
        lines.append(f"{panel}: Spearman correlation of sharpness with lr {rho:.2f}, log-log slope {slope:.2f} "
                     + ("(falls as lr grows)" if falls else "(does not fall clearly as lr grows)")
                     + f"; {int(below.sum())} of {len(runs)} finished runs below {TOLERANCE} x 2/(m lr), "
                     + f"{int(sub['diverged'].sum())} diverged"
                     + (" - supports the claim" if good else " - does not support the claim"))
    return lines, bool(ok)


def _spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _plot(frame, path):
    pyplot = plt()
    panels = [p for p in PANELS if p in set(frame["panel"])]
    fig, axes = pyplot.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6))
    for ax, panel in zip(np.atleast_1d(axes), panels):
        sub = frame[frame["panel"] == panel]
        lrs = np.array(sorted(sub["lr"].unique()))
        stats = [mean_ci(sub.loc[sub["lr"] == lr, "sharpness"]) for lr in lrs]
        means = np.array([m for m, _ in stats])
        ax.errorbar(lrs, means, yerr=[h if np.isfinite(h) else 0 for _, h in stats], marker="o", capsize=3,
                    label="sharpness at the end of training")
        ax.plot(lrs, sub.groupby("lr", sort=True)["bound"].mean(), "--", color="gray", label="2/(m lr)")
        lost = [lr for lr in lrs if sub.loc[sub["lr"] == lr, "diverged"].all()]
        if lost:
            ax.plot(lost, [sub.loc[sub["lr"] == lr, "bound"].mean() for lr in lost], "x",
                    color="tab:red", markersize=8, label="diverged (every run)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(pyplot.NullFormatter())
        ax.set_xlabel("learning rate")
        ax.set_title(panel)
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("largest Hessian eigenvalue")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)
