"""Marking the code that runs once per live frame.

``@per_frame`` changes nothing at run time. It tells a reader (and the test that keeps
such functions short, tests/test_architecture.py) that this code is on the live path:
set up outside it, keep it short, allocate nothing you can reuse.
"""
from __future__ import annotations

from typing import TypeVar

F = TypeVar("F")


def per_frame(fn: F) -> F:
    return fn
