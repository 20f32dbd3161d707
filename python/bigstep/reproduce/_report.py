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
        Whether this run supports it: True, False, or None when the run does not resolve
        the claim at its size.
    lines : list of str
        The evidence, one finding per line.
    settings : dict
        The sizes used (and which choices follow the paper's text vs the authors'
        notebook).
    files : list of str
        The paths written (data, plot, summary).
    seconds : float
        The wall time.
    comparisons : list
        The claim's directional comparisons (``bigstep.reproduce._stats.Comparison``,
        evaluated), whose sign tests decide ``supported``.
    cpu_seconds : float
        The CPU time of the process over the run (all threads), set by :func:`reproduce`.
    """

    figure: str
    claim: str
    supported: bool | None
    lines: list[str]
    settings: dict
    files: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    comparisons: list = dataclasses.field(default_factory=list)
    cpu_seconds: float = 0.0  # CPU time of the process over the run (all threads), set by reproduce()

    @property
    def verdict(self) -> str:
        """The verdict: "SUPPORTED", "NOT SUPPORTED" or "NOT RESOLVED"."""
        from ._stats import VERDICTS

        return VERDICTS[self.supported]

    def confidence(self) -> str:
        """One line: how many comparisons hold, and the largest sign-test p-value among them."""
        if not self.comparisons:
            return "no comparisons"
        held = [c for c in self.comparisons if c.status == "holds"]
        worst = max(c.p for c in self.comparisons)
        return (f"{len(held)} of {len(self.comparisons)} comparisons hold (one-sided sign tests at 5%); "
                f"largest p = {worst:.3g}")

    def text(self) -> str:
        """The summary as Markdown: verdict, claim, findings, comparisons, settings, files, wall time."""
        from ._stats import ALPHA

        out = [f"# {self.figure}: {self.verdict}", "", f"Paper's claim: {self.claim}", "", "This run:"]
        out += [f"- {line}" for line in self.lines]
        if self.comparisons:
            out += ["", f"Confidence ({self.confidence()}):"]
            out += [f"- {c.text()}" for c in self.comparisons]
            out += ["", f"Rule: SUPPORTED when every comparison holds (sign test over replicates, one-sided "
                        f"p < {ALPHA}); NOT SUPPORTED when one is contradicted (opposite direction, p < {ALPHA}/"
                        f"{len(self.comparisons)}); otherwise NOT RESOLVED at this size.  Diverged runs are "
                        "counted per learning rate and left out of the comparisons that need them."]
        out += ["", "Settings: " + json.dumps(self.settings, default=str), ""]
        if self.files:
            out += ["Files:"] + [f"- {f}" for f in self.files]
        out.append(f"Wall time: {self.seconds:.1f} s" + (f" (CPU time {self.cpu_seconds:.1f} s)" if self.cpu_seconds else ""))
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict:
        """The summary as a JSON-ready dict: verdict, confidence, comparisons, findings, settings, times."""
        return {"figure": self.figure, "verdict": self.verdict, "supported": self.supported, "claim": self.claim,
                "confidence": self.confidence(), "comparisons": [c.to_dict() for c in self.comparisons],
                "lines": self.lines, "settings": json.loads(json.dumps(self.settings, default=str)),
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds}

    def write(self, out: Path) -> None:
        """Write :meth:`text` to ``out/summary.md`` and :meth:`to_dict` to ``out/summary.json``
        (and list both files in ``files``)."""
        path = Path(out) / "summary.md"
        jpath = Path(out) / "summary.json"
        for p in (path, jpath):
            if str(p) not in self.files:
                self.files.append(str(p))
        path.write_text(self.text())
        jpath.write_text(json.dumps(self.to_dict(), indent=1) + "\n")


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


def mean_ci(values):
    """(mean, half-width of the 95% Student-t interval) of a 1-D sample (finite values)."""
    from ._stats import mean_ci as ci

    return ci(values)
