"""The examples in the public modules' docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "bigstep.optimal_score",
    "bigstep.random",
    "bigstep.relu_risk",
    "bigstep.optimal_risk",
    "bigstep.theory",
    "bigstep.theory.tv",
    "bigstep.theory.bounds",
    "bigstep.nets",
    "bigstep.metrics",
    "bigstep.scores",
    "bigstep.sampler",
    "bigstep.info",
    "bigstep.reproduce",
    "bigstep.sweeps",
    "bigstep.sweeps.store",
    "bigstep",
    "bigstep.rf._fit",
    "bigstep.rf._curve",
    "bigstep.rf._sampling",
    "bigstep.rf._asymptotic",
    "bigstep.training.sgd1d",
    "bigstep.training.problems",
    "bigstep.training.mc",
    "bigstep.fgt",
]
# modules whose examples need an optional dependency
REQUIRES = {"bigstep.rf._fit": ("scipy",), "bigstep.rf._curve": ("scipy", "pandas"),
            "bigstep.rf._sampling": ("scipy",), "bigstep.rf._asymptotic": ("scipy",),
            "bigstep.training.sgd1d": ("pandas",), "bigstep.training.problems": ("torch", "pandas"),
            "bigstep.training.mc": ("torch", "pandas")}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    for dependency in REQUIRES.get(name, ()):
        pytest.importorskip(dependency)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
    if name in ("bigstep.optimal_score", "bigstep.relu_risk", "bigstep.metrics", "bigstep.sampler"):
        assert result.attempted > 0, f"{name} should have docstring examples"


def test_readme_tour_runs(capsys):
    """The README's Python tour runs as written (skipped outside a source checkout)."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not next to tests/ (installed tests)")
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    assert blocks, "README.md should contain a python tour"
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md block {i}", "exec"), {})
