"""The sketch: the generator's input, drawn from landmarks.

This is the contract between training and live. ``SketchSpec`` holds every parameter
that changes the drawing, plus ``RENDERER_VERSION``; its ``hash`` goes into the
dataset manifest and the model artifact, and live refuses a model whose hash differs
from what its own renderer would produce. Change the drawing => bump the version and
regenerate the golden images (tests/golden/).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from models import topology as T
from models.hotpath import per_frame

RENDERER_VERSION = 1

# BGR colour per feature: distinct hues so the generator can tell features apart.
COLORS: dict[str, tuple[int, int, int]] = {
    "face_oval": (200, 200, 200),
    "right_brow": (0, 200, 255),
    "left_brow": (0, 140, 255),
    "right_eye": (255, 200, 0),
    "left_eye": (255, 120, 0),
    "right_iris": (255, 255, 255),
    "left_iris": (255, 255, 255),
    "nose": (0, 255, 120),
    "outer_lips": (60, 60, 255),
    "inner_lips": (200, 80, 255),
    "mouth_fill": (90, 30, 120),
}

_SHIFT = 4  # fractional bits: vertices are drawn with 1/16 px precision
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class SketchSpec:
    """Everything that determines a sketch. ``width``/``height``: the framed image
    size; ``line_width``: stroke width in pixels at 256 px height, scaled with height."""

    width: int
    height: int
    line_width: float = 2.0
    fill_mouth: bool = True
    version: int = RENDERER_VERSION

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"SketchSpec size must be at least 8x8, got {self.width}x{self.height}")
        if not self.line_width > 0:
            raise ValueError(f"SketchSpec.line_width must be > 0, got {self.line_width}")

    @property
    def thickness(self) -> int:
        return max(1, int(round(self.line_width * self.height / 256)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["colors"] = {k: list(v) for k, v in COLORS.items()}
        return d

    @property
    def hash(self) -> str:
        """16 hex chars over the canonical JSON of the spec and the palette."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @staticmethod
    def from_dict(d: dict) -> "SketchSpec":
        """Rebuild a spec from a record; raises ValueError if the record was made by a
        different renderer version or palette."""
        if d.get("version") != RENDERER_VERSION:
            raise ValueError(f"sketch spec version {d.get('version')!r} does not match this renderer's version {RENDERER_VERSION}")
        if d.get("colors") not in (None, {k: list(v) for k, v in COLORS.items()}):
            raise ValueError("sketch spec palette differs from this renderer's palette")
        return SketchSpec(int(d["width"]), int(d["height"]), float(d["line_width"]), bool(d["fill_mouth"]))


@per_frame
def render_sketch(points: np.ndarray, spec: SketchSpec) -> np.ndarray:
    """Draw a face sketch.

    points: (478, 3) float, pixel coordinates in the framed image (``Framing.apply``).
    Returns (spec.height, spec.width, 3) uint8 BGR: coloured anti-aliased strokes on
    black, filled irises, and a filled mouth opening.
    """
    if points.shape != (T.NUM_LANDMARKS, 3):
        raise ValueError(f"render_sketch needs (478, 3) points, got {points.shape}")
    img = np.zeros((spec.height, spec.width, 3), np.uint8)
    # Clamp far-off points so int32 fixed-point cannot overflow; they are off-canvas anyway.
    fixed = np.round(np.clip(points[:, :2], -4 * spec.width, 4 * spec.width) * _ONE).astype(np.int32)
    t = spec.thickness
    aa = cv2.LINE_AA

    if spec.fill_mouth:
        cv2.fillPoly(img, [fixed[T.loop("inner_lips")]], COLORS["mouth_fill"], aa, _SHIFT)
    _draw_irises(img, points, fixed)
    cv2.polylines(img, [fixed[T.loop("face_oval")]], True, COLORS["face_oval"], t, aa, _SHIFT)
    for name in ("right_brow", "left_brow", "nose"):
        cv2.polylines(img, list(fixed[T.edges(name)]), False, COLORS[name], t, aa, _SHIFT)
    for name in ("right_eye", "left_eye", "outer_lips", "inner_lips"):
        cv2.polylines(img, [fixed[T.loop(name)]], True, COLORS[name], t, aa, _SHIFT)
    return img


@per_frame
def _draw_irises(img: np.ndarray, points: np.ndarray, fixed: np.ndarray) -> None:
    """Filled irises, clipped to the eye openings so a closed eye shows no iris. Each
    eye is drawn in its own box (the eye and the iris, plus a margin for anti-aliasing):
    the same pixels as drawing on the whole image, at a fraction of the cost."""
    h, w = img.shape[:2]
    colour = np.array(COLORS["right_iris"], np.uint16)
    for eye, centre, ring in (("right_eye", T.RIGHT_IRIS_CENTER, slice(469, 473)), ("left_eye", T.LEFT_IRIS_CENTER, slice(474, 478))):
        r = float(np.mean(np.linalg.norm(points[ring, :2] - points[centre, :2], axis=1)))
        radius = max(1, int(round(r * _ONE)))
        poly = fixed[T.loop(eye)]
        c = fixed[centre]
        lo = np.minimum(poly.min(axis=0), c - radius) // _ONE - 2
        hi = np.maximum(poly.max(axis=0), c + radius) // _ONE + 3
        x0, y0, x1, y1 = max(int(lo[0]), 0), max(int(lo[1]), 0), min(int(hi[0]), w), min(int(hi[1]), h)
        if x1 <= x0 or y1 <= y0:
            continue  # the eye is off the canvas
        shift = np.array([x0, y0], np.int32) * _ONE
        layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
        mask = np.zeros_like(layer)
        cv2.circle(layer, tuple(int(v) for v in c - shift), radius, 255, -1, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(mask, [poly - shift], 255, cv2.LINE_AA, _SHIFT)
        iris = (layer.astype(np.uint16) * mask // 255)[..., None] * colour // 255
        region = img[y0:y1, x0:x1]
        np.maximum(region, iris.astype(np.uint8), out=region)
