"""Progress bars and chunked runs for long calls (sampling, training, sweeps).

Long compiled loops run in chunks sized so one chunk takes about ``CHUNK_SECONDS``:
between chunks Python regains control, so the bar is redrawn and Ctrl-C
(KeyboardInterrupt) stops the call within about a second.
"""

from __future__ import annotations

import sys
import time

CHUNK_SECONDS = 0.25  # target wall time of one compiled chunk


class Progress:
    """A one-line progress bar on stderr: ``Progress(total, enabled, label).update(done)``."""

    def __init__(self, total: int, enabled: bool, label: str = "", unit: str = "steps"):
        self.total, self.enabled, self.label, self.unit = total, bool(enabled), label, unit
        self.start = time.perf_counter()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        frac = done / self.total if self.total else 1.0
        bar = "#" * int(30 * frac)
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {done}/{self.total} {self.unit} {elapsed:6.1f}s")
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run_in_chunks(step_fn, total: int, bar: Progress | None = None, first_chunk: int = 1) -> None:
    """Call ``step_fn(k0, k1)`` on consecutive ranges covering [0, total).

    Chunk lengths grow (at most 4x per chunk) until one chunk takes about
    CHUNK_SECONDS, measured on the previous chunk.
    """
    k, chunk = 0, max(1, int(first_chunk))
    while k < total:
        k1 = min(total, k + chunk)
        t0 = time.perf_counter()
        step_fn(k, k1)
        per_step = (time.perf_counter() - t0) / (k1 - k)
        k = k1
        if bar is not None:
            bar.update(k)
        chunk = max(1, min(4 * chunk, int(CHUNK_SECONDS / max(per_step, 1e-9))))
