"""The result of the d-D trainers."""

from __future__ import annotations

import numpy as np

from .._validate import integer
from ..nets import ReLUNetND, TimeReLUScore
from .mc import excess_risk_mc


class TrainResult:
    """What :func:`train_dsm` and :func:`train_diffusion` return.

    Networks r = 0..R-1 (R = len(lr) * len(seed), r = i_lr * len(seed) + i_seed):

    - ``lr``, ``seed``, ``steps`` (planned), ``steps_done``: arrays (R,);
    - ``diverged`` (bool, R) and ``diverged_step`` (int, R; -1 if it trained to the end):
      the update of step j (0-based) was refused, the parameters are those after j updates;
    - ``W1`` (R, m, p), ``b`` (R, m), ``W2`` (R, d, m): float64 numpy, always finite;
    - ``history``: a pandas DataFrame sorted by network and step, one row per network and
      record step (columns network, lr, seed, step, loss [, excess_risk, excess_risk_se],
      diverged): records at step 0 (loss NaN) and every ``record_every`` steps when it is
      given, and always at the end; ``loss`` is the mean batch loss over the updates since
      the previous record; a diverged network's last row is at its diverged_step, with
      diverged=True and NaN values (as :func:`bigstep.train_sgd`, the 1-D trainer);
    - ``to_frame()``: one row per network with its last record;
    - ``network(r)``: a :class:`ReLUNetND` (train_dsm) or a :class:`bigstep.TimeReLUScore`
      (train_diffusion); ``networks`` (alias ``scores``): all of them; ``score``:
      ``network(0)`` when R == 1;
    - ``seconds``, ``steps_per_second`` (network-steps per second of wall time).
    """

    def __init__(self, kind, params, lr, seed, steps, steps_done, diverged_step, records, record_cols,
                 seconds, info):
        self.kind = kind
        self.W1, self.b, self.W2 = params
        self.lr, self.seed = lr, seed
        self.steps, self.steps_done = steps, steps_done
        self.diverged_step = diverged_step
        self.diverged = diverged_step >= 0
        self._records, self._record_cols = records, record_cols
        self.seconds = seconds
        self.steps_per_second = float(steps_done.sum() / seconds) if seconds > 0 else float("inf")
        self.info = info  # mu, sigma or the time grid, schedule, data

    @property
    def history(self):
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("the training history is a pandas DataFrame: pip install bigstep[repro] "
                              "(or pip install pandas)") from None
        cols = ["network", "lr", "seed", "step"] + list(self._record_cols) + ["diverged"]
        df = pd.DataFrame(self._records, columns=cols)
        df = df.astype({"network": np.int64, "lr": np.float64, "seed": np.uint64, "step": np.int64,
                        **{c: np.float64 for c in self._record_cols}, "diverged": bool})
        return df.sort_values(["network", "step"], kind="stable").reset_index(drop=True)

    def to_frame(self):
        """One row per network: network, lr, seed, diverged, diverged_step, steps_done and
        its last history record."""
        import pandas as pd

        out = pd.DataFrame({"network": np.arange(self.lr.shape[0]), "lr": self.lr, "seed": self.seed,
                            "diverged": self.diverged, "diverged_step": self.diverged_step,
                            "steps_done": self.steps_done})
        h = self.history
        if h.shape[0] == 0:
            return out
        last = h.groupby("network", sort=True).tail(1).set_index("network")
        return out.join(last[["step", *self._record_cols]], on="network")

    def network(self, r: int):
        r = integer(r, "r", minimum=0)
        if r >= self.lr.shape[0]:
            raise ValueError(f"r must be < {self.lr.shape[0]} (the number of networks), got {r}")
        if self.kind == "dsm":
            return ReLUNetND(self.W1[r], self.b[r], self.W2[r])
        return TimeReLUScore(self.W1[r], self.b[r], self.W2[r], schedule=self.info["schedule"])

    @property
    def networks(self):
        """All networks, r = 0..R-1 (ReLUNetND or TimeReLUScore)."""
        return [self.network(r) for r in range(self.lr.shape[0])]

    scores = networks

    @property
    def score(self):
        if self.lr.shape[0] != 1:
            raise ValueError(f"score needs a single network, this result has {self.lr.shape[0]}; use network(r)")
        return self.network(0)

    def excess_risk(self, n_mc=5000, seed=0):
        """Monte Carlo excess risk of every network (train_dsm only): arrays (mean, se) of shape (R,)."""
        if self.kind != "dsm":
            raise ValueError("excess_risk is defined for train_dsm results (one noise level)")
        out = [excess_risk_mc(self.network(r), self.info["x"][self.info["data_of"][r]], self.info["mu"],
                              self.info["sigma"], n_mc=n_mc, seed=seed) for r in range(self.lr.shape[0])]
        return np.array([o[0] for o in out]), np.array([o[1] for o in out])

    def __repr__(self):
        return (f"TrainResult(kind={self.kind!r}, networks={self.lr.shape[0]}, width={self.W1.shape[1]}, "
                f"diverged={int(self.diverged.sum())})")
