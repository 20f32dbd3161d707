"""Process trees from /proc (Linux): which processes a driver started, and whether they
are gone.  A process is identified by (pid, start time), so a reused pid is not mistaken
for a survivor; a zombie counts as gone (it has exited and only awaits reaping)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _stat(pid: int):
    """(state, ppid, start time in clock ticks) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()  # after "pid (comm)": comm may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def descendants(root: int) -> dict:
    """{pid: (start time, command line)} of every live descendant of ``root``."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] != "Z":
                table[int(entry)] = st
    out, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (_, ppid, start) in table.items():
            if ppid == parent and pid not in out:
                out[pid] = (start, _cmdline(pid))
                frontier.append(pid)
    return out


def alive(procs: dict) -> dict:
    """The entries of ``procs`` (as from :func:`descendants`) still running."""
    left = {}
    for pid, (start, cmd) in procs.items():
        st = _stat(pid)
        if st is not None and st[0] != "Z" and st[2] == start:
            left[pid] = (start, cmd)
    return left


def wait_gone(procs: dict, timeout: float) -> dict:
    """Wait up to ``timeout`` s for every process of ``procs`` to end; returns the survivors."""
    deadline = time.monotonic() + timeout
    left = alive(procs)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = alive(left)
    return left
