"""Worker processes that die with the process that started them.

A sweep's pool workers must not outlive their driver: after ``kill -9`` of the driver (the
out-of-memory killer, a batch system's time limit) they would otherwise run on with parent
pid 1, holding the pipes of whatever launched the driver.  :func:`tie_to_parent` makes the
calling process exit when its parent does, two ways:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills this process the moment
  the parent thread that started it exits (immediate, nothing to poll);
- everywhere, a daemon thread that polls ``os.getppid()`` every ``poll`` seconds and calls
  ``os._exit`` once it is no longer the parent's pid (the fallback where prctl is missing,
  and a second line of defence).

The parent's pid is passed in rather than read here, so a parent that died before the
child got this far is noticed at once (the child has been re-parented by then).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
ORPHAN_EXIT_CODE = 70  # os._exit status of a worker whose parent died


def set_parent_death_signal(sig: int = getattr(signal, "SIGKILL", 9)) -> bool:
    """prctl(PR_SET_PDEATHSIG, sig) on Linux; True if it took effect, False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(int(sig)), ctypes.c_ulong(0),
                        ctypes.c_ulong(0), ctypes.c_ulong(0))
    except (OSError, AttributeError):
        return False
    return rc == 0


def _watch(parent: int, poll: float) -> None:
    while True:
        time.sleep(poll)
        if os.getppid() != parent:
            os._exit(ORPHAN_EXIT_CODE)


def tie_to_parent(parent: int, *, poll: float = 0.5, use_prctl: bool = True) -> None:
    """Make this process exit as soon as process ``parent`` (its parent) is gone: call it
    first thing in a worker, with the pid the parent passed down (``os.getpid()`` there).
    ``use_prctl=False`` leaves only the polling thread (tests use it to check the fallback).
    """
    if use_prctl:
        set_parent_death_signal()
    if os.getppid() != parent:  # died before the prctl: nobody would send the signal
        os._exit(ORPHAN_EXIT_CODE)
    threading.Thread(target=_watch, args=(int(parent), float(poll)), daemon=True,
                     name="bigstep-parent-watch").start()
