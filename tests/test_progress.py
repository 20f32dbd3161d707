"""Progress output (bigstep._progress): tqdm.auto where it can draw (a terminal or a
notebook) and is installed, bigstep's own bar on a terminal otherwise, and a few plain
lines per run anywhere else; the bar is closed when a run is interrupted."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest

import bigstep
from bigstep import _progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _no_tqdm(monkeypatch):
    real = _progress.importlib.util.find_spec
    monkeypatch.setattr(_progress.importlib.util, "find_spec", lambda name, *a: None if name == "tqdm" else real(name, *a))


def test_a_log_gets_a_few_lines_per_run(capsys):
    bar = _progress.Progress(1000, True, "job")
    for k in range(1, 1001):
        bar.update(k)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert bar.mode == "lines" and 1 <= len(lines) <= _progress.LINES, lines
    assert lines[-1].startswith("job: 1000/1000 steps") and "(100%)" in lines[-1] and "\r" not in err


def test_a_training_run_logs_a_few_lines(capsys):
    x = np.linspace(-1.0, 1.0, 5)
    bigstep.train_sgd(x, 0.9, 0.3, lr=0.1, steps=400, width=8, record=(), record_every=1, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert 1 <= len(lines) <= _progress.LINES and "400/400 steps" in lines[-1], lines


def test_a_terminal_without_tqdm_gets_the_redrawn_bar(monkeypatch):
    _no_tqdm(monkeypatch)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = _progress.Progress(10, True, "job")
    for k in range(1, 11):
        bar.update(k)
    out = term.getvalue()
    assert bar.mode == "bar" and out.count("\r") == 10 and out.endswith("\n") and "10/10 steps" in out


def test_a_terminal_with_tqdm_gets_tqdm(monkeypatch):
    pytest.importorskip("tqdm")
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = _progress.Progress(10, True, "job", unit="cells")
    for k in range(1, 11):
        bar.update(k, postfix="k done")
    assert bar.mode == "tqdm" and bar.closed
    assert "job" in term.getvalue() and "10/10" in term.getvalue()


def test_a_notebook_gets_tqdm_auto(monkeypatch):
    pytest.importorskip("tqdm")
    shell = type("ZMQInteractiveShell", (), {})()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert _progress._in_notebook()
    assert _progress._mode(io.StringIO()) == "tqdm"  # the kernel's stream is not a terminal
    _no_tqdm(monkeypatch)
    assert _progress._mode(io.StringIO()) == "bar"


def test_disabled_writes_nothing(capsys):
    bar = _progress.Progress(5, False, "job")
    bar.update(5)
    assert bar.mode == "off" and capsys.readouterr().err == ""


def test_an_interrupted_run_closes_its_bar(monkeypatch):
    _no_tqdm(monkeypatch)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = _progress.Progress(100, True, "job")

    def step(k0, k1):
        if k0 >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _progress.run_in_chunks(step, 100, bar)
    assert bar.closed and term.getvalue().endswith("\n")
