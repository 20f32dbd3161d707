"""Standard views of a sweep store: excess risk vs learning rate with 95% confidence
bands (one curve per other setting), and the memorized fraction over n x d as a heat map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .store import load_sweep


def plot_sweep(out, kind: str = "auto", path=None) -> list[str]:
    """Draw the standard view(s) of the sweep stored in ``out``; returns the PNG paths."""
    from ..reproduce._report import mean_ci, plt

    frame = load_sweep(out)
    if frame.empty:
        raise ValueError(f"out {str(out)!r} holds no sweep cells")
    frame = frame[frame["status"] == "ok"]
    if kind == "auto":
        kind = "excess-risk" if {"lr", "excess_risk"} <= set(frame.columns) else (
            "memorization" if {"n", "d"} <= set(frame.columns) else "")
        if not kind:
            raise ValueError("no standard view fits this sweep: it needs (lr, excess_risk) or (n, d) columns")
    pyplot = plt()
    written = []
    if kind == "excess-risk":
        fig, ax = pyplot.subplots(figsize=(5, 3.6))
        others = [c for c in ("t", "mu", "sigma", "n", "width", "n_noise")
                  if c in frame.columns and frame[c].nunique() > 1]
        groups = frame.groupby(others) if others else [((), frame)]
        for key, g in groups:
            lrs = np.sort(g["lr"].unique())
            stats = np.array([mean_ci(g.loc[g["lr"] == lr, "excess_risk"]) for lr in lrs])
            label = ", ".join(f"{c} = {v:.3g}" if isinstance(v, float) else f"{c} = {v}"
                              for c, v in zip(others, np.atleast_1d(key).tolist())) or "excess risk"
            ax.plot(lrs, stats[:, 0], "o-", label=label)
            ax.fill_between(lrs, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], alpha=0.25)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("excess risk (mean, 95% CI)")
        ax.legend(fontsize=7)
        target = Path(path or Path(out) / "excess_risk_vs_lr.png")
    elif kind == "memorization":
        cols = [c for c in frame.columns if c.endswith("memorized_fraction")]
        fig, axes = pyplot.subplots(1, len(cols), figsize=(4.5 * len(cols), 3.6), squeeze=False)
        for ax, col in zip(axes[0], cols):
            table = frame.pivot_table(index="n", columns="d", values=col, aggfunc="mean")
            im = ax.imshow(table.to_numpy(), origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks(range(table.shape[1]), [str(v) for v in table.columns])
            ax.set_yticks(range(table.shape[0]), [str(v) for v in table.index])
            ax.set_xlabel("d")
            ax.set_ylabel("n")
            ax.set_title(col)
            fig.colorbar(im, ax=ax)
        target = Path(path or Path(out) / "memorization_n_d.png")
    else:
        raise ValueError(f"kind must be 'auto', 'excess-risk' or 'memorization', got {kind!r}")
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    pyplot.close(fig)
    written.append(str(target))
    return written
