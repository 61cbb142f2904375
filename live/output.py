"""The output stage: what leaves for the sinks, made from the pipeline's composed frame.

Three steps, each timed as its own stage:

* ``view``: what to show: the output, the camera (passthrough), the sketch, or all
  three side by side (``Mode``);
* ``watermark``: the invisible mark with the model's ID (``reenact verify`` reads it);
* ``badge``: the visible "AI-generated" label.

The pipeline's buffers are reused frame to frame, so the stage marks a copy of its own,
never the pipeline's frame: marks cannot accumulate.
"""
from __future__ import annotations

import enum
from typing import Callable

import numpy as np

from live.pipeline import FrameResult, fit_into
from live.sources import Frame
from live.trust import Badge, Watermarker
from models.hotpath import per_frame

OUTPUT_STAGES = ("view", "watermark", "badge")


class Mode(enum.Enum):
    OUTPUT = "output"
    PASSTHROUGH = "passthrough"
    SKETCH = "sketch"
    SIDE_BY_SIDE = "side-by-side"


class OutputStage:
    """``render(frame, result)`` -> (image to send, timings). ``size`` = (width, height)."""

    def __init__(self, size: tuple[int, int], *, badge: Badge | None, watermark: Watermarker | None,
                 mode: Mode = Mode.OUTPUT, clock: Callable[[], float]) -> None:
        self.size, self.badge, self.watermark, self.mode, self.clock = size, badge, watermark, mode, clock
        self._view = np.zeros((size[1], size[0], 3), np.uint8)
        self._final = np.zeros_like(self._view)
        self._last_crop: np.ndarray | None = None
        self._sent = 0  # frames that left: the watermark's carrier runs on this count

    @per_frame
    def render(self, frame: Frame, result: FrameResult) -> tuple[np.ndarray, dict[str, float]]:
        t0 = self.clock()
        if result.crop is not None:
            self._last_crop = result.crop
        view = self._render_view(frame, result)
        t1 = self.clock()
        image, t2 = self._mark(view, t1)
        return image, {"view": t1 - t0, "watermark": t2 - t1, "badge": self.clock() - t2}

    def disclose(self, image: np.ndarray) -> np.ndarray:
        """Watermark and badge on a frame made outside the loop (the neutral face while
        the camera is away)."""
        return self._mark(image, self.clock())[0]

    @per_frame
    def _mark(self, view: np.ndarray, t_start: float) -> tuple[np.ndarray, float]:
        """(the frame that leaves, the time the watermark was done)."""
        if self.badge is None and self.watermark is None:
            return view, t_start
        if self.watermark is not None:
            self.watermark.apply(view, self._sent, out=self._final)  # the copy out of the view, marked on the way
        else:
            np.copyto(self._final, view)
        self._sent += 1
        t_mark = self.clock()
        if self.badge is not None:
            self.badge.apply(self._final)
        return self._final, t_mark

    @per_frame
    def _render_view(self, frame: Frame, result: FrameResult) -> np.ndarray:
        if self.mode is Mode.OUTPUT:
            return result.image
        if self.mode is Mode.PASSTHROUGH:
            return fit_into(frame.image, self.size, self._view)
        blank = np.zeros((8, 8, 3), np.uint8)
        sketch = result.sketch if result.sketch is not None else blank
        if self.mode is Mode.SKETCH:
            return fit_into(sketch, self.size, self._view)
        w, h = self.size
        third = (w // 3, h)
        # Side by side shows the generated face itself, at the size of the other panes.
        panes = [fit_into(frame.image, third), fit_into(sketch, third),
                 fit_into(self._last_crop if self._last_crop is not None else blank, third)]
        self._view[:] = 0
        self._view[:, : 3 * (w // 3)] = np.hstack(panes)
        return self._view
