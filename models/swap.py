"""Replacement (face swap): the aligned face crop, its mask, and the network.

Re-enactment draws the target's whole head from a sketch. Replacement keeps the
user's own frame and swaps only the face, the classic deepfakes recipe:

* **Alignment.** A 2D similarity (scale, rotation, shift; no shear, no reflection)
  maps a face's stable landmarks (eye corners, nose bridge, forehead, temples: they
  barely move with expression) onto the ``SwapTemplate``, the bundled frontal face
  placed in a ``size`` x ``size`` crop. Training and live use the same template, which
  model.json records, so live can refuse a model aligned another way.
* **The face mask** is the convex hull of the Face Mesh face oval in the crop,
  shrunk a little and feathered: the region whose pixels the swap replaces.
* **The network** (models/swapnet.py, sized by ``SwapArchitecture``): one encoder
  shared by both people and one decoder per person, each predicting the face and
  its mask.

Shapes: crops are (size, size, 3) uint8 BGR; masks (size, size) float32 in [0, 1].
This module needs no torch: live imports it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from models import topology as T
from models.faces import base_face
from models.sketch import SketchSpec, render_sketch

TEMPLATE_VERSION = 1  # bump when make_template's geometry changes: old models then fail the contract check
IDENTITIES = ("target", "user")


# ---------------------------------------------------------------- alignment

@dataclass(frozen=True)
class SwapTemplate:
    """Where the stable landmarks go in the aligned crop: (len(STABLE_POINTS), 2)
    float64 pixels of a ``size`` x ``size`` crop."""

    size: int
    points: np.ndarray
    version: int = TEMPLATE_VERSION

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"size": int(self.size), "version": int(self.version), "points": np.round(self.points, 4).tolist()}

    @staticmethod
    def from_dict(d) -> "SwapTemplate":
        """From an untrusted record: ValueError says what is wrong."""
        if not isinstance(d, dict):
            raise ValueError(f"the alignment template is a {type(d).__name__}, not an object")
        try:
            size, version = int(d["size"]), int(d["version"])
            points = np.asarray(d["points"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the alignment template is malformed ({e})") from None
        if not 32 <= size <= 1024 or points.shape != (len(T.STABLE_POINTS), 2) or not np.isfinite(points).all():
            raise ValueError(f"the alignment template is out of range (size {size}, points {points.shape})")
        return SwapTemplate(size, points, version)

    def __eq__(self, other) -> bool:
        return (isinstance(other, SwapTemplate) and self.size == other.size and self.version == other.version
                and np.allclose(self.points, other.points, atol=1e-4))

    __hash__ = None  # mutable array inside: not hashable


def make_template(size: int = 128, *, margin: float = 0.08) -> SwapTemplate:
    """The bundled frontal face placed so its face oval fills the crop, ``margin`` (a
    fraction of ``size``) left free on each side, centred."""
    face = base_face()[:, :2].astype(np.float64)
    oval = face[T.loop("face_oval")]
    lo, hi = oval.min(0), oval.max(0)
    scale = size * (1 - 2 * margin) / float((hi - lo).max())
    centre = (lo + hi) / 2
    points = (face[T.STABLE_POINTS] - centre) * scale + size / 2
    return SwapTemplate(int(size), points)


def alignment(face_px: np.ndarray, template: SwapTemplate) -> np.ndarray:
    """(2, 3) float64 affine matrix taking image pixels to crop pixels: the
    least-squares 2D similarity of the face's stable points (``face_px``: (478, 2+)
    pixels) onto the template's."""
    src = np.asarray(face_px, dtype=np.float64)[T.STABLE_POINTS, :2]
    dst = template.points
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var = float((xs**2).sum())
    if not np.isfinite(var) or var < 1e-9:
        raise ValueError("alignment needs distinct, finite landmarks")
    # Closed-form 2D similarity (complex least squares): a + ib = sum(conj(s) d) / sum(|s|^2).
    a = float((xs * xd).sum()) / var
    b = float((xs[:, 0] * xd[:, 1] - xs[:, 1] * xd[:, 0]).sum()) / var
    m = np.array([[a, -b], [b, a]])
    return np.hstack([m, (mu_d - m @ mu_s)[:, None]])


def invert_alignment(matrix: np.ndarray) -> np.ndarray:
    """The (2, 3) matrix taking crop pixels back to image pixels."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def transform_points(pts: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 2+) points through a (2, 3) affine matrix -> (N, 2) float64."""
    p = np.asarray(pts, dtype=np.float64)[:, :2]
    return p @ matrix[:, :2].T + matrix[:, 2]


def align(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The (size, size, C) aligned crop of an (H, W, C) image (bilinear, edges
    replicated so a face at the frame's border still fills the crop)."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def face_mask(crop_px: np.ndarray, size: int, *, shrink: float = 0.03, feather: float = 0.04) -> np.ndarray:
    """(size, size) float32 in [0, 1]: the face oval's convex hull (``crop_px``: the
    face's (478, 2+) landmarks in crop pixels), eroded by ``shrink`` x size plus the
    feather's reach and feathered over about ``feather`` x size, so the whole blend
    edge sits inside the face: outside the hull the mask is exactly 0."""
    hull = cv2.convexHull(np.round(np.asarray(crop_px)[T.loop("face_oval"), :2] * 4).astype(np.int32))
    inside = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(inside, hull, 255, lineType=cv2.LINE_AA, shift=2)
    sigma = max(0.5, feather * size / 2)
    k = max(1, int(round(shrink * size + 2 * sigma)))
    mask = cv2.erode(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    mask = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigma)
    mask[(mask < 1 / 512) | (inside == 0)] = 0.0  # the blur's far tail would nudge pixels outside the face by a level
    return mask


# ---------------------------------------------------------------- the guide sketch

@dataclass(frozen=True)
class SwapGuide:
    """How a guided network's sketch is drawn: models/sketch.py's renderer at the crop's
    size, from the face's landmarks in the crop moved by ``offset`` ((478, 2) float64
    crop pixels). Training draws each person's own landmarks (no offset); live draws
    the user's moved by the target's neutral face minus the user's (both aligned to the
    template), so the sketch has the target's face shape and the user's expression."""

    size: int
    offset: np.ndarray

    @cached_property
    def spec(self) -> SketchSpec:
        return SketchSpec(self.size, self.size)

    def draw(self, crop_px: np.ndarray, *, out: np.ndarray | None = None, moved: bool = True) -> np.ndarray:
        """(size, size, 3) uint8 BGR sketch of ``crop_px`` ((478, 2+) crop pixels), moved
        by the offset unless ``moved`` is False; drawn into ``out`` when given."""
        pts = np.zeros((T.NUM_LANDMARKS, 3))
        pts[:, :2] = np.asarray(crop_px, dtype=np.float64)[:, :2] + (self.offset if moved else 0.0)
        img = render_sketch(pts, self.spec)
        if out is None:
            return img
        out[:] = img
        return out

    def to_dict(self) -> dict:
        return {"sketch": self.spec.to_dict(), "offset": np.round(self.offset, 3).tolist()}

    @staticmethod
    def from_dict(d, size: int) -> "SwapGuide":
        """From an untrusted record, for a ``size`` crop: ValueError says what is wrong."""
        if not isinstance(d, dict) or set(d) != {"sketch", "offset"}:
            raise ValueError("the guide record has exactly sketch and offset")
        try:
            spec = SketchSpec.from_dict(d["sketch"])
            offset = np.asarray(d["offset"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the guide record is malformed ({e})") from None
        if spec != SketchSpec(size, size):
            raise ValueError(f"the guide's sketch is {spec.width}x{spec.height}, the crop {size}x{size}")
        if offset.shape != (T.NUM_LANDMARKS, 2) or not np.isfinite(offset).all() or np.abs(offset).max() > size:
            raise ValueError(f"the guide's offset is out of range ({offset.shape})")
        return SwapGuide(size, offset)


def neutral_in_crop(neutral_px: np.ndarray, template: SwapTemplate) -> np.ndarray:
    """(478, 2) a neutral face ((478, 2+) pixels) aligned to the template's crop."""
    return transform_points(neutral_px, alignment(neutral_px, template))


# ---------------------------------------------------------------- the network's size

@dataclass(frozen=True)
class SwapArchitecture:
    """What model.json's "generator" records of a swap network. ``width``: channels of
    the widest convolution (the others are halvings of it); ``latent``: the bottleneck's
    size; ``guide``: the decoders also see the landmarks' sketch; ``attention``: a
    self-attention block on each decoder's 16x16 code (models/swapnet.py)."""

    size: int = 128
    width: int = 128
    latent: int = 256
    guide: bool = False
    attention: bool = False

    def check(self) -> "SwapArchitecture":
        if self.size not in (64, 128, 256) or not 16 <= self.width <= 1024 or self.width % 16 or not 16 <= self.latent <= 2048:
            raise ValueError(f"invalid swap network {self.to_dict()}: size 64/128/256, width 16-1024 (a multiple of 16), latent 16-2048")
        return self

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of the run-time network's one input image: the aligned face, and
        for a guided network its sketch beside it."""
        return (self.size, 2 * self.size if self.guide else self.size, 3)

    def to_dict(self) -> dict:
        return {"size": self.size, "width": self.width, "latent": self.latent, "guide": self.guide, "attention": self.attention}

    @staticmethod
    def from_dict(d) -> "SwapArchitecture":
        if not isinstance(d, dict) or not {"size", "width", "latent"} <= set(d) <= {"size", "width", "latent", "guide", "attention"}:
            raise ValueError(f"a swap network record has size, width, latent (and guide, attention); got {d!r}")
        for flag in ("guide", "attention"):
            if not isinstance(d.get(flag, False), bool):
                raise ValueError(f"a swap network's {flag} is true or false; got {d[flag]!r}")
        try:
            return SwapArchitecture(int(d["size"]), int(d["width"]), int(d["latent"]), d.get("guide", False),
                                    d.get("attention", False)).check()
        except (TypeError, ValueError) as e:
            raise ValueError(str(e)) from None
