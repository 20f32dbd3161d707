"""The one result type of every trainer: :func:`bigstep.train_sgd`, :func:`bigstep.train_gd`
(1-D networks), :func:`bigstep.train_dsm` and :func:`bigstep.train_diffusion` (d-D)."""

from __future__ import annotations

import functools

import numpy as np

from .._validate import integer
from ..nets import ReLUNet1D, ReLUNetND, TimeReLUScore
from .recorder import History

_KINDS = ("sgd", "gd", "dsm", "diffusion")


class TrainResult:
    """What every trainer returns: R networks trained together.

    Network ``r = i_lr len(seed) + i_seed``, r = 0..R-1, ``R = len(lr) len(seed)``
    (lr outer, seed inner).  :meth:`to_frame` gives one row per network with its last
    record; :meth:`excess_risk` the excess risk of every network (exact for 1-D
    networks, Monte Carlo for train_dsm).

    Attributes
    ----------
    kind : str
        "sgd" (:func:`bigstep.train_sgd`), "gd" (:func:`bigstep.train_gd`), "dsm"
        (:func:`bigstep.train_dsm`) or "diffusion" (:func:`bigstep.train_diffusion`).
    lr, seed : numpy.ndarray
        Shape (R,), float64 and uint64.
    steps, steps_done : numpy.ndarray
        int64, shape (R,): the steps planned and made.
    diverged : numpy.ndarray
        bool, shape (R,).
    diverged_step : numpy.ndarray
        int64, shape (R,): the number of steps a diverged network made (its update of
        that step was refused), -1 if it trained to the end.
    W1, b1, W2 : numpy.ndarray
        The final parameters of the R networks, float64, always finite: shapes
        (R, width) each for the 1-D trainers; (R, width, p), (R, width), (R, d, width)
        for train_dsm (p = d) and train_diffusion (p = d + 1).
    seconds, steps_per_second : float
        Wall time of the training, network-steps per second.
    info : dict
        The data and settings the networks were trained on (x; mu and sigma, or the
        time grid and schedule).
    """

    def __init__(self, kind, params, *, lr, seed, steps, steps_done, diverged_step, history: History, seconds,
                 info, networks=None):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.kind = kind
        self.W1, self.b1, self.W2 = params
        self.lr = np.asarray(lr, dtype=np.float64)
        self.seed = np.asarray(seed, dtype=np.uint64)
        self.steps = np.asarray(steps, dtype=np.int64)
        self.steps_done = np.asarray(steps_done, dtype=np.int64)
        self.diverged_step = np.asarray(diverged_step, dtype=np.int64)
        self.diverged = self.diverged_step >= 0
        self._history = history
        self.seconds = float(seconds)
        self.steps_per_second = float(self.steps_done.sum() / seconds) if seconds > 0 else float("inf")
        self.info = info
        if networks is not None:
            self.__dict__["networks"] = list(networks)

    def __len__(self) -> int:
        return int(self.lr.shape[0])

    @property
    def history(self):
        """The records as a pandas DataFrame.

        One row per network and record step, sorted by network and step: network, lr,
        seed, step, the recorded values, diverged.  1-D trainers: loss, risk,
        excess_risk, sharpness (unrequested ones NaN); train_dsm: loss and excess_risk
        with excess_risk_se, as requested; train_diffusion: loss.  ``loss`` is the mean
        batch loss (exact risk for GD) over the steps since the previous record, NaN at
        step 0; a diverged network's last row is at its diverged_step with NaN values and
        diverged True.
        """
        return self._history.frame()

    def to_frame(self):
        """One row per network: network, lr, seed, diverged, diverged_step, steps_done and
        its last history record (step and the recorded values)."""
        import pandas as pd

        out = pd.DataFrame({"network": np.arange(len(self)), "lr": self.lr, "seed": self.seed,
                            "diverged": self.diverged, "diverged_step": self.diverged_step,
                            "steps_done": self.steps_done})
        h = self.history
        if h.shape[0] == 0:
            return out
        last = h.groupby("network", sort=True).tail(1).set_index("network")
        return out.join(last[["step", *self._history.values]], on="network")

    def network(self, r: int):
        """Network r (0 <= r < R)."""
        r = integer(r, "r", minimum=0)
        if r >= len(self):
            raise ValueError(f"r must be < {len(self)} (the number of networks), got {r}")
        return self.networks[r]

    @functools.cached_property
    def networks(self) -> list:
        """All R networks, r = 0..R-1 (built once): :class:`bigstep.ReLUNet1D`,
        :class:`bigstep.ReLUNetND` or :class:`bigstep.TimeReLUScore`."""
        if self.kind in ("sgd", "gd"):
            return [ReLUNet1D(self.W1[r], self.b1[r], self.W2[r]) for r in range(len(self))]
        if self.kind == "dsm":
            return [ReLUNetND(self.W1[r], self.b1[r], self.W2[r]) for r in range(len(self))]
        return [TimeReLUScore(self.W1[r], self.b1[r], self.W2[r], schedule=self.info["schedule"])
                for r in range(len(self))]

    @property
    def score(self):
        """The network when there is one (R == 1)."""
        if len(self) != 1:
            raise ValueError(f"score needs a single network, this result has {len(self)}; use network(r)")
        return self.network(0)

    def excess_risk(self, *, n_mc=5000, seed=0):
        """Excess DSM risk ``R_n(theta) - R_n(s*)`` of every network.

        1-D trainers: exact (:class:`bigstep.DSMRisk`; standard error 0); train_dsm: the
        Monte Carlo estimate of :func:`bigstep.excess_risk_mc` with ``n_mc`` draws per
        training point and ``seed``; not defined for train_diffusion (many noise levels).

        Returns
        -------
        value, standard_error : numpy.ndarray
            Shape (R,) each.
        """
        if self.kind in ("sgd", "gd"):
            from ..relu_risk import DSMRisk

            exact = DSMRisk(self.info["x"], self.info["mu"], self.info["sigma"])
            return np.array([exact.excess_risk(net) for net in self.networks]), np.zeros(len(self))
        if self.kind != "dsm":
            raise ValueError("excess_risk is defined at one noise level: for train_sgd, train_gd and train_dsm "
                             "results, not train_diffusion")
        from .mc import excess_risk_mc

        out = [excess_risk_mc(self.networks[r], self.info["x"][self.info["data_of"][r]], self.info["mu"],
                              self.info["sigma"], n_mc=n_mc, seed=seed) for r in range(len(self))]
        return np.array([o[0] for o in out]), np.array([o[1] for o in out])

    def __repr__(self):
        return (f"TrainResult(kind={self.kind!r}, networks={len(self)}, width={self.W1.shape[1]}, "
                f"diverged={int(self.diverged.sum())})")
