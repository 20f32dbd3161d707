"""One-command reproductions of the paper's figures: ``bigstep reproduce figN``.

Each figure module has ``run(out, *, quick, seed, device, progress) -> Report``: it
writes its data (CSV), a PNG plot styled like the paper's figure and ``summary.md``
(the paper's claim, whether this run supports it, with the numbers) under ``out``.

Examples
--------
>>> from bigstep.reproduce import FIGURES
>>> sorted(FIGURES)[:2]
['fig1', 'fig2']
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from ._report import Report

__all__ = ["FIGURES", "reproduce", "Report"]

FIGURES = {
    "fig1": ("fig1", "learned 1-D scores s_theta vs s* at several learning rates (Figure 1)"),
    "fig2": ("fig2", "excess risk vs learning rate, d = 1 exact and d = 10 Monte Carlo (Figure 2)"),
    "fig3": ("fig3", "memorization of diffusion samples vs learning rate, d = 2 (Figure 3)"),
    "fig4": ("fig4", "memorization of diffusion samples vs dimension (Figure 4)"),
    "fig5": ("fig5", "sharpness at the end of training vs 2/(m lr) (Figure 5)"),
    "rf-curves": ("rf_curves", "random-features DSM learning curves vs p/d for m in {1, 4, 16, inf} (issue 8)"),
    "rf-phase": ("rf_phase", "random-features DSM phase diagram (test - train loss) in the d -> inf limit (issue 19)"),
    "local-creativity": ("local_creativity", "global s* memorizes, local and equivariant local score machines "
                         "create: samples on scikit-learn's digits (issue 18)"),
}
"""The reproductions: name (as ``bigstep reproduce NAME`` takes it) -> (module under
``bigstep.reproduce``, one-line description)."""


def reproduce(figure: str, *, out=None, seed: int = 0, quick: bool = False, device: str = "cpu",
              progress: bool = True, backend: str = "auto", panels=None) -> Report:
    """Run one reproduction and write its files under ``out``.

    Parameters
    ----------
    figure : str
        A key of :data:`FIGURES` ("fig1" .. "fig5", "rf-curves", "rf-phase").
    out : str or path or None
        The folder (default ``./bigstep-FIGURE``), created if needed.
    seed : int
        The base seed, >= 0 (each replicate derives its own Philox seed from it).
    quick : bool
        Sizes that finish in minutes to an hour on 2 CPU cores; the full run uses the
        paper's settings (Appendix E).
    device : str
        "cpu" or "cuda" (the torch trainers).
    progress : bool
        Progress bars.
    backend : str
        "auto", "cpp" or "numba": runs every CPU kernel of the reproduction on that backend.
    panels : str or list of str or None
        A subset of a multi-panel figure's panels (fig2: "d=1", "d=10"; fig5: "d=1",
        "d=10", "diffusion"); the verdict then covers those panels only, and the summary
        says so.

    Returns
    -------
    Report
        The claim, the verdict with its confidence, the numbers and the paths of the files
        written.
    """
    from .._validate import integer
    from ._common import cpu_backend

    if figure not in FIGURES:
        raise ValueError(f"figure must be one of {sorted(FIGURES)}, got {figure!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    seed = integer(seed, "seed", minimum=0)
    out = Path(out if out is not None else f"bigstep-{figure}")
    out.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(f".{FIGURES[figure][0]}", __name__)
    extra = {}
    if panels is not None:
        names = getattr(module, "PANEL_NAMES", None)
        if names is None:
            raise ValueError(f"panels: {figure} has no panels to choose from")
        panels = [panels] if isinstance(panels, str) else list(panels)
        bad = [p for p in panels if p not in names]
        if bad or not panels:
            raise ValueError(f"panels must be a non-empty subset of {list(names)} for {figure}, got {panels!r}")
        extra["panels"] = tuple(p for p in names if p in panels)
    cpu0 = time.process_time()
    with cpu_backend(backend):
        report = module.run(out, quick=bool(quick), seed=seed, device=device, progress=bool(progress), **extra)
    report.cpu_seconds = time.process_time() - cpu0
    report.settings.setdefault("backend", backend)
    report.write(out)
    return report
