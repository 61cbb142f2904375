"""The newest-frame-wins hand-over between two threads.

A ``LatestSlot`` holds at most one item. ``put`` from the producer replaces an item the
consumer has not taken yet (and counts it as ``dropped``), so a slow consumer makes the
producer's older work disappear instead of queueing behind it: latency cannot pile up.
The capture thread (camera -> loop) and the pipelined landmarks stage (landmarks ->
generator) both hand over through one.

``get`` waits for an item. It returns None once the producer has ``end``-ed and the
slot is empty, raises the producer's ``fail``-ure, raises the current ``problem`` (for
example "camera lost") while there is no item, and raises TimeoutError after
``timeout`` seconds.
"""
from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar
from models.hotpath import per_frame

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._problem: BaseException | None = None
        self.dropped = 0  # items replaced before the consumer took them
        self.put_count = 0
        self.taken = 0

    @per_frame
    def put(self, item: T) -> None:
        with self._cond:
            self.dropped += self._item is not None
            self._item = item
            self.put_count += 1
            self._cond.notify_all()

    def end(self) -> None:
        """The producer has nothing more: ``get`` returns None once the slot is empty."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """The producer died: ``get`` raises ``error``."""
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def set_problem(self, problem: BaseException | None) -> None:
        """A passing condition (camera lost) that ``get`` raises while no item waits."""
        with self._cond:
            self._problem = problem
            self._cond.notify_all()

    def wait_empty(self, timeout: float) -> bool:
        """Block until the consumer took the item (backpressure); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._item is None, timeout)

    @per_frame
    def get(self, timeout: float = 1.0) -> T | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._item is None:
                if self._error is not None:
                    raise self._error
                if self._ended:
                    return None
                if self._problem is not None:
                    raise self._problem
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("nothing arrived in the slot")
                self._cond.wait(remaining)
            item, self._item = self._item, None
            self.taken += 1
            self._cond.notify_all()
            return item
