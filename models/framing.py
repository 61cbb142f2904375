"""Framing: the fixed crop of the target video that the model generates.

It is chosen once from the whole clip so the head stays inside it as it moves, and
recorded in the model. Live maps retargeted landmarks through the same framing, so
the sketch it draws is placed exactly as the training sketches were.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Framing:
    """``crop`` = (x, y, w, h) in source pixels (it may reach past the image edge,
    which is then padded by replication); ``out_size`` = (width, height) of the framed
    image, a multiple of what the generator needs."""

    source_size: tuple[int, int]
    crop: tuple[float, float, float, float]
    out_size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Output pixels per source pixel (the same on both axes)."""
        return self.out_size[1] / self.crop[3]

    def apply(self, px: np.ndarray) -> np.ndarray:
        """Source-pixel points (N, 3) -> framed-image pixel points (N, 3), float32."""
        s = self.scale
        out = np.empty_like(px, dtype=np.float32)
        out[:, 0] = (px[:, 0] - self.crop[0]) * s
        out[:, 1] = (px[:, 1] - self.crop[1]) * s
        out[:, 2] = px[:, 2] * s
        return out

    def unapply(self, pts: np.ndarray) -> np.ndarray:
        """Inverse of ``apply``."""
        s = self.scale
        out = np.empty_like(pts, dtype=np.float32)
        out[:, 0] = pts[:, 0] / s + self.crop[0]
        out[:, 1] = pts[:, 1] / s + self.crop[1]
        out[:, 2] = pts[:, 2] / s
        return out

    def matrix(self) -> np.ndarray:
        """(2, 3) float64 affine source -> framed image, for cv2.warpAffine."""
        s = self.scale
        return np.array([[s, 0, -self.crop[0] * s], [0, s, -self.crop[1] * s]])

    def crop_image(self, image: np.ndarray) -> np.ndarray:
        """Source BGR (H, W, 3) -> framed BGR (out_h, out_w, 3), area-filtered."""
        h, w = image.shape[:2]
        if (w, h) != tuple(self.source_size):
            raise ValueError(f"framing was chosen for {self.source_size[0]}x{self.source_size[1]} images, got {w}x{h}")
        interp = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        return cv2.warpAffine(image, self.matrix(), tuple(self.out_size), flags=interp, borderMode=cv2.BORDER_REPLICATE)

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(d: dict) -> "Framing":
        try:
            f = Framing(tuple(int(v) for v in d["source_size"]), tuple(float(v) for v in d["crop"]), tuple(int(v) for v in d["out_size"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"framing record is malformed ({e}): {str(d)[:200]}") from None
        ok = (len(f.source_size) == 2 and len(f.crop) == 4 and len(f.out_size) == 2 and min(f.source_size + f.out_size) > 0
              and np.isfinite(f.crop).all() and min(f.crop[2:]) > 0)
        if not ok:
            raise ValueError(f"framing record is malformed: {str(d)[:200]}")
        return f


def output_size(height: int, aspect: float, multiple: int) -> tuple[int, int]:
    """(width, height) near ``height`` x ``aspect``, both rounded to ``multiple``."""
    h = max(multiple, int(round(height / multiple)) * multiple)
    w = max(multiple, int(round(h * aspect / multiple)) * multiple)
    return w, h


def choose_framing(faces_px: list[np.ndarray] | np.ndarray, source_size: tuple[int, int], *, height: int,
                   aspect: float = 1.0, margin: float = 0.25, headroom: float = 0.12, multiple: int = 1) -> Framing:
    """Pick one crop that holds the face in every frame of a clip.

    ``faces_px``: landmarks of the kept frames, (F, 478, 3) pixels. The box is taken
    over robust percentiles (0.5 % / 99.5 %) so a single bad detection cannot blow it
    up. ``margin`` adds room on each side (fraction of the face box), ``headroom``
    moves the crop up to show hair. The crop is shifted inside the image when it fits.
    """
    pts = np.asarray(faces_px, dtype=np.float64)
    if pts.ndim != 3 or len(pts) == 0:
        raise ValueError("choose_framing needs the landmarks of at least one frame")
    lo = np.percentile(pts[:, :, :2].min(axis=1), 0.5, axis=0)
    hi = np.percentile(pts[:, :, :2].max(axis=1), 99.5, axis=0)
    out_w, out_h = output_size(height, aspect, multiple)
    ar = out_w / out_h
    box_w, box_h = hi - lo
    crop_h = max(box_h, box_w / ar) * (1 + 2 * margin)
    crop_w = crop_h * ar
    cx, cy = (lo + hi) / 2
    cy -= headroom * crop_h
    x, y = cx - crop_w / 2, cy - crop_h / 2
    W, H = source_size
    if crop_w <= W:
        x = min(max(x, 0.0), W - crop_w)
    if crop_h <= H:
        y = min(max(y, 0.0), H - crop_h)
    return Framing((int(W), int(H)), (float(x), float(y), float(crop_w), float(crop_h)), (out_w, out_h))
