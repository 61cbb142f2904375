"""The terminal a command runs at: can a person be asked something?"""
from __future__ import annotations

import sys


def interactive() -> bool:
    """True when a person can answer at the terminal. False when stdin is not a
    terminal, and when it is not open at all (``0<&-``, some service managers)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed or broken stream
        return False
