"""The history records of the 1-D trainers (:func:`bigstep.train_sgd`, :func:`bigstep.train_gd`):
the exact risk, excess risk and sharpness of every network at every record step."""

from __future__ import annotations

import numpy as np

from ..nets import ReLUNet1D
from ..relu_risk import dsm_risk, sharpness

RECORDS = ("loss", "risk", "excess_risk", "sharpness")
_HISTORY_COLUMNS = ("network", "lr", "seed", "step", *RECORDS, "diverged")


def pandas_module():
    try:
        import pandas
    except ImportError:
        raise ImportError("bigstep.train_sgd / train_gd return a pandas DataFrame history; "
                          "install it with `pip install bigstep[repro]` (or `pip install pandas`)") from None
    return pandas


def record_names(record) -> tuple[str, ...]:
    if isinstance(record, str):
        record = (record,)
    try:
        names = tuple(record)
    except TypeError:
        raise TypeError(f"record must be a sequence of names from {RECORDS}, got {type(record).__name__}") from None
    for r in names:
        if r not in RECORDS:
            raise ValueError(f"record names must be among {RECORDS}, got {r!r}")
    return names


class Recorder:
    """Computes the requested records and collects the history rows."""

    def __init__(self, opts, lr_of, seed_of):
        self.o = opts
        self.lr_of, self.seed_of = lr_of, seed_of
        self.wrt = "all" if opts["train_inner"] else "outer_bias"
        self.rows = {c: [] for c in _HISTORY_COLUMNS}
        self._opt_risk = None

    def optimal_risk(self) -> float:
        if self._opt_risk is None:
            from ..optimal_risk import optimal_risk

            self._opt_risk = optimal_risk(self.o["x"], self.o["mu"], self.o["sigma"])
        return self._opt_risk

    def add(self, r: int, step: int, net: ReLUNet1D, loss: float, diverged: bool) -> None:
        o, names = self.o, self.o["record"]
        args = (net, o["x"], o["mu"], o["sigma"])
        risk = excess = sharp = np.nan
        if "risk" in names or "excess_risk" in names:
            risk_v = dsm_risk(*args, backend=o["backend"])
            if "risk" in names:
                risk = risk_v
            if "excess_risk" in names:  # = bigstep.excess_risk(net, ...), R_n(s*) computed once
                excess = risk_v - self.optimal_risk()
        if "sharpness" in names:
            sharp = sharpness(*args, wrt=self.wrt, backend=o["backend"])
        vals = (r, self.lr_of[r], self.seed_of[r], step, loss if "loss" in names else np.nan, risk, excess, sharp,
                diverged)
        for c, v in zip(_HISTORY_COLUMNS, vals):
            self.rows[c].append(v)

    def frame(self):
        pd = pandas_module()
        df = pd.DataFrame(self.rows, columns=list(_HISTORY_COLUMNS))
        df = df.astype({"network": np.int64, "lr": np.float64, "seed": np.uint64, "step": np.int64,
                        **{c: np.float64 for c in RECORDS}, "diverged": bool})
        return df.sort_values(["network", "step"], kind="stable").reset_index(drop=True)


def record_steps(steps: int, every: int) -> list[int]:
    return sorted(set(range(0, steps, every)) | {steps})
