"""Local creativity: the global empirical score memorizes, local score machines create.

Data: scikit-learn's bundled handwritten digits (sklearn.datasets.load_digits: 1,797
images of 8 x 8 pixels, grey levels 0..16, shipped inside scikit-learn, nothing is
downloaded), scaled to [-1, 1].  Three score machines built from the same training set
drive the same reverse diffusion (bigstep.sample_reverse, Euler-Maruyama on a geometric
time grid from T = 2 down to delta = 1e-3, the same Philox seeds for every machine):

- global: the empirical optimal score s* of the flattened images (EmpiricalScore);
- local: LocalScore(x, patch=P) -- every pixel's posterior mean from the P x P patches of the
  training images at the same place;
- equivariant local: LocalScore(x, patch=P, equivariant=True) -- every position of every
  training image competes.

For every sample: the distance to its nearest training image d1 and the nearest-neighbour
ratio d1/d2 (memorized when below 1/3, bigstep.memorized_fraction).  Verdict, as a
statistical statement over all samples of all seeds: the global machine memorizes (the
lower end of the Wilson 95% interval of its memorized fraction is at least 1/2), each
local machine creates (the upper end of its interval is at most 1/5 and below the global
machine's lower end, and the 95% interval of its mean d1 lies above the global machine's).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ._common import fmt
from ._report import Report, mean_ci, pandas, plt

CLAIM = ("Reverse diffusion with the global empirical optimal score reproduces training images (memorization), "
         "while the local and equivariant local score machines, which see the training images only through "
         "P x P patches, generate new images that are far from every training image (creativity).")

MACHINES = ("global", "local", "equivariant local")
MEMORIZED_AT = 1 / 3  # nearest-neighbour ratio threshold (the paper's)
GLOBAL_MEMORIZES = 0.5  # lower end of the global machine's interval at least this
LOCAL_CREATES = 0.2  # upper end of a local machine's interval at most this


def settings_for(quick: bool) -> dict:
    """quick: 2 seeds x 24 samples per machine, 60 steps (about a minute per machine of
    sampling on 2 cores for the equivariant one); full: 4 seeds x 64 samples, 100 steps."""
    if quick:
        return dict(seeds=2, samples=24, steps=60, patch=5, T=2.0, delta=1e-3, n_train=None, shown=8)
    return dict(seeds=4, samples=64, steps=100, patch=5, T=2.0, delta=1e-3, n_train=None, shown=8)


def load_digits_images(n_train=None) -> np.ndarray:
    """scikit-learn's digits as float64 images (n, 8, 8) scaled to [-1, 1] (x / 8 - 1)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("local-creativity needs scikit-learn (its bundled digits): "
                          "pip install 'bigstep[repro]'") from exc
    images = load_digits().images.astype(np.float64) / 8.0 - 1.0
    return images if n_train is None else images[: int(n_train)]


def machines(x: np.ndarray, patch: int) -> dict:
    import bigstep

    return {"global": bigstep.EmpiricalScore(x.reshape(len(x), -1)),
            "local": bigstep.LocalScore(x, patch=patch),
            "equivariant local": bigstep.LocalScore(x, patch=patch, equivariant=True)}


def run(out, *, quick: bool, seed: int, device: str, progress: bool) -> Report:
    import bigstep

    start = time.perf_counter()
    cfg = settings_for(quick)
    x = load_digits_images(cfg.get("n_train"))
    flat = x.reshape(len(x), -1)
    dim = flat.shape[1]
    times = np.geomspace(cfg["T"], cfg["delta"], cfg["steps"] + 1)  # h_k / sigma_k^2 about constant: stable EM
    rows, shown = [], {}
    for name, score in machines(x, cfg["patch"]).items():
        for k in range(cfg["seeds"]):
            run_seed = seed * 1000 + k  # the same seeds for every machine: paired comparisons
            samples = bigstep.sample_reverse(score, cfg["samples"], dim, times=times, seed=run_seed,
                                             progress=progress)
            dist, idx = bigstep.nearest_neighbors(samples, flat, k=2)
            for j in range(len(samples)):
                ratio = dist[j, 0] / dist[j, 1] if dist[j, 1] > 0 else 0.0
                rows.append(dict(machine=name, seed=run_seed, sample=j, d1=dist[j, 0], d2=dist[j, 1], ratio=ratio,
                                 memorized=bool(ratio < MEMORIZED_AT), nearest=int(idx[j, 0])))
            if k == 0:
                shown[name] = (samples[: cfg["shown"]], flat[idx[: cfg["shown"], 0]])
    frame = pandas().DataFrame(rows)
    data = out / "local_creativity_samples.csv"
    frame.to_csv(data, index=False)
    lines, ok = verdict(frame, _train_spacing(flat))
    plot = out / "local_creativity.png"
    _plot(shown, x.shape[1:], plot)
    settings = dict(cfg, n=len(x), data="sklearn.datasets.load_digits, x / 8 - 1", schedule="ou",
                    time_grid="geometric from T to delta", padding="zeros", threshold="d1/d2 < 1/3",
                    machines=list(MACHINES), seed=seed, quick=quick,
                    device="cpu (the local kernels run on the CPU backends)" if device != "cpu" else "cpu")
    return Report("local-creativity", CLAIM, ok, lines, settings, [str(data), str(plot)], time.perf_counter() - start)


def _train_spacing(flat: np.ndarray) -> float:
    """Median distance of a training image to its nearest other training image (a scale
    for d1: a created sample is about as far from the data as the data are from each other)."""
    import bigstep

    d, _ = bigstep.nearest_neighbors(flat, flat, k=2)
    return float(np.median(d[:, 1]))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion k / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided p-value of the pooled two-proportion z-test of p1 > p2."""
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0 if k1 / n1 > k2 / n2 else 1.0
    z = (k1 / n1 - k2 / n2) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def verdict(frame, spacing: float | None = None):
    """(lines, supported) from the per-sample table (machine, seed, d1, memorized)."""
    lines, stats = [], {}
    for name in MACHINES:
        part = frame[frame["machine"] == name]
        n, k = len(part), int(part["memorized"].sum())
        lo, hi = wilson(k, n)
        d_mean, d_half = mean_ci(part["d1"])
        per_seed = [fmt(g["memorized"].mean(), 2) for _, g in part.groupby("seed")]
        stats[name] = dict(n=n, k=k, lo=lo, hi=hi, d_lo=d_mean - d_half, d_hi=d_mean + d_half)
        lines.append(f"{name}: memorized fraction {k}/{n} = {fmt(k / n if n else float('nan'))} "
                     f"(95% CI {fmt(lo)}..{fmt(hi)}; per seed {', '.join(per_seed)}), distance to the nearest "
                     f"training image {fmt(d_mean)} +- {fmt(d_half)} (mean, 95% CI; median {fmt(part['d1'].median())})")
    if spacing is not None:
        lines.append(f"for scale: a training image's nearest other training image is {fmt(spacing)} away (median)")
    if min(s["n"] for s in stats.values()) < 10:
        lines.append("too few samples per machine (< 10) to judge")
        return lines, None
    g = stats["global"]
    ok = g["lo"] >= GLOBAL_MEMORIZES
    lines.append(f"global memorizes (lower end of its 95% CI >= {GLOBAL_MEMORIZES}): {'yes' if ok else 'NO'}")
    for name in MACHINES[1:]:
        s = stats[name]
        creates = s["hi"] <= LOCAL_CREATES and s["hi"] < g["lo"] and s["d_lo"] > g["d_hi"]
        p = two_proportion_p(g["k"], g["n"], s["k"], s["n"])
        lines.append(f"{name} creates (upper end of its 95% CI <= {LOCAL_CREATES} and below the global's lower end; "
                     f"its mean distance's CI above the global's): {'yes' if creates else 'NO'} "
                     f"(one-sided p of 'global memorizes more' = {p:.2g})")
        ok = ok and creates
    if not ok:
        lines.append("the claim is NOT supported by this run (see the failed part above)")
    return lines, bool(ok)


def _plot(shown: dict, shape, path) -> None:
    """Rows: for each machine its first samples (top) and their nearest training images (below)."""
    pyplot = plt()
    cols = max(len(s) for s, _ in shown.values())
    fig, axes = pyplot.subplots(2 * len(shown), cols, figsize=(1.1 * cols, 1.25 * 2 * len(shown)), squeeze=False)
    for r, (name, (samples, nearest)) in enumerate(shown.items()):
        for c in range(cols):
            for k, (imgs, label) in enumerate(((samples, f"{name}: samples"), (nearest, "nearest training image"))):
                ax = axes[2 * r + k, c]
                ax.axis("off")
                if c < len(imgs):
                    ax.imshow(imgs[c].reshape(shape), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
                if c == 0:
                    ax.set_title(label, fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)
