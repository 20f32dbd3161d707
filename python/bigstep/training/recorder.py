"""History records for every trainer: :class:`History` collects the rows (network, lr,
seed, step, the recorded values, diverged) of a run and builds the DataFrame of
:attr:`bigstep.TrainResult.history`; :class:`Recorder` computes the records of the 1-D
trainers (exact risk, excess risk and sharpness) with one :class:`bigstep.DSMRisk` per
run, so the data are checked and R_n(s*) computed once, and the risk and sharpness of a
network share one prepared state."""

from __future__ import annotations

import math

import numpy as np

from .. import _backend
from ..nets import ReLUNet1D
from ..relu_risk import DSMRisk

RECORDS = ("loss", "risk", "excess_risk", "sharpness")


def pandas_module():
    try:
        import pandas
    except ImportError:
        raise ImportError("the trainers return a pandas DataFrame history; install it with "
                          "`pip install bigstep[repro]` (or `pip install pandas`)") from None
    return pandas


def record_names(record, allowed=RECORDS) -> tuple[str, ...]:
    """``record`` (a name or a sequence of names from ``allowed``) as a tuple."""
    if isinstance(record, str):
        record = (record,)
    try:
        names = tuple(record)
    except TypeError:
        raise TypeError(f"record must be a sequence of names from {allowed}, got {type(record).__name__}") from None
    for r in names:
        if r not in allowed:
            raise ValueError(f"record names must be among {allowed}, got {r!r}")
    return names


def record_steps(steps: int, every: int) -> list[int]:
    return sorted(set(range(0, steps, every)) | {steps})


class History:
    """The rows of a run's history: (network, lr, seed, step, *values, diverged)."""

    def __init__(self, values, lr_of, seed_of):
        self.values = tuple(values)
        self.lr_of, self.seed_of = lr_of, seed_of
        self.rows = []

    def add(self, r: int, step: int, values, diverged: bool = False) -> None:
        self.rows.append((int(r), float(self.lr_of[r]), int(self.seed_of[r]), int(step), *map(float, values),
                          bool(diverged)))

    def diverged(self, r: int, step: int) -> None:
        """A diverged network's last row: NaN values at the step it stopped."""
        self.add(r, step, [math.nan] * len(self.values), True)

    def frame(self):
        pd = pandas_module()
        cols = ["network", "lr", "seed", "step", *self.values, "diverged"]
        df = pd.DataFrame(self.rows, columns=cols)
        df = df.astype({"network": np.int64, "lr": np.float64, "seed": np.uint64, "step": np.int64,
                        **{c: np.float64 for c in self.values}, "diverged": bool})
        return df.sort_values(["network", "step"], kind="stable").reset_index(drop=True)


class Recorder(History):
    """The history of a 1-D run: the requested records of every network, exact."""

    def __init__(self, opts, lr_of, seed_of):
        super().__init__(RECORDS, lr_of, seed_of)
        self.names = opts["record"]
        wrt = "all" if opts["train_inner"] else "outer_bias"
        # the exact risk runs on the host; a trainer backend without relu_risk kernels
        # (cuda, torch) records with the best host backend
        backend = opts["backend"]
        if backend not in _backend.backends("relu_risk"):
            backend = "auto"
        self.exact = DSMRisk(opts["x"], opts["mu"], opts["sigma"], wrt=wrt, backend=backend)

    def record(self, r: int, step: int, net: ReLUNet1D, loss: float, diverged: bool) -> None:
        names, exact = self.names, self.exact
        risk = excess = sharp = math.nan
        if "risk" in names or "excess_risk" in names:
            value = exact.risk(net)
            risk = value if "risk" in names else math.nan
            excess = value - exact.optimal_risk if "excess_risk" in names else math.nan
        if "sharpness" in names:
            sharp = exact.sharpness(net)
        self.add(r, step, (loss if "loss" in names else math.nan, risk, excess, sharp), diverged)
