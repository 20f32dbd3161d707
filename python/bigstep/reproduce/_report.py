"""The summary every reproduction writes: the paper's claim, this run's verdict, numbers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


@dataclasses.dataclass
class Report:
    """What a reproduction found.

    Attributes
    ----------
    figure : str
        The reproduction, e.g. "fig2".
    claim : str
        The paper's claim in one sentence.
    supported : bool or None
        Whether this run supports it (None when the run is too small to judge).
    lines : list of str
        The evidence, one finding per line.
    settings : dict
        The sizes used (and which choices follow the paper's text vs the authors'
        notebook).
    files : list of str
        The paths written (data, plot, summary).
    seconds : float
        The wall time.
    """

    figure: str
    claim: str
    supported: bool | None
    lines: list[str]
    settings: dict
    files: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        """The verdict: "SUPPORTED", "NOT SUPPORTED" or "INCONCLUSIVE"."""
        return {True: "SUPPORTED", False: "NOT SUPPORTED", None: "INCONCLUSIVE"}[self.supported]

    def text(self) -> str:
        """The summary as Markdown: verdict, claim, findings, settings, files, wall time."""
        out = [f"# {self.figure}: {self.verdict}", "", f"Paper's claim: {self.claim}", "", "This run:"]
        out += [f"- {line}" for line in self.lines]
        out += ["", "Settings: " + json.dumps(self.settings, default=str), ""]
        if self.files:
            out += ["Files:"] + [f"- {f}" for f in self.files]
        out.append(f"Wall time: {self.seconds:.1f} s")
        return "\n".join(out) + "\n"

    def write(self, out: Path) -> None:
        """Write :meth:`text` to ``out/summary.md`` (and list that file in ``files``)."""
        path = Path(out) / "summary.md"
        if str(path) not in self.files:
            self.files.append(str(path))
        path.write_text(self.text())


def plt():
    """matplotlib.pyplot on the Agg backend (no display needed), or a clear ImportError."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("the reproductions need matplotlib and pandas: pip install 'bigstep[repro]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def pandas():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover
        raise ImportError("the reproductions need matplotlib and pandas: pip install 'bigstep[repro]'") from exc
    return pd


def mean_ci(values, z: float = 1.96):
    """(mean, half-width of the normal-approximation 95% interval) of a 1-D sample."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    half = z * v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return float(v.mean()), float(half)
