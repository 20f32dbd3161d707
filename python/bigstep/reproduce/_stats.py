"""The statistics behind every reproduction's verdict.

A figure's claim is split into directional comparisons, each measured on independent
replicates (seeds, and data sets where the paper draws them) and paired within a
replicate (every learning rate of a replicate trains on the same data with the same
draws).  For each comparison, over the replicates where both sides finished:

- the sign test: the number of replicates whose difference has the claimed sign, and
  the exact one-sided binomial p-value P(X >= k), X ~ Bin(n, 1/2) (ties dropped);
- the paired mean difference with its 95% Student-t interval (printed, not decisive).

A comparison *holds* when its sign-test p-value is below ALPHA = 0.05, is *contradicted*
when the opposite one-sided p-value is below ALPHA / K (K comparisons in the claim:
Bonferroni, so a claim is called false at the 5% level overall), and is *unresolved*
otherwise.  The verdict: SUPPORTED when every comparison holds (an intersection-union
test: the conjunction is supported at level ALPHA), NOT SUPPORTED when one is
contradicted, otherwise NOT RESOLVED (at this size).  Diverged runs have no trained
model to measure: they are counted per learning rate and reported, the replicate is
left out of the comparisons that need that run, and the learning rates compared never
change.  With n replicates the smallest reachable p-value is 2^-n, so a comparison can
hold only with n >= 5.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

ALPHA = 0.05
VERDICTS = {True: "SUPPORTED", False: "NOT SUPPORTED", None: "NOT RESOLVED"}

# two-sided 95% Student t quantiles t_{0.975, df}, df = 1..30
_T975 = (12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
         2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688,
         2.131449546, 2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845,
         2.073873068, 2.068657610, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
         2.045229642, 2.042272456)


def t975(df: int) -> float:
    """t_{0.975, df}: a table up to df = 30, beyond it the Cornish-Fisher expansion
    (error < 1e-5 for df > 30)."""
    if df < 1:
        return float("nan")
    if df <= 30:
        return _T975[df - 1]
    z = 1.959963984540054
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def sign_test(diffs) -> tuple[int, int, float]:
    """(k, n, p): k of the n nonzero finite differences are positive; p = P(X >= k),
    X ~ Binomial(n, 1/2), the exact one-sided p-value for "the median difference is > 0"."""
    v = np.asarray(diffs, dtype=float)
    v = v[np.isfinite(v) & (v != 0)]
    n, k = int(v.size), int((v > 0).sum())
    if n == 0:
        return 0, 0, 1.0
    p = sum(math.comb(n, i) for i in range(k, n + 1)) / 2.0**n
    return k, n, float(p)


def mean_ci(values) -> tuple[float, float]:
    """(mean, half-width of the 95% Student-t interval) of the finite values (NaN if < 2)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float("nan")
    return float(v.mean()), float(t975(v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


@dataclasses.dataclass
class Comparison:
    """One directional comparison of a claim: ``diffs`` are the per-replicate differences
    whose sign the claim predicts to be positive (NaN where a run diverged)."""

    name: str          # what is compared, e.g. "d = 1, sigma 0.31: excess risk lr 0.5 > lr 0.1"
    diffs: list        # per replicate, claimed > 0; NaN: left out (a run diverged)
    unit: str = ""     # of the mean difference, for the text
    k: int = 0
    n: int = 0
    p: float = 1.0         # sign test, claimed direction
    p_opposite: float = 1.0
    mean: float = float("nan")
    half: float = float("nan")
    left_out: int = 0
    status: str = "unresolved"  # "holds", "contradicted" or "unresolved"

    def evaluate(self, n_comparisons: int) -> "Comparison":
        d = np.asarray(self.diffs, dtype=float)
        self.left_out = int((~np.isfinite(d)).sum())
        self.k, self.n, self.p = sign_test(d)
        _, _, self.p_opposite = sign_test(-d)
        self.mean, self.half = mean_ci(d)
        if self.p < ALPHA:
            self.status = "holds"
        elif self.p_opposite < ALPHA / max(1, n_comparisons):
            self.status = "contradicted"
        else:
            self.status = "unresolved"
        return self

    def text(self) -> str:
        out = (f"{self.name}: {self.k} of {self.n} replicates in the claimed direction, sign test p = "
               f"{self.p:.3g}; mean difference {_fmt(self.mean)} +- {_fmt(self.half)} (95% CI){self.unit}")
        if self.left_out:
            out += f"; {self.left_out} replicate(s) left out (a run diverged)"
        return out + f" - {self.status.upper()}"

    def to_dict(self) -> dict:
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                for k, v in dataclasses.asdict(self).items() if k != "diffs"}


def verdict(comparisons) -> bool | None:
    """True (every comparison holds), False (one is contradicted) or None (not resolved)."""
    statuses = [c.status for c in comparisons]
    if not statuses:
        return None
    if "contradicted" in statuses:
        return False
    if all(s == "holds" for s in statuses):
        return True
    return None


def evaluate(comparisons) -> list:
    """Evaluate every comparison of a claim (K = their number for the Bonferroni bound)."""
    return [c.evaluate(len(comparisons)) for c in comparisons]


def paired(frame, key, value, a, b, by="replicate"):
    """Per-replicate differences value[key == a] - value[key == b] of a pandas frame (one row
    per replicate and key), aligned on ``by``; NaN where either side is missing or NaN."""
    left = frame[frame[key] == a].set_index(by)[value]
    right = frame[frame[key] == b].set_index(by)[value]
    idx = sorted(set(left.index) | set(right.index))
    return (left.reindex(idx) - right.reindex(idx)).to_numpy(dtype=float)


def divergence_line(frame, key="lr", label="lr") -> str | None:
    """"diverged runs per lr: lr 2: 3 of 8, lr 1: 0 of 8" (None when nothing diverged)."""
    if "diverged" not in frame.columns or not frame["diverged"].any():
        return None
    parts = []
    for v, g in frame.groupby(key, sort=True):
        parts.append(f"{label} {v:g}: {int(g['diverged'].sum())} of {len(g)}")
    return "diverged runs (counted, not compared) per " + label + ": " + ", ".join(parts[::-1])


def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.3g}"
