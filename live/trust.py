"""Disclosure: the visible "AI-generated" badge on every live output frame.

It is drawn once (text on a dark box) and blended into a corner of each frame; it is
on by default, and turning it off takes an explicit ``output.badge = false``, which
live logs. (The invisible watermark and ``reenact verify`` are not built yet.)
"""
from __future__ import annotations

import cv2
import numpy as np


class Badge:
    """A visible label in a corner, pre-rendered once; ``apply(frame)`` blends it in place."""

    def __init__(self, size: tuple[int, int], *, text: str = "AI-generated", position: str = "bottom-right",
                 height: float = 0.04, opacity: float = 0.85) -> None:
        w, h = size
        scale = max(0.3, height * h / 22.0)
        thick = max(1, int(round(scale * 1.6)))
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        pad = max(2, th // 3)
        bw, bh = min(w, tw + 2 * pad), min(h, th + base + 2 * pad)
        margin = max(2, int(0.02 * h))
        x = margin if "left" in position else w - bw - margin
        y = margin if "top" in position else h - bh - margin
        x, y = max(0, x), max(0, y)
        label = np.zeros((bh, bw, 3), np.uint8)
        label[:] = (30, 30, 30)
        cv2.putText(label, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        self.box = (x, y, bw, bh)
        self.label = label
        self.alpha = float(opacity)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        x, y, bw, bh = self.box
        region = frame[y : y + bh, x : x + bw]
        cv2.addWeighted(self.label, self.alpha, region, 1 - self.alpha, 0, dst=region)
        return frame
