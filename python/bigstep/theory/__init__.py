"""Section 5-6 of the paper: the weighted total variation TV_pi and the bounds on it.

:mod:`bigstep.theory.tv` computes pi, TV_pi and Delta (pi in closed form);
:mod:`bigstep.theory.bounds` evaluates the paper's bounds with their hypotheses, and
lists where the printed statements and their proofs disagree.  Both are re-exported here.

Notation (docs/design.md section 2.7; x sorted, x_(1) <= ... <= x_(n)):

    Delta = min_k (x_(k+1) - x_(k))                                 (min_spacing)
    TV_pi(s) = int |s''(y)| pi(y) dy                                 (tv_derivative)
    pi(y) = E_{xi ~ N(0, sigma^2)}[min(pi_+(y - xi), pi_-(y - xi))]  on [mu x_(1), mu x_(n)], 0 outside
    pi_-(z) = P(mu U < z)^2 E[z - mu U | mu U < z]                   (U uniform on the data)
    pi_+(z) = P(mu U > z)^2 E[mu U - z | mu U > z]                   (tv_weight)

The paper prints ``TV_pi(s*) = int |s*'| pi`` (Section 5); the superscript (1), "TV of the
first derivative", the proofs (Theorem 4, Proposition 10) and docs/design.md all use
``|s*''|``, which is what is computed here.

"""

from .bounds import (
    Bound,
    excess_risk_lower_bound,
    lr_threshold,
    optimal_risk_bound,
    proposition6_bound,
    proposition7_bound,
    theorem4_bound,
)
from . import bounds, tv
from .tv import min_spacing, tv_derivative, tv_weight

__all__ = [*tv.__all__, *bounds.__all__]
