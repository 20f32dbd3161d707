"""The package's surface: ``import bigstep`` stays light (no numba, scipy, torch or
pandas), and the subpackages are attributes of it."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bigstep

HEAVY = ("numba", "scipy", "torch", "pandas")
SUBPACKAGES = ("rf", "sweeps", "theory", "reproduce", "training", "nets", "scores")


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_bigstep_imports_no_heavy_dependency():
    code = ("import sys, bigstep\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert _run(code).strip() == "[]"


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackages_are_attributes(name):
    """``bigstep.<name>`` works right after ``import bigstep`` (fresh interpreter), and is
    the module ``import bigstep.<name>`` gives."""
    code = (f"import importlib, bigstep\n"
            f"mod = bigstep.{name}\n"
            f"assert mod is importlib.import_module('bigstep.{name}'), mod\n"
            f"assert '{name}' in dir(bigstep)\n"
            f"print(mod.__name__)")
    assert _run(code).strip() == f"bigstep.{name}"


def test_lazy_names_resolve_to_their_objects():
    from bigstep import sweeps, training

    assert bigstep.train_sgd is training.train_sgd and bigstep.TrainResult is training.TrainResult
    assert bigstep.sweep is sweeps.sweep
    assert set(bigstep.__all__) <= set(dir(bigstep))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        bigstep.nothing_here  # noqa: B018
