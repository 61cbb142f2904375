"""Disclosure: the visible "AI-generated" badge and the invisible watermark.

Badge: drawn once (text on a dark box), blended into a corner of each frame; on by
default, and turning it off takes an explicit ``output.badge = false``, which is logged.

Watermark: spread spectrum in luma, on a slow temporal carrier, built to survive what a
video call does to a frame (H.264 at call bitrates, scaling to 720p or 360p):

* The frame is divided into a grid of ``GRID`` cells that scales with the frame, so a
  rescaled frame has the same cells. Cells are dealt by a fixed pseudo-random
  permutation to a sync "bit" (always 1) and ``BITS`` payload bits (the model ID), and
  each cell gets a pseudo-random sign. Cell c of bit k carries chip sign(c) x bit(k),
  smoothly interpolated between cell centres (no block edges to see or to lose).
* The whole pattern is multiplied by a sinusoid of ``PERIOD`` frames (1.9 Hz at 30 fps).
  The picture itself is mostly still from frame to frame, so at the carrier's frequency
  it nearly vanishes, while the mark does not: that is what lets ±3 luma levels be read
  through H.264 at 250 kb/s. The carrier is smooth, so nothing flickers.
* To read, each cell's mean luma minus its 3x3 neighbourhood's is multiplied by the
  cell's sign and summed per bit, per frame; each bit's time series is projected on the
  carrier. The sync bit's amplitude (a z-score against the residual) gives the
  carrier's phase; the payload bits' signs at that phase give the model ID. The mark is
  called present only when the sync bit *and* every payload bit are clear of noise.

Embedding is two saturating adds of precomputed images per frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from models.hotpath import per_frame

GRID = (64, 36)  # cells across, down (16:9 output; other aspects stretch the cells)
BITS = 32
SEED = 0x5EE4AC7
PERIOD = 16  # frames per carrier cycle
AMPLITUDE = 3.0  # luma levels at the carrier's peak
PRESENT_Z = 6.0  # the sync z-score a mark must reach ...
ID_MARGIN = 1.5  # ... with every payload bit this clear: by chance, 32 bits at once are (~0.13)^32 ~ 1e-28


def _layout() -> tuple[np.ndarray, np.ndarray]:
    """(bit index per cell, sign per cell), both (rows, cols); bit 0 is sync."""
    rng = np.random.default_rng(SEED)
    n = GRID[0] * GRID[1]
    bits = np.arange(n) % (BITS + 1)
    rng.shuffle(bits)
    signs = rng.choice([-1.0, 1.0], size=n)
    return bits.reshape(GRID[1], GRID[0]), signs.reshape(GRID[1], GRID[0])


def id_bits(model_id: str) -> np.ndarray:
    """8 hex digits -> 32 values of ±1."""
    try:
        value = int(model_id, 16)
        if not 0 <= value < 2**BITS or len(model_id) != 8:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"a model ID is 8 hex digits, got {model_id!r}") from None
    return np.array([1.0 if (value >> (BITS - 1 - i)) & 1 else -1.0 for i in range(BITS)])


def bits_id(bits: np.ndarray) -> str:
    value = 0
    for b in bits:
        value = (value << 1) | int(b > 0)
    return f"{value:08x}"


def carrier(index: int) -> float:
    return float(np.sin(2 * np.pi * index / PERIOD))


class Watermarker:
    """Embeds one model ID into frames of one size: ``apply(frame, index)`` in place,
    ``index`` = the frame's number in the output stream."""

    def __init__(self, model_id: str, size: tuple[int, int], amplitude: float = AMPLITUDE) -> None:
        w, h = size
        cell_bits, signs = _layout()
        payload = np.concatenate([[1.0], id_bits(model_id)])
        chips = (payload[cell_bits] * signs).astype(np.float32)
        pattern = cv2.resize(chips, (w, h), interpolation=cv2.INTER_LINEAR) * amplitude
        # One (plus, minus) image pair per distinct carrier magnitude; the sign swaps them.
        self._levels: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        for i in range(PERIOD):
            mag = round(abs(carrier(i)), 6)
            if mag > 0 and mag not in self._levels:
                pos = np.clip(np.round(pattern * mag), 0, 255).astype(np.uint8)
                neg = np.clip(np.round(-pattern * mag), 0, 255).astype(np.uint8)
                self._levels[mag] = (cv2.merge([pos, pos, pos]), cv2.merge([neg, neg, neg]))  # luma only: same on B, G, R
        self.size = size
        self.model_id = model_id

    @per_frame
    def apply(self, frame: np.ndarray, index: int, *, out: np.ndarray | None = None) -> np.ndarray:
        """BGR uint8 (h, w, 3) with the mark, written into ``out`` (same shape; the frame
        itself when None) and returned. Into ``out`` it costs no separate copy."""
        out = frame if out is None else out
        if out.shape != frame.shape or out.dtype != frame.dtype:  # OpenCV would write a new array and leave ``out`` as it was
            raise ValueError(f"watermark output buffer {out.dtype} {out.shape} does not match the frame's {frame.dtype} {frame.shape}")
        c = carrier(index)
        mag = round(abs(c), 6)
        if mag == 0:
            if out is not frame:
                np.copyto(out, frame)
            return out
        up, down = self._levels[mag] if c > 0 else self._levels[mag][::-1]
        cv2.add(frame, up, dst=out)
        cv2.subtract(out, down, dst=out)
        return out


@dataclass
class Reading:
    present: bool
    model_id: str | None
    confidence: float  # the sync z-score
    bit_margin: float  # the smallest |z| among the payload bits: how sure the ID is
    frames: int

    def as_dict(self) -> dict:
        return {"present": self.present, "model_id": self.model_id, "confidence": round(self.confidence, 2),
                "bit_margin": round(self.bit_margin, 2), "frames": self.frames}


class Detector:
    """Collects per-frame, per-bit evidence from frames of any size."""

    def __init__(self) -> None:
        self.cell_bits, self.signs = _layout()
        self.series: list[np.ndarray] = []

    def add(self, frame: np.ndarray) -> None:
        luma = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        cells = cv2.resize(luma.astype(np.float32), GRID, interpolation=cv2.INTER_AREA)
        x = (cells - cv2.blur(cells, (3, 3), borderType=cv2.BORDER_REFLECT)) * self.signs
        self.series.append(np.bincount(self.cell_bits.ravel(), weights=x.ravel(), minlength=BITS + 1))

    def reading(self, start: int = 0, stop: int | None = None) -> Reading:
        y = np.asarray(self.series[start:stop])
        n = len(y)
        if n < PERIOD:
            return Reading(False, None, 0.0, 0.0, n)
        y = y - y.mean(axis=0)
        t = np.arange(start, start + n)
        basis = np.exp(-2j * np.pi * t / PERIOD)
        c = basis @ y  # complex amplitude per bit
        phase = np.angle(c[0])
        proj = np.real(c * np.exp(-1j * phase))  # each bit's component in phase with the sync
        fit = np.outer(np.cos(2 * np.pi * t / PERIOD + phase), proj) * (2 / n)
        sigma = np.maximum((y - fit).std(axis=0), 1e-9)
        z = proj / (sigma * np.sqrt(n / 2))
        margin = float(np.abs(z[1:]).min())
        # A true mark lifts every payload bit as much as the sync bit; picture content that
        # happens to move at the carrier's rhythm lifts the sync bit alone.
        present = bool(z[0] > PRESENT_Z and margin > ID_MARGIN)
        return Reading(present, bits_id(z[1:]) if present else None, float(z[0]), margin, n)


def read_video(path: str, *, window: int | None = None, max_frames: int | None = None) -> tuple[Reading, list[Reading]]:
    """(whole-video reading, readings of consecutive ``window``-frame stretches)."""
    from itertools import islice

    from models.video import frames

    det = Detector()
    for frame in islice(frames(path), max_frames):  # SourceError naming the file when it is not a readable video
        det.add(frame)
    n = len(det.series)
    windows = [det.reading(s, s + window) for s in range(0, n - window + 1, window)] if window else []
    return det.reading(), windows


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

    @per_frame
    def apply(self, frame: np.ndarray) -> np.ndarray:
        x, y, bw, bh = self.box
        region = frame[y : y + bh, x : x + bw]
        cv2.addWeighted(self.label, self.alpha, region, 1 - self.alpha, 0, dst=region)
        return frame
