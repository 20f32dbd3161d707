"""Training two-layer ReLU networks on the DSM loss (paper Section 4, Appendices D, E).

- :func:`train_sgd`, :func:`train_gd` (:mod:`~bigstep.training.sgd1d`): 1-D networks,
  fused batched SGD in compiled code and exact gradient descent;
- :func:`train_dsm`, :func:`train_diffusion` (:mod:`~bigstep.training.problems`): d-D
  networks at one noise level and the time-conditional network, in PyTorch, batched
  over networks (:mod:`~bigstep.training._batch`);
- :func:`excess_risk_mc`, :func:`sharpness_mc`, :func:`diffusion_sharpness_mc`
  (:mod:`~bigstep.training.mc`): Monte Carlo excess risk and fixed-sample sharpness;
- :mod:`~bigstep.training.recorder`: the history records of the 1-D trainers.
"""

from .mc import diffusion_sharpness_mc, excess_risk_mc, sharpness_mc
from .problems import time_grid, train_diffusion, train_dsm
from .result import TrainResult
from .sgd1d import train_gd, train_sgd

__all__ = ["train_sgd", "train_gd", "train_dsm", "train_diffusion", "TrainResult", "excess_risk_mc", "sharpness_mc",
           "diffusion_sharpness_mc", "time_grid"]
