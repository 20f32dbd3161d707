"""The glossary (docs/glossary.md) enforced on the public API: every public function,
class and public method of the public modules is inspected, so a new function that
breaks a naming rule fails here, not in review."""

from __future__ import annotations

import importlib
import inspect
import itertools

import numpy as np
import pytest

import bigstep

PUBLIC_MODULES = ["bigstep", "bigstep.nets", "bigstep.scores", "bigstep.rf", "bigstep.theory", "bigstep.training",
                  "bigstep.sweeps", "bigstep.reproduce"]

# Arguments that may be passed by position: the data a call is about (arrays, the noise
# level or time, the object measured) -- everything else is keyword-only.
DATA = {"net", "score", "y", "x", "x0", "x_train", "samples", "train", "a", "b", "mu", "sigma", "t", "v", "theta",
        "train_time", "train_times",
        "seed", "shape", "n_samples", "dim", "times", "d", "psi_n", "psi_p", "p", "n", "n_noise", "mean", "cov",
        "W1", "b1", "W2", "width", "task", "grid", "name", "ref", "out", "figure", "r"}

# Result records: built by the library, read by the caller (their fields are not arguments).
RECORDS = {"Bound", "Report", "TrainResult", "RFModel", "AsymptoticErrors"}

# name -> what to call it instead
FORBIDDEN = {
    "m": "width (a network's number of neurons) or n_noise (bigstep.rf's noise samples per point)",
    "seeds": "seed (an int, or a sequence where a function runs several seeds)",
    "w1": "W1", "w2": "W2", "bias1": "b1",
    "num_samples": "n_samples", "nsamples": "n_samples", "num_steps": "n_steps", "nsteps": "n_steps",
    "n_mc_samples": "n_mc", "learning_rate": "lr", "eta": "lr", "num_threads_": "num_threads",
}


def _members():
    """(qualified name, callable) for every public function, class and public method."""
    seen = {}
    for mod_name in PUBLIC_MODULES:
        mod = importlib.import_module(mod_name)
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not callable(obj) or id(obj) in seen:
                continue
            seen[id(obj)] = (f"{mod_name}.{name}", obj)
            if inspect.isclass(obj):
                for attr, raw in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    fn = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
                    if inspect.isfunction(fn):
                        seen[id(fn)] = (f"{mod_name}.{name}.{attr}", fn)
    return sorted(seen.values(), key=lambda item: item[0])


MEMBERS = _members()


def _params(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature
        return []
    return [p for p in sig.parameters.values() if p.name not in ("self", "cls")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def test_the_public_api_is_inspected():
    names = {n for n, _ in MEMBERS}
    assert {"bigstep.train_sgd", "bigstep.rf.fit", "bigstep.ReLUNet1D.init", "bigstep.theory.proposition6_bound",
            "bigstep.rf.learning_curve", "bigstep.noise_schedule"} <= names
    assert len(MEMBERS) > 60


@pytest.mark.parametrize("qualname, fn", MEMBERS, ids=[n for n, _ in MEMBERS])
def test_no_forbidden_argument_names(qualname, fn):
    for p in _params(fn):
        assert p.name not in FORBIDDEN, f"{qualname}: argument {p.name!r}; the glossary says {FORBIDDEN[p.name]}"


@pytest.mark.parametrize("qualname, fn", MEMBERS, ids=[n for n, _ in MEMBERS])
def test_keyword_only_after_the_data(qualname, fn):
    """Only the data may be positional, and every argument with a default is keyword-only."""
    if qualname.split(".")[-1] in RECORDS or qualname.split(".")[-2] in RECORDS and qualname.endswith("__init__"):
        return
    for p in _params(fn):
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            assert p.default is p.empty, f"{qualname}: {p.name!r} has a default, so it must be keyword-only"
            assert p.name in DATA, f"{qualname}: {p.name!r} is not data, so it must be keyword-only"


@pytest.mark.parametrize("keyword_only", [False, True], ids=["positional", "keyword-only"])
def test_shared_arguments_come_in_one_order(keyword_only):
    """Two arguments that appear together in several signatures appear in the same order:
    the data in one order (net or score, y, x, mu, sigma or t, ...), the keyword-only
    arguments in the glossary's order (sizes, optimisation, time grid, Monte Carlo,
    randomness, records, numerics, execution)."""
    first_seen = {}
    for qualname, fn in MEMBERS:
        if qualname.split(".")[-1] in RECORDS:
            continue
        names = [p.name for p in _params(fn) if (p.kind == p.KEYWORD_ONLY) == keyword_only]
        for a, b in itertools.combinations(names, 2):  # a before b here
            if (b, a) in first_seen:
                pytest.fail(f"{qualname} has {a!r} before {b!r}, {first_seen[(b, a)]} the other way round")
            first_seen.setdefault((a, b), qualname)


def test_width_and_n_noise():
    """width is the network's number of neurons everywhere; bigstep.rf calls its noise
    samples per data point n_noise."""
    with_width = {q for q, fn in MEMBERS if any(p.name == "width" for p in _params(fn))}
    assert {"bigstep.train_sgd", "bigstep.train_gd", "bigstep.train_dsm", "bigstep.train_diffusion",
            "bigstep.ReLUNet1D.init", "bigstep.theory.proposition6_bound"} <= with_width
    with_noise = {q for q, fn in MEMBERS if any(p.name == "n_noise" for p in _params(fn))}
    assert {"bigstep.rf.fit", "bigstep.rf.learning_curve", "bigstep.rf.RFScore", "bigstep.rf.regime"} <= with_noise
    assert all(q.startswith("bigstep.rf.") for q in with_noise)
    from bigstep.sweeps.tasks import fig2_cell, rf_cell

    assert "width" in inspect.signature(fig2_cell).parameters and "n_noise" in inspect.signature(rf_cell).parameters


def test_one_inner_default():
    defaults = {q: p.default for q, fn in MEMBERS for p in _params(fn) if p.name == "inner"}
    assert defaults and set(defaults.values()) == {"gaussian"}, defaults


def test_one_network_convention():
    """Every network: W1, b1, W2 (b2) in layer order, width and dim."""
    rng = np.random.default_rng(0)
    nets = [bigstep.ReLUNet1D(rng.normal(size=4), np.zeros(4), rng.normal(size=4)),
            bigstep.ReLUNetND(rng.normal(size=(4, 2)), np.zeros(4), rng.normal(size=(2, 4))),
            bigstep.TimeReLUScore(rng.normal(size=(4, 3)), np.zeros(4), rng.normal(size=(2, 4)))]
    for net in nets:
        names = [p.name for p in _params(type(net))][:3]
        assert names == ["W1", "b1", "W2"], (type(net).__name__, names)
        assert net.width == 4 and net.dim in (1, 2)
        for attr in ("W1", "b1", "W2"):
            assert isinstance(getattr(net, attr), np.ndarray)
    assert set(bigstep.__all__) >= {"ReLUNet1D", "ReLUNetND", "TimeReLUScore"}


def test_one_noise_schedule():
    """One schedule function; its dtype follows its input."""
    assert not hasattr(bigstep, "ou_schedule")
    schedules = [q for q, fn in MEMBERS if q.endswith("schedule") and inspect.isfunction(fn)]
    assert schedules == ["bigstep.noise_schedule"], schedules
    assert bigstep.noise_schedule(np.float32(0.3))[1].dtype == np.float32
    assert bigstep.noise_schedule(np.array([0.3]))[1].dtype == np.float64


def test_one_name_one_meaning():
    """A public name means one thing: the same name in two public modules is the same
    object (bigstep.memorized_fraction measures given samples; rf.sample_memorization
    draws them first)."""
    where = {}
    for mod_name in PUBLIC_MODULES:
        mod = importlib.import_module(mod_name)
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if inspect.ismodule(obj):  # a subpackage may share its entry point's name (reproduce)
                continue
            if name in where:
                assert where[name][1] is obj, f"{mod_name}.{name} and {where[name][0]}.{name} differ"
            else:
                where[name] = (mod_name, obj)
    assert "memorized_fraction" not in bigstep.rf.__all__
