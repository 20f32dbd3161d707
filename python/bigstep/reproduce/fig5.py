"""Figure 5: sharpness (largest Hessian eigenvalue of the loss) at the end of training
vs the learning rate, in three panels, beside the linear-stability bound 2/(m lr)
(paper eq. 8).

Left (d = 1; Appendix E and the authors' notebook): n = 20 standard-normal points,
(mu, sigma) = (0.82, 0.57) (t = 0.2), width m = 1000, batch 50, all parameters trained,
lr = 0.5 * 10^linspace(0, -1, 11) with int(5000 * 0.5 / lr) steps.  The sharpness is
exact (Lanczos on the closed-form Hessian-vector product of R_n with respect to
(w1, w2, b)), where the notebook ran 20 power iterations on a grid-quadrature risk; it
is averaged over the readings in the last 20% of training.

Middle (d = 10): the Figure 2 d = 10 setup at the same (mu, sigma): n = 20 points of
N(0, I_10), batch 50, the loss averaged over the coordinates (as fig2 and the notebook),
the same lr grid and step rule.  Right (diffusion): the Figure 3 setup (n = 10 points of
N(0, 4 I_2), the time-conditional net, times drawn with probability proportional to
sigma(t)) at a few learning rates.  In both, the sharpness is that of a FIXED-SAMPLE
Monte Carlo estimate of the trained loss (``n_mc`` draws of noise, and times, per
training point; :func:`bigstep.sharpness_mc`, :func:`bigstep.diffusion_sharpness_mc`;
closed-form Hessian-vector products in numpy; Lanczos to a relative residual of 1e-6, far
below the Monte Carlo error), read at the end of training; the authors' notebook also
took the Hessian of a fixed sample.  Every panel trains with the fused CPU
trainers (no torch needed).

Each replicate draws its own data set and SGD seed and trains every lr on them.  The
paper's claim about Figure 5 is the trend ("a larger learning rate leads to convergence
to a flatter region"): per panel, per replicate, the least-squares slope of log sharpness
on log lr over the replicate's finished runs, claimed negative (sign test over
replicates, ``bigstep.reproduce._stats``).  The bound 2/(m lr) is the theory's condition for a
linearly stable minimum (eq. 8), not a claim the paper makes about the figure: it is
checked and reported per lr (runs below it, and the sign test of bound - sharpness),
outside the verdict.
"""

from __future__ import annotations

import time

import numpy as np

from . import _stats
from ._common import BATCH, N_1D, WIDTH, fmt, noise_level, replicate_seed, training_set
from ._parallel import map_jobs
from ._report import Report, mean_ci, pandas, plt

CLAIM = ("A larger learning rate leads to a flatter minimum: the sharpness at the end of training "
         "falls as the learning rate grows (d = 1, d = 10 and the diffusion model).")

T_FIG5 = 0.2
D_HIGH = 10
N_DIFF, D_DIFF, SCALE_DIFF = 10, 2, 2.0  # the Figure 3 data
PANELS = ("d = 1", f"d = {D_HIGH}", f"diffusion (d = {D_DIFF})")
PANEL_NAMES = ("d=1", f"d={D_HIGH}", "diffusion")


def settings_for(quick: bool) -> dict:
    """Sizes of the three panels (one dict), 8 replicates each.  quick: 6 learning rates
    and half the steps in d = 1; in d = 10, 4 learning rates of width-200 nets at 20% of
    the steps; diffusion: 4 learning rates, width 200, batch 500, int(2000 / lr) steps."""
    if quick:
        return dict(lrs=[float(v) for v in 0.5 * 10.0 ** np.linspace(0, -1, 6)], step_scale=0.5, sims=8,
                    readings=25, width=WIDTH,
                    lrs_high=[float(v) for v in 0.5 * 10.0 ** np.linspace(0, -1, 4)], step_scale_high=0.2,
                    sims_high=8, width_high=200, n_mc_high=100,
                    lrs_diff=[2.0, 1.0, 0.5, 0.25], steps_diff=2000.0, sims_diff=8, width_diff=200, batch_diff=500,
                    n_mc_diff=200)
    return dict(lrs=[float(v) for v in 0.5 * 10.0 ** np.linspace(0, -1, 11)], step_scale=1.0, sims=8,
                readings=50, width=WIDTH,
                lrs_high=[float(v) for v in 0.5 * 10.0 ** np.linspace(0, -1, 6)], step_scale_high=1.0,
                sims_high=8, width_high=WIDTH, n_mc_high=200,
                lrs_diff=[2.0, 1.0, 0.5, 0.2, 0.1], steps_diff=40_000.0, sims_diff=8, width_diff=1000,
                batch_diff=5000, n_mc_diff=500)


def run(out, *, quick: bool, seed: int, device: str, progress: bool, panels=PANEL_NAMES) -> Report:
    start = time.perf_counter()
    cfg = settings_for(quick)
    mu, sigma = noise_level(T_FIG5)
    rows, seconds = [], {}
    for name, panel in zip(PANEL_NAMES, (lambda: _panel_1d(cfg, seed, mu, sigma, progress),
                                         lambda: _panel_high(cfg, seed, mu, sigma, device, progress),
                                         lambda: _panel_diffusion(cfg, seed, device, progress))):
        if name in panels:
            t0 = time.perf_counter()
            rows += panel()
            seconds[name] = round(time.perf_counter() - t0, 1)
    frame = pandas().DataFrame(rows)
    data = out / "fig5_sharpness.csv"
    frame.to_csv(data, index=False)
    lines, comparisons = _verdict(frame)
    lines.append("panel wall times: " + ", ".join(f"{k}: {v:.0f} s" for k, v in seconds.items()))
    if tuple(panels) != PANEL_NAMES:
        lines.append(f"only the panel(s) {', '.join(panels)} ran: the verdict covers that part of the claim only")
    plot = out / "fig5.png"
    _plot(frame, plot)
    settings = dict(cfg, mu=mu, sigma=sigma, n=N_1D, batch=BATCH, seed=seed, quick=quick, panels=list(panels),
                    panel_seconds=seconds,
                    steps="d = 1 and d = 10: int(5000 * 0.5 / lr * step_scale); diffusion: int(steps_diff / lr)",
                    sharpness_1d="exact Lanczos on the closed-form HVP, wrt (w1, w2, b), mean over the last 20%",
                    sharpness_high="Lanczos on exact HVPs of a fixed-sample MC loss (n_mc_high draws per point, "
                                   "coordinates='mean' as trained), wrt (W1, b, W2), at the end of training",
                    sharpness_diff="Lanczos on exact HVPs of a fixed-sample MC diffusion loss (n_mc_diff draws of "
                                   "time and noise per point), wrt (W1, b1, W2), at the end of training",
                    data_diff=f"n = {N_DIFF} points of N(0, {SCALE_DIFF ** 2:g} I_{D_DIFF}) per replicate (fig3), "
                              "time weights sigma (paper text)")
    return Report("fig5", CLAIM, _stats.verdict(comparisons), lines, settings, [str(data), str(plot)],
                  time.perf_counter() - start, comparisons)


def _panel_1d(cfg, seed, mu, sigma, progress):
    from ..training import train_sgd

    jobs = [dict(sim=sim, lr=lr, steps=int(5000 * 0.5 / lr * cfg["step_scale"]))
            for sim in range(cfg["sims"]) for lr in cfg["lrs"]]
    data_sets = [training_set(seed, N_1D, index=200 + sim) for sim in range(cfg["sims"])]

    def one(job):
        x = data_sets[job["sim"]]
        steps = job["steps"]
        res = train_sgd(x, mu, sigma, lr=job["lr"], steps=steps, batch_size=BATCH, width=cfg["width"],
                        inner="gaussian", seed=replicate_seed(seed, job["sim"]),
                        record_every=max(1, steps // cfg["readings"]), record=("sharpness",), progress=False)
        h = res.history
        late = h[(h["step"] >= 0.8 * steps) & np.isfinite(h["sharpness"])]
        diverged = bool(res.diverged[0])
        return dict(panel=PANELS[0], replicate=job["sim"], lr=job["lr"], steps=steps, diverged=diverged,
                    sharpness=float("nan") if diverged or late.empty else float(late["sharpness"].mean()),
                    bound=2.0 / (cfg["width"] * job["lr"]))

    return map_jobs(one, jobs, cost=[j["steps"] for j in jobs], progress=progress, label="fig5 d=1")


def _panel_high(cfg, seed, mu, sigma, device, progress):
    """d = 10: every (lr, simulation) network trains in one call (simulation s has its own
    data set and seed); sharpness of the coordinate-mean loss."""
    from ..training import sharpness_mc, train_dsm

    lrs, sims, width = list(cfg["lrs_high"]), cfg["sims_high"], cfg["width_high"]
    steps = [int(5000 * 0.5 / lr * cfg["step_scale_high"]) for lr in lrs]
    xs = np.stack([training_set(seed, N_1D, D_HIGH, index=1100 + sim) for sim in range(sims)])
    res = train_dsm(xs, mu, sigma, lr=lrs, steps=steps, batch_size=BATCH, width=width,
                    seed=[replicate_seed(seed, sim) for sim in range(sims)], device=device, record=("loss",),
                    progress=progress, coordinates="mean")

    def one(r):
        i, sim = divmod(r, sims)
        diverged = bool(res.diverged[r])
        sharp = float("nan") if diverged else sharpness_mc(res.network(r), xs[sim], mu, sigma,
                                                           n_mc=cfg["n_mc_high"], seed=replicate_seed(seed, sim),
                                                           coordinates="mean", tol=1e-6)
        return dict(panel=PANELS[1], replicate=sim, lr=lrs[i], steps=steps[i], diverged=diverged, sharpness=sharp,
                    bound=2.0 / (width * lrs[i]))

    return map_jobs(one, list(range(len(lrs) * sims)), progress=progress, label="fig5 d=10 sharpness", workers=1)


def _panel_diffusion(cfg, seed, device, progress):
    """The Figure 3 diffusion net: per replicate, every lr in one call on the replicate's data."""
    from ..training import diffusion_sharpness_mc, train_diffusion

    lrs, width = list(cfg["lrs_diff"]), cfg["width_diff"]
    steps = [int(cfg["steps_diff"] / lr) for lr in lrs]
    rows = []
    for sim in range(cfg["sims_diff"]):
        x = training_set(seed, N_DIFF, D_DIFF, scale=SCALE_DIFF, index=sim)
        rs = replicate_seed(seed, sim)
        res = train_diffusion(x, lr=lrs, steps=steps, batch_size=cfg["batch_diff"], width=width, seed=rs,
                              device=device, progress=progress)
        for i, lr in enumerate(lrs):
            diverged = bool(res.diverged[i])
            sharp = float("nan") if diverged else diffusion_sharpness_mc(res.network(i), x, n_mc=cfg["n_mc_diff"],
                                                                         seed=rs, tol=1e-6)
            rows.append(dict(panel=PANELS[2], replicate=sim, lr=lr, steps=steps[i], diverged=diverged,
                             sharpness=sharp, bound=2.0 / (width * lr)))
    return rows


def _slope(lrs, sharp):
    """Least-squares slope of log sharpness on log lr over finite positive values (NaN if < 2)."""
    lrs, sharp = np.asarray(lrs, float), np.asarray(sharp, float)
    keep = np.isfinite(sharp) & (sharp > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(lrs[keep]), np.log(sharp[keep]), 1)[0])


def _verdict(frame):
    """Per panel: the trend comparison (decides), and the bound check per lr (reported)."""
    if "panel" not in frame.columns:
        frame = frame.assign(panel=PANELS[0])
    if "replicate" not in frame.columns:
        frame = frame.assign(replicate=frame["sim"] if "sim" in frame.columns else 0)
    lines, comps = [], []
    order = [p for p in PANELS if p in set(frame["panel"])] + sorted(set(frame["panel"]) - set(PANELS))
    for panel in order:
        sub = frame[frame["panel"] == panel]
        lrs = sorted(sub["lr"].unique())
        stats = [mean_ci(sub.loc[sub["lr"] == lr, "sharpness"]) for lr in lrs]
        bounds = [float(sub.loc[sub["lr"] == lr, "bound"].mean()) for lr in lrs]
        lines.append(f"{panel}: mean sharpness +- 95% CI over {sub['replicate'].nunique()} replicates (bound 2/(m lr)): "
                     + ", ".join(f"lr {fmt(lr)}: {fmt(m)} +- {fmt(h, 2)} ({fmt(b)})"
                                 for lr, (m, h), b in zip(lrs, stats, bounds)))
        slopes = []
        for r, g in sub.groupby("replicate", sort=True):
            ok = ~g["diverged"].astype(bool)
            slopes.append(_slope(g.loc[ok, "lr"], g.loc[ok, "sharpness"]))
        sm, sh = mean_ci(slopes)
        lines.append(f"{panel}: log-log slope of sharpness on lr per replicate, mean {fmt(sm)} +- {fmt(sh, 2)} "
                     "(-1 = tracking 2/(m lr))")
        comps.append(_stats.Comparison(f"{panel}: sharpness falls as lr grows (minus the per-replicate log-log slope "
                                       "> 0)", [-s for s in slopes]))
        checks = []
        for lr in lrs:
            g = sub[(sub["lr"] == lr) & ~sub["diverged"].astype(bool)]
            k, n, p = _stats.sign_test(g["bound"] - g["sharpness"])
            below = int((g["sharpness"] <= g["bound"]).sum())
            ratio = float((g["sharpness"] / g["bound"]).median()) if len(g) else float("nan")
            checks.append(f"lr {fmt(lr)}: {below} of {len(g)} below, median ratio {fmt(ratio, 2)}, p = {p:.2g}")
        lines.append(f"{panel}: linear-stability check (eq. 8; reported, not part of the claim), sharpness <= "
                     "2/(m lr): " + "; ".join(checks))
        div = _stats.divergence_line(sub.assign(diverged=sub["diverged"].astype(bool)))
        if div:
            lines.append(f"{panel}: {div}")
    return lines, _stats.evaluate(comps)


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
        lost = [lr for lr in lrs if sub.loc[sub["lr"] == lr, "diverged"].astype(bool).all()]
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
