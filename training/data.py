"""Training pairs in memory: framed photos and sketches re-rendered from landmarks.

The trainer never reads ``sketches/*.png``: it renders every sketch itself with the
model's own ``SketchSpec`` from the stored landmarks, at the model's resolution. So a
model trained at 128 px from a 256 px dataset gets 128 px sketches drawn exactly as
live will draw them, not a blurred downscale.

Augmentation is a small random similarity (scale, shift, rotation) applied to the
photo *and* to the landmarks before drawing the sketch, so the pair stays aligned to
the sub-pixel. ``Augment.warp`` adds a smooth random bend of both (a coarse grid of
random displacements, interpolated): the features move against each other, so the
generator learns to put each where its sketch says rather than where the target's
clip usually had it beside the others. The trainer asks for the bend only once the
discriminator has joined (``batch(..., bent=True)``). Every random choice is derived
from (seed, step, rank, slot), so a resumed run sees exactly the samples an
uninterrupted one would have.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.ndimage import map_coordinates

from models import topology as T
from models.framing import Framing
from models.pixels import images_to_tensor
from models.geometry import interocular
from models.sketch import SketchSpec, render_sketch
from training.dataset import DatasetError, load_landmarks, load_manifest


@dataclass(frozen=True)
class Augment:
    scale: float = 0.05  # ± relative
    shift: float = 0.04  # ± fraction of the image size
    rotate: float = 5.0  # ± degrees
    probability: float = 0.7
    warp: float = 0.0  # std of the smooth bend's displacements, fraction of the image height; 0 = none


WARP_GRID = 5  # control points per side: bends about a fifth of the frame wide, a feature's size


def model_framing(dataset_framing: Framing, size: tuple[int, int]) -> Framing:
    """The dataset's crop at the model's resolution (same crop, other out_size)."""
    return Framing(dataset_framing.source_size, dataset_framing.crop, size)


def split_samples(root: Path, split: str, limit: int | None = None) -> tuple[dict, Framing, list[int], np.ndarray]:
    """A dataset's (manifest, framing, sample numbers of ``split`` (evenly thinned to at
    most ``limit``), every sample's source-pixel landmarks (N, 478, 3)); DatasetError
    names what is damaged or missing."""
    manifest = load_manifest(root)
    try:
        framing = Framing.from_dict(manifest["framing"])
    except ValueError as e:
        raise DatasetError(f"{root / 'manifest.json'} is damaged: {e}") from None
    picks = [n for n, s in enumerate(manifest["samples"]) if s["split"] == split]
    if limit is not None:
        picks = picks[:: max(1, len(picks) // limit)][:limit]
    if not picks:
        raise DatasetError(f"the dataset at {str(root)!r} has no '{split}' frames")
    return manifest, framing, picks, load_landmarks(root, len(manifest["samples"]))


class PairSet:
    """All kept frames of one split, resized to the model size, with their landmarks.

    ``batch(step, rank, batch_size)`` -> (sketch, photo, weight) float32 tensors:
    sketch and photo (B, 3, H, W) in [-1, 1] (BGR), weight (B, 1, H, W) >= 1.
    """

    def __init__(self, root: str | Path, split: str, spec: SketchSpec, *, seed: int, augment: Augment | None,
                 mouth_weight: float = 1.0, eye_weight: float = 1.0, limit: int | None = None) -> None:
        root = Path(root)
        manifest, ds_framing, picks, source_px = split_samples(root, split, limit)
        size = (spec.width, spec.height)
        if spec.height > ds_framing.out_size[1]:
            raise DatasetError(f"the model is {spec.height} px tall but the dataset's frames are {ds_framing.out_size[1]} px; "
                               f"rebuild the dataset with --set model.size={spec.height}")
        ids = [manifest["samples"][n]["id"] for n in picks]
        photos = []
        for sid in ids:
            img = cv2.imread(str(root / "frames" / f"{sid}.png"))
            if img is None:
                raise DatasetError(f"{root / 'frames' / (sid + '.png')} is missing or unreadable; rebuild the dataset")
            if img.shape[:2] != (spec.height, spec.width):
                img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            photos.append(img)
        self._setup(model_framing(ds_framing, size), spec, source_px[picks], np.stack(photos), ids,
                    seed=seed, augment=augment, mouth_weight=mouth_weight, eye_weight=eye_weight)

    def _setup(self, framing: Framing, spec: SketchSpec, source_px: np.ndarray, photos: np.ndarray, ids: list[str], *,
               seed: int, augment: Augment | None, mouth_weight: float, eye_weight: float) -> None:
        self.framing, self.spec = framing, spec
        self.source_px = np.asarray(source_px, np.float32)  # (N, 478, 3) target source-video pixels
        self.photos = photos  # (N, H, W, 3) uint8
        self.ids = ids
        self.seed, self.augment = seed, augment
        self.mouth_weight, self.eye_weight = mouth_weight, eye_weight

    @classmethod
    def from_arrays(cls, source_px: np.ndarray, photos: np.ndarray, framing: Framing, spec: SketchSpec, *, seed: int,
                    augment: Augment | None, mouth_weight: float = 1.0, eye_weight: float = 1.0) -> "PairSet":
        """Pairs that are not a dataset's (e.g. a teacher's renderings): ``source_px``
        (N, 478, 3) in the target's source-video pixels, ``photos`` (N, H, W, 3) uint8 at
        the spec's size, ``framing`` already at the model's resolution."""
        if photos.shape[1:3] != (spec.height, spec.width) or len(photos) != len(source_px) or not len(photos):
            raise DatasetError(f"pairs need matching (N, 478, 3) points and (N, {spec.height}, {spec.width}, 3) photos, "
                               f"got {np.shape(source_px)} and {photos.shape}")
        self = cls.__new__(cls)
        self._setup(framing, spec, source_px, photos, [f"pair_{i:06d}" for i in range(len(photos))], seed=seed,
                    augment=augment, mouth_weight=mouth_weight, eye_weight=eye_weight)
        return self

    def __len__(self) -> int:
        return len(self.ids)

    def _transform(self, rng: np.random.Generator) -> np.ndarray | None:
        a = self.augment
        if a is None or rng.uniform() > a.probability:
            return None
        w, h = self.spec.width, self.spec.height
        s = 1 + rng.uniform(-a.scale, a.scale)
        ang = rng.uniform(-a.rotate, a.rotate)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, s)
        m[:, 2] += rng.uniform(-a.shift, a.shift, 2) * np.array([w, h])
        return m

    def sample(self, i: int, rng: np.random.Generator | None = None, *, bent: bool = True
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sketch uint8 HxWx3, photo uint8 HxWx3, weight float32 HxW, framed points (478,3)).
        With ``rng``, augmented; ``bent=False`` leaves out ``Augment.warp``'s bend."""
        pts = self.framing.apply(self.source_px[i])
        photo = self.photos[i]
        m = self._transform(rng) if rng is not None else None
        if m is not None:
            photo = cv2.warpAffine(photo, m, (self.spec.width, self.spec.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            xy = pts[:, :2] @ m[:, :2].T + m[:, 2]
            zs = pts[:, 2] * np.sqrt(abs(np.linalg.det(m[:, :2])))
            pts = np.column_stack([xy, zs]).astype(np.float32)
        field = self._bend(rng) if rng is not None and bent else None
        if field is not None:
            photo, pts = bend(photo, pts, field)
        return render_sketch(pts, self.spec), photo, self._weights(pts), pts

    def _bend(self, rng: np.random.Generator) -> np.ndarray | None:
        """A smooth random displacement field (H, W, 2) float32 in pixels, or None."""
        a = self.augment
        if a is None or a.warp <= 0 or rng.uniform() > a.probability:
            return None  # no draw is taken when warp is off: the samples stay those of a run without it
        h, w = self.spec.height, self.spec.width
        grid = rng.normal(0.0, a.warp * h, size=(WARP_GRID, WARP_GRID, 2)).astype(np.float32)
        return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)

    def _weights(self, pts: np.ndarray) -> np.ndarray:
        """1 everywhere, ``mouth_weight`` on the lips, ``eye_weight`` on the eyes: the
        features a viewer reads expression from get more of the L1 loss."""
        h, w = self.spec.height, self.spec.width
        wmap = np.ones((h, w), np.float32)
        if self.mouth_weight == 1 and self.eye_weight == 1:
            return wmap
        grow = max(1, int(round(0.15 * interocular(pts))))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        for loops, weight in ((("outer_lips",), self.mouth_weight), (("left_eye", "right_eye"), self.eye_weight)):
            mask = np.zeros((h, w), np.uint8)
            for name in loops:
                cv2.fillPoly(mask, [np.round(pts[T.loop(name), :2]).astype(np.int32)], 1)
            mask = cv2.dilate(mask, kernel)
            wmap[mask > 0] = np.maximum(wmap[mask > 0], weight)
        return wmap

    def batch(self, step: int, rank: int, batch_size: int, *, bent: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Augmented (sketch, photo, weight) batch of ``step`` on ``rank``; ``bent`` as in ``sample``."""
        rng = np.random.default_rng([self.seed, step, rank])
        idx = rng.integers(0, len(self), size=batch_size)
        items = [self.sample(int(i), np.random.default_rng([self.seed, step, rank, j]), bent=bent) for j, i in enumerate(idx)]
        return collate(items)

    def fixed(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Un-augmented samples (validation, previews)."""
        return collate([self.sample(i) for i in indices])


def bend(photo: np.ndarray, pts: np.ndarray, field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move ``photo`` (H, W, 3) and its points ``pts`` (N, 3) together by the smooth
    displacement ``field`` (H, W, 2), in pixels: the content at p moves to the p' with
    p' = p + field(p'). The photo is resampled from p' - field(p'); each point takes
    twelve fixed-point steps of that equation. A bend's steepest slope stays below
    about 0.65 up to train.warp's maximum, 0.015, so the steps converge to a
    thousandth of a pixel at any image size (larger bends can fold the image). z is
    kept."""
    h, w = field.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = cv2.remap(photo, xs - field[..., 0], ys - field[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    xy = pts[:, :2].astype(np.float32)
    moved = xy
    for _ in range(12):
        moved = xy + _sample(field, moved)
    return out, np.column_stack([moved, pts[:, 2]]).astype(np.float32)


def _sample(field: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples (N, 2) of ``field`` (H, W, 2) at float pixel positions ``xy`` (N, 2),
    the edge held beyond the image. SciPy, not ``cv2.remap``: remap rounds positions to
    1/32 px, which would cap the fixed-point steps' precision."""
    at = [xy[:, 1], xy[:, 0]]  # (row, column)
    return np.stack([map_coordinates(field[..., c], at, order=1, mode="nearest") for c in range(2)], axis=1)


def collate(items) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    sketches = images_to_tensor(np.stack([it[0] for it in items]))
    photos = images_to_tensor(np.stack([it[1] for it in items]))
    weights = torch.from_numpy(np.stack([it[2] for it in items]))[:, None]
    return sketches, photos, weights
