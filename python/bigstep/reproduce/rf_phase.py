"""rf-phase: the phase diagram of random-features DSM in the high-dimensional limit (issue 19).

The generalization gap test_loss - train_loss over (psi_n, psi_p) = (n / d, p / d) for
n_noise = 1 and n_noise = inf noise samples per data point, from the d -> infinity limit
(bigstep.rf.asymptotic_errors), with exact finite-d fits (bigstep.rf.learning_curve, seed
means) overlaid, and verdicts on the three claims of George, Veiga and Macris:

1. crossover at p = n: along each psi_n, the gap changes regime at psi_p = psi_n.  Measured
   as the psi_p where log(gap) grows fastest in log(psi_p), searched in [psi_n / 4, 4 psi_n];
   the claim holds for an n_noise if that point is within a factor CROSS_FACTOR of psi_n on
   every psi_n whose window lies inside the grid.
2. more noise samples help when p < n: test loss(n_noise = inf) < test loss(n_noise = 1) at
   every grid point with psi_p < psi_n.
3. more noise samples increase memorization when p > n: gap(n_noise = inf) > gap(n_noise = 1)
   at every grid point with psi_p > psi_n.
Where a claim fails, the summary says where (and the smallest p / n beyond which claim 3
holds), and repeats the three measurements at other diffusion times (the limit is cheap).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ._report import Report, plt

CLAIM = ("the generalization gap (test - train loss) crosses over at p = n (generalization for p < n, "
         "memorization for p > n); n_noise = inf noise samples per point lowers the test loss when p < n and "
         "increases memorization (the gap) when p > n, compared with n_noise = 1")

MS = (1, math.inf)
T, LAM, RHO = 0.05, 1e-3, "relu"
OTHER_TIMES = (0.02, 0.1, 0.5)  # the verdict's measurements repeated here (summary only)
CROSS_FACTOR = 2.0
# grid (n_grid x n_grid, log-spaced over [psi_min, psi_max]) and the finite-d overlay: dimension d,
# seeds, psi_n rows, psi_p values
_FULL = dict(n_grid=100, psi_min=0.1, psi_max=10.0, d=100, seeds=3, overlay_psi_n=(0.5, 1.0, 2.0),
             overlay_psi_p=(0.2, 0.5, 1.0, 2.0, 5.0))
_QUICK = dict(n_grid=100, psi_min=0.1, psi_max=10.0, d=40, seeds=2, overlay_psi_n=(0.5, 2.0),
              overlay_psi_p=(0.25, 1.0, 4.0))


def settings_for(quick: bool) -> dict:
    return dict(_QUICK if quick else _FULL)


def limits(psi, t=T, lam=LAM, rho=RHO) -> dict:
    """{n_noise: AsymptoticErrors on the grid}, arrays indexed [psi_n, psi_p]."""
    from ..rf import asymptotic_errors

    return {m: asymptotic_errors(psi[:, None], psi[None, :], t, rho=rho, lam=lam, n_noise=m) for m in MS}


def crossover_ratios(psi, gap) -> np.ndarray:
    """For each psi_n row whose window [psi_n / 4, 4 psi_n] lies in the grid: (psi_p at the largest
    d log(gap) / d log(psi_p) inside the window) / psi_n.  NaN rows: window outside the grid
    (or no positive gap in it)."""
    x = np.log(psi)
    out = np.full(psi.size, np.nan)
    for i, pn in enumerate(psi):
        if pn / 4 < psi[0] * (1 - 1e-12) or 4 * pn > psi[-1] * (1 + 1e-12):
            continue
        g = gap[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.gradient(np.log(np.where(g > 0, g, np.nan)), x)
        window = (psi >= pn / 4) & (psi <= 4 * pn) & np.isfinite(slope)
        if window.any():
            out[i] = psi[np.argmax(np.where(window, slope, -np.inf))] / pn
    return out


def measure(psi, lim) -> dict:
    """The three claims' measurements on a grid: crossover ratios per n_noise, the share of
    p < n points where n_noise = inf has the lower test loss, the share of p > n points where it
    has the larger gap, and the smallest p / n beyond which the latter holds everywhere."""
    gap = {m: lim[m].test_loss - lim[m].train_loss for m in MS}
    ratio = psi[None, :] / psi[:, None]
    below, above = ratio < 1, ratio > 1
    helps = lim[math.inf].test_loss < lim[1].test_loss
    memo = gap[math.inf] > gap[1]
    bad, worse = above & ~memo, below & ~helps
    return dict(cross={m: crossover_ratios(psi, gap[m]) for m in MS},
                helps=float(helps[below].mean()), helps_worst=float(ratio[worse].max()) if worse.any() else None,
                memo=float(memo[above].mean()), memo_from=float(ratio[bad].max()) if bad.any() else 1.0)


def _beyond(mz) -> str:
    return "nowhere on the grid" if mz["memo"] == 0 else f"everywhere beyond p = {mz['memo_from']:.3g} n"


def _judge(psi, lim):
    """(lines, claims {name: bool}) from the limit on the grid."""
    mz = measure(psi, lim)
    lines, claims = [], {}
    ok1 = True
    for m in MS:
        r = mz["cross"][m]
        r = r[np.isfinite(r)]
        if r.size == 0:
            ok1 = False
            lines.append(f"n_noise = {m}: no psi_n row has its window [psi_n / 4, 4 psi_n] inside the grid")
            continue
        inside = bool(((r >= 1 / CROSS_FACTOR) & (r <= CROSS_FACTOR)).all())
        ok1 &= inside
        lines.append(f"claim 1, n_noise = {m}: log(gap) grows fastest at psi_p = {np.median(r):.3g} psi_n "
                     f"(median over {r.size} psi_n rows; range {r.min():.3g}..{r.max():.3g}): "
                     + ("within" if inside else "NOT within") + f" a factor {CROSS_FACTOR:g} of p = n")
    claims["crossover at p = n"] = ok1
    ok2 = mz["helps"] == 1.0
    claims["n_noise helps when p < n"] = ok2
    lines.append(f"claim 2: test loss lower with n_noise = inf at {100 * mz['helps']:.1f}% of the p < n grid points"
                 + ("" if ok2 else f" (fails up to p / n = {mz['helps_worst']:.3g})"))
    ok3 = mz["memo"] == 1.0
    claims["n_noise increases memorization when p > n"] = ok3
    lines.append(f"claim 3: gap larger with n_noise = inf at {100 * mz['memo']:.1f}% of the p > n grid points"
                 + ("" if ok3 else f"; it FAILS for n < p < {mz['memo_from']:.3g} n (holds {_beyond(mz)}): "
                                   "there n_noise = 1 nearly interpolates its noisy samples (train loss -> 0, "
                                   "test loss peaked at p = n), so its gap is the larger"))
    failed = [k for k, v in claims.items() if not v]
    head = ("every claim holds on the computed limit" if not failed else
            "claims that do NOT hold on the computed limit: " + "; ".join(failed) + " (the others hold)")
    return [head] + lines, claims


def _other_times(psi, lam, rho):
    lines = []
    for t in OTHER_TIMES:
        mz = measure(psi, limits(psi, t, lam, rho))
        cross = ", ".join(f"n_noise = {m}: {np.nanmedian(mz['cross'][m]):.3g}" for m in MS)
        lines.append(f"at t = {t}: crossover psi_p / psi_n (median) {cross}; claim 2 at {100 * mz['helps']:.1f}% of "
                     f"p < n; claim 3 at {100 * mz['memo']:.1f}% of p > n ({_beyond(mz)})")
    return lines


def _overlay(size, seed, progress):
    """Finite-d exact fits: one learning_curve per psi_n row; seed means and standard errors."""
    from ..rf import learning_curve

    seeds = list(range(seed, seed + size["seeds"]))
    frames = [learning_curve(size["d"], pn, list(size["overlay_psi_p"]), T, n_noise=list(MS), rho=RHO, lam=LAM,
                             seed=seeds, progress=progress) for pn in size["overlay_psi_n"]]
    import pandas as pd

    df = pd.concat(frames, ignore_index=True).rename(columns={"n_noise": "m"})  # m: n_noise, short here
    df["gap"] = df["test_loss"] - df["train_loss"]
    agg = df.groupby(["m", "psi_n", "psi_p"]).agg(
        d=("d", "first"), seeds=("seed", "size"), train_loss=("train_loss", "mean"), test_loss=("test_loss", "mean"),
        score_error=("score_error", "mean"), gap=("gap", "mean"), gap_se=("gap", "sem")).reset_index()
    return agg


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    from ..rf import asymptotic_errors
    from ._report import pandas

    pd = pandas()
    start = time.perf_counter()
    out = Path(out)
    size = settings_for(quick)
    psi = np.geomspace(size["psi_min"], size["psi_max"], size["n_grid"])
    t0 = time.perf_counter()
    lim = limits(psi)
    limit_seconds = time.perf_counter() - t0
    lines, claims = _judge(psi, lim)
    lines.append(f"the {size['n_grid']} x {size['n_grid']} limit for both n_noise took {limit_seconds:.2f} s")
    lines += _other_times(psi, LAM, RHO)

    fin = _overlay(size, seed, progress)
    fin["n_noise"] = fin["m"].map(str)
    asym = {m: asymptotic_errors(fin.psi_n[fin.m == m].to_numpy(), fin.psi_p[fin.m == m].to_numpy(), T, rho=RHO,
                                 lam=LAM, n_noise=m) for m in MS}
    fin["gap_limit"] = np.nan
    for m in MS:
        a = asym[m]
        fin.loc[fin.m == m, "gap_limit"] = a.test_loss - a.train_loss
    rel = ((fin.gap - fin.gap_limit) / fin.gap_limit.abs()).abs()
    lines.append(f"finite d = {size['d']} ({size['seeds']} seeds, {len(fin)} points): |gap - limit| / |limit| median "
                 f"{rel.median():.3g}, largest {rel.max():.3g} (at psi_n = {fin.psi_n[rel.idxmax()]:g}, psi_p = "
                 f"{fin.psi_p[rel.idxmax()]:g}, n_noise = {fin.n_noise[rel.idxmax()]}; relative to the gap, which is "
                 "small where p << n; the finite-size bias falls like 1/d, see benchmarks/rf_asymptotics_check.py)")

    rows = []
    for m in MS:
        r = lim[m]
        gn, gp = np.meshgrid(psi, psi, indexing="ij")
        rows.append(pd.DataFrame(dict(source="limit", n_noise=str(m), psi_n=gn.ravel(), psi_p=gp.ravel(), d=np.nan,
                                      seeds=0, train_loss=r.train_loss.ravel(), test_loss=r.test_loss.ravel(),
                                      score_error=r.score_error.ravel(),
                                      gap=(r.test_loss - r.train_loss).ravel(), gap_se=np.nan)))
    rows.append(fin.assign(source="finite")[["source", "n_noise", "psi_n", "psi_p", "d", "seeds", "train_loss",
                                             "test_loss", "score_error", "gap", "gap_se"]])
    table = pd.concat(rows, ignore_index=True)
    csv = out / "rf_phase.csv"
    table.to_csv(csv, index=False)
    png = out / "rf_phase.png"
    _plot(png, psi, lim, fin, size)

    settings = dict(size, quick=quick, t=T, lam=LAM, rho=RHO, n_noise=[str(m) for m in MS], seed=seed, device="cpu",
                    claims={k: bool(v) for k, v in claims.items()}, cross_factor=CROSS_FACTOR,
                    note=("limit: bigstep.rf.asymptotic_errors (docs/rf_asymptotics.md); finite d: exact fits of "
                          "rf.learning_curve, seed means; W, xi, data from Philox streams 10, 11, 12"))
    if device != "cpu":
        lines.append(f"device {device!r} requested: the rf computations run on the CPU only")
    return Report("rf-phase", CLAIM, all(claims.values()), lines, settings, [str(csv), str(png)],
                  time.perf_counter() - start)


def _plot(png, psi, lim, fin, size):
    from matplotlib import colors

    pyplot = plt()
    fig, axes = pyplot.subplots(2, 2, figsize=(12, 10))
    gaps = {m: lim[m].test_loss - lim[m].train_loss for m in MS}
    floor = 1e-3
    top = max(float(np.nanmax(g)) for g in gaps.values())
    norm = colors.LogNorm(vmin=floor, vmax=max(top, 10 * floor))
    for ax, m in zip(axes[0], MS):
        mesh = ax.pcolormesh(psi, psi, np.clip(gaps[m], floor, None), norm=norm, cmap="viridis", shading="auto")
        f = fin[fin.m == m]
        ax.scatter(f.psi_p, f.psi_n, c=np.clip(f.gap, floor, None), norm=norm, cmap="viridis", s=90,
                   edgecolors="white", linewidths=1.5, label=f"exact fits, d = {size['d']} (seed mean)")
        ax.plot(psi, psi, "w--", lw=1, label="p = n")
        ax.set(xscale="log", yscale="log", xlabel="psi_p = p / d", ylabel="psi_n = n / d",
               title=f"test - train loss, n_noise = {m} (limit; clipped at {floor:g})")
        ax.legend(loc="lower right", fontsize=8)
        fig.colorbar(mesh, ax=ax)
    diff = gaps[math.inf] - gaps[1]
    span = float(np.nanmax(np.abs(diff)))
    mesh = axes[1, 1].pcolormesh(psi, psi, diff, cmap="RdBu_r", shading="auto",
                                 norm=colors.SymLogNorm(linthresh=1e-2, vmin=-span, vmax=span))
    axes[1, 1].plot(psi, psi, "k--", lw=1)
    axes[1, 1].set(xscale="log", yscale="log", xlabel="psi_p = p / d", ylabel="psi_n = n / d",
                   title="gap(n_noise = inf) - gap(n_noise = 1) (red: inf memorizes more)")
    fig.colorbar(mesh, ax=axes[1, 1])
    from ..rf import asymptotic_errors

    ax = axes[1, 0]
    pn = size["overlay_psi_n"][len(size["overlay_psi_n"]) // 2]
    for m, color in zip(MS, ("C0", "C3")):
        cut = asymptotic_errors(pn, psi, T, rho=RHO, lam=LAM, n_noise=m)
        ax.plot(psi, cut.test_loss, "-", color=color, label=f"test, n_noise = {m}")
        ax.plot(psi, cut.train_loss, "--", color=color, label=f"train, n_noise = {m}")
        f = fin[(fin.m == m) & np.isclose(fin.psi_n, pn)]
        ax.errorbar(f.psi_p, f.test_loss, fmt="o", color=color, ms=5)
        ax.errorbar(f.psi_p, f.train_loss, fmt="s", color=color, ms=5, mfc="none")
    ax.axvline(pn, color="grey", ls=":", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="psi_p = p / d",
           title=f"psi_n = {pn:.3g}: limit (lines), exact fits d = {size['d']} (markers)")
    ax.legend(fontsize=8)
    fig.suptitle(f"random-features DSM, {RHO}, t = {T}, lam = {LAM}")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    pyplot.close(fig)
