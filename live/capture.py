"""Getting driver frames to the loop.

``ThreadedCapture`` reads the source on its own thread into a one-frame slot: the
newest frame wins, a frame the loop had no time for is overwritten (and counted),
never queued. So latency cannot pile up behind a slow frame. ``SyncCapture`` reads
on demand: every frame is processed (benchmarks flat out, deterministic tests).

Both deliver ``Frame``s, ``None`` when the source has ended, and raise
``CameraLost`` when a live source fails; ``ThreadedCapture`` then reopens it in the
background (``reopen``) until it comes back.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from live.slot import LatestSlot
from live.sources import Frame, FrameSource, SourceError
from models.hotpath import per_frame


class CameraLost(RuntimeError):
    """The live source stopped delivering; the capture is trying to reopen it."""


class SyncCapture:
    """Reads the source on demand in the caller's thread: every frame, none dropped."""

    lossless = True

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.dropped = 0
        self.delivered = 0

    @per_frame
    def get(self, timeout: float = 1.0) -> Frame | None:
        try:
            frame = self.source.read()
        except SourceError as e:
            raise CameraLost(str(e)) from None
        if frame is not None:
            self.delivered += 1
        return frame

    def stop(self) -> None:
        """Nothing to stop: frames are read only on demand."""

    def close(self) -> None:
        self.source.close()


class ThreadedCapture:
    """``reopen``: builds a fresh source after a failure (None: a failure is final).
    ``retry_s``: wait between reopen attempts."""

    lossless = False  # one slot: the newest frame wins

    def __init__(self, source: FrameSource, *, reopen: Callable[[], FrameSource] | None = None,
                 retry_s: float = 1.0, log: Callable[[str], None] = print) -> None:
        self.source, self.reopen, self.retry_s, self.log = source, reopen, retry_s, log
        self._slot: LatestSlot[Frame] = LatestSlot()
        self._stop = False
        self._switch_to: Callable[[], FrameSource] | None = None
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Frames overwritten before the loop took them."""
        return self._slot.dropped

    @property
    def captured(self) -> int:
        return self._slot.put_count

    @property
    def delivered(self) -> int:
        return self._slot.taken

    def switch(self, open_source: Callable[[], FrameSource]) -> None:
        """Read from another source from the next frame on (another camera, picked in
        the panel). ``open_source`` runs on the capture thread; if it fails, the current
        source stays and the failure is logged. It also becomes the way to reopen."""
        self._switch_to = open_source

    def _switch_now(self) -> None:
        opener, self._switch_to = self._switch_to, None
        try:
            new = opener()
        except Exception as e:  # noqa: BLE001 - a camera that will not open leaves the current one running
            self.log(f"cannot switch the source ({type(e).__name__}: {e}); staying on the current one")
            return
        old, self.source, self.reopen = self.source, new, opener
        try:
            old.close()
        except Exception:  # noqa: BLE001
            pass
        self.log("source switched")

    def _run(self) -> None:
        while not self._stop:
            if self._switch_to is not None:
                self._switch_now()
            try:
                frame = self.source.read()
            except Exception as e:  # noqa: BLE001 - any device error = camera lost
                frame, error = None, f"{type(e).__name__}: {e}"
            else:
                error = None if frame is not None or self.reopen is None else "the camera stopped delivering frames"
            if frame is not None:
                self._slot.put(frame)
            elif error is None:  # a file or a finite source ended
                self._slot.end()
                return
            else:
                self._recover(error)

    def _recover(self, error: str) -> None:
        self._slot.set_problem(CameraLost(error))
        self.log(f"camera lost ({error}); retrying every {self.retry_s:g} s")
        try:
            self.source.close()
        except Exception:  # noqa: BLE001
            pass
        while not self._stop:
            time.sleep(self.retry_s)
            try:
                self.source = self.reopen()
            except Exception:  # noqa: BLE001
                continue
            self.log("camera back")
            self._slot.set_problem(None)
            return

    @per_frame
    def get(self, timeout: float = 1.0) -> Frame | None:
        """The newest frame not yet delivered; None when the source has ended.
        Raises CameraLost while the source is down, TimeoutError after ``timeout``."""
        return self._slot.get(timeout)

    def stop(self) -> None:
        """Stop reading (the run is over): from here on the counts do not change."""
        self._stop = True
        self._thread.join(timeout=5)

    def close(self) -> None:
        self.stop()
        try:
            self.source.close()
        except Exception:  # noqa: BLE001
            pass
