"""The terminal a command runs at: can a person be asked something?"""
from __future__ import annotations

import os
import sys


def interactive() -> bool:
    """True when a person can answer at the terminal. False when stdin is not a
    terminal, and when it is not open at all (``0<&-``, some service managers)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed or broken stream
        return False


def usable_cores() -> int:
    """The CPU cores this process may run on (``taskset``, container limits), which can
    be fewer than the machine has: the number to size thread pools by."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)
