"""Progress bars and chunked runs for long calls (sampling, training, sweeps).

Long compiled loops run in chunks sized so one chunk takes about ``CHUNK_SECONDS``:
between chunks Python regains control, so the bar is redrawn and Ctrl-C
(KeyboardInterrupt) stops the call within about a second.

Where the bar goes (chosen when it starts):

- in a Jupyter notebook, or on a terminal, with tqdm installed: ``tqdm.auto`` (a widget
  in the notebook, a text bar on the terminal);
- on a terminal without tqdm: bigstep's own one-line bar, redrawn in place;
- anywhere else (a log file, a pipe, a captured stream): a few plain lines per run, at
  its first update and each time another quarter of the work is done, not one per update.
"""

from __future__ import annotations

import importlib.util
import sys
import time

CHUNK_SECONDS = 0.25  # target wall time of one compiled chunk
LINES = 5  # lines a run writes outside a terminal: its first update, then at 25%, 50%, 75% and 100%


def _in_notebook() -> bool:
    """Whether this is a Jupyter kernel (without importing IPython when it is not loaded)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def _mode(stream) -> str:
    """"tqdm", "bar" (bigstep's redrawn line) or "lines" (a few lines per run)."""
    interactive = _in_notebook() or _is_terminal(stream)
    if interactive and importlib.util.find_spec("tqdm") is not None:
        return "tqdm"
    return "bar" if interactive else "lines"


class Progress:
    """Progress of a run of ``total`` units on stderr: ``Progress(total, enabled, label)``,
    then ``update(done)`` (and optionally a short ``postfix`` text); the bar closes when
    ``done`` reaches ``total`` (or on :meth:`close`)."""

    def __init__(self, total: int, enabled: bool, label: str = "", unit: str = "steps"):
        self.total, self.enabled, self.label, self.unit = total, bool(enabled), label, unit
        self.start = time.perf_counter()
        self.closed = False
        self._tqdm = None
        self._next_line = 0  # lines mode: the next quarter to report (0: the first update)
        self.stream = sys.stderr
        self.mode = _mode(self.stream) if self.enabled else "off"
        if self.mode == "tqdm":
            from tqdm.auto import tqdm

            self._tqdm = tqdm(total=total, desc=label or None, unit=unit, file=self.stream, leave=True)

    def update(self, done: int, postfix: str = "") -> None:
        if not self.enabled or self.closed:
            return
        if self._tqdm is not None:
            if postfix:
                self._tqdm.set_postfix_str(postfix, refresh=False)
            self._tqdm.update(done - self._tqdm.n)
        elif self.mode == "bar":
            self._bar(done, postfix)
        else:
            self._lines(done, postfix)
        if done >= self.total:
            self.close()

    def _text(self, done: int, postfix: str) -> str:
        elapsed = time.perf_counter() - self.start
        left = f", ~{elapsed / done * (self.total - done):.1f}s left" if 0 < done < self.total else ""
        extra = f" {postfix}" if postfix else ""
        return f"{done}/{self.total} {self.unit} {elapsed:.1f}s{left}{extra}"

    def _bar(self, done: int, postfix: str) -> None:
        frac = done / self.total if self.total else 1.0
        self.stream.write(f"\r{self.label} [{'#' * int(30 * frac):<30}] {self._text(done, postfix)}")
        self.stream.flush()

    def _lines(self, done: int, postfix: str) -> None:
        frac = done / self.total if self.total else 1.0
        if frac * 4 < self._next_line and done < self.total:
            return
        self._next_line = int(frac * 4) + 1
        self.stream.write(f"{self.label + ': ' if self.label else ''}{self._text(done, postfix)} "
                          f"({100 * frac:.0f}%)\n")
        self.stream.flush()

    def close(self) -> None:
        if self.closed or not self.enabled:
            return
        self.closed = True
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()


def run_in_chunks(step_fn, total: int, bar: Progress | None = None, first_chunk: int = 1) -> None:
    """Call ``step_fn(k0, k1)`` on consecutive ranges covering [0, total).

    Chunk lengths grow (at most 4x per chunk) until one chunk takes about
    CHUNK_SECONDS, measured on the previous chunk.  The bar is closed when the run ends,
    also when it is interrupted.
    """
    k, chunk = 0, max(1, int(first_chunk))
    try:
        while k < total:
            k1 = min(total, k + chunk)
            t0 = time.perf_counter()
            step_fn(k, k1)
            per_step = (time.perf_counter() - t0) / (k1 - k)
            k = k1
            if bar is not None:
                bar.update(k)
            chunk = max(1, min(4 * chunk, int(CHUNK_SECONDS / max(per_step, 1e-9))))
    finally:
        if bar is not None:
            bar.close()
