"""Retargeting: move the target's face the way the driver's face moves, while the
target keeps its own face shape.

Each person gets a *canonical frame*: their neutral face's pose is removed by a
similarity fit of the bundled frontal face onto it (stable points only), and lengths
are measured in that person's inter-ocular distance (IOD). Then, per driver frame:

1. Map the frame into the driver's canonical frame and fit its head pose ``P``
   (similarity on the stable points) relative to the driver's neutral.
2. Expression = pose-free frame − driver neutral, in driver IODs, scaled per region:
   by the user's gains, and by the ratio of the two faces' own feature sizes where a
   delta is naturally relative to the feature (eyelid travel to eye height, mouth
   corner travel to mouth width), so a blink closes the target's eye exactly.
3. Target = target neutral + expression, in target IODs; apply ``P`` around the
   target's neutral; map out of the target's canonical frame into its image.

So a driver at rest yields exactly the target's neutral, and features keep their
IOD-relative size: a driver's mouth open by 0.4 IOD opens the target's by 0.4 of the
target's IOD, whatever the two faces' shapes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import topology as T
from models.faces import base_face
from models.geometry import Similarity, expression, fit_similarity, interocular, rotation_angles, rotation_from_angles
from models.hotpath import per_frame


class CanonicalFrame:
    """One person's neutral-face frame: pixels <-> pose-free IOD units."""

    def __init__(self, neutral_px: np.ndarray) -> None:
        neutral = np.asarray(neutral_px, dtype=np.float64)
        if neutral.shape != (T.NUM_LANDMARKS, 3) or not np.isfinite(neutral).all():
            raise ValueError(f"a neutral face must be finite (478, 3) points, got shape {neutral.shape}")
        if interocular(neutral) < 1e-3:
            raise ValueError("a neutral face must have distinct eye centres")
        self.pose = fit_similarity(base_face()[T.STABLE_POINTS], neutral[T.STABLE_POINTS])
        unposed = self.pose.invert(neutral)
        self.unit = interocular(unposed)  # canonical length of one IOD
        self.neutral = unposed / self.unit  # (478, 3), IOD units

    def to_canonical(self, px: np.ndarray) -> np.ndarray:
        return self.pose.invert(np.asarray(px, dtype=np.float64)) / self.unit

    def to_pixels(self, pts: np.ndarray) -> np.ndarray:
        return self.pose.apply(pts * self.unit)


@dataclass(frozen=True)
class Gains:
    """Per-region expression gains; 1 transfers the driver's expression as it is."""

    mouth: float = 1.0
    eyes: float = 1.0
    brows: float = 1.0
    rest: float = 1.0
    head_motion: float = 1.0

    def per_point(self) -> np.ndarray:
        """(478, 1) float64 gain for each landmark."""
        g = np.empty((T.NUM_LANDMARKS, 1))
        regions = T.region_indices()
        for name in ("mouth", "eyes", "brows", "rest"):
            g[regions[name]] = getattr(self, name)
        return g


def _scale_similarity(sim: Similarity, amount: float) -> Similarity:
    """Interpolate a similarity between identity (0) and itself (1)."""
    if amount == 1.0:
        return sim
    yaw, pitch, roll = rotation_angles(sim.rotation)
    rot = rotation_from_angles(yaw * amount, pitch * amount, roll * amount)
    return Similarity(sim.scale**amount, rot, sim.translation * amount)


def _feature_ratios(target: np.ndarray, driver: np.ndarray) -> np.ndarray:
    """(478, 3) per-point, per-axis scale of driver deltas onto the target (canonical
    neutrals in, IOD units). Clipped to [0.5, 2] so one odd neutral cannot explode."""
    et, ed = expression(target), expression(driver)
    out = np.ones((T.NUM_LANDMARKS, 3))
    regions = T.region_indices()
    out[regions["eyes"], 1] = np.clip(et.eye_open / max(ed.eye_open, 1e-6), 0.5, 2.0)
    out[regions["mouth"], 0] = np.clip(et.mouth_width / max(ed.mouth_width, 1e-6), 0.5, 2.0)
    return out


class Retargeter:
    """Maps driver landmarks (pixels of the driver's image) to target landmarks
    (pixels of the target's source video), given both neutral faces.

    ``retarget(driver_px)``: (478, 3) float -> (478, 3) float32.
    """

    def __init__(self, target_neutral_px: np.ndarray, driver_neutral_px: np.ndarray, gains: Gains = Gains()) -> None:
        self.target = CanonicalFrame(target_neutral_px)
        self.driver = CanonicalFrame(driver_neutral_px)
        self.gains = gains
        self._g = gains.per_point() * _feature_ratios(self.target.neutral, self.driver.neutral)

    @per_frame
    def retarget(self, driver_px: np.ndarray) -> np.ndarray:
        d = self.driver.to_canonical(driver_px)
        pose = fit_similarity(self.driver.neutral[T.STABLE_POINTS], d[T.STABLE_POINTS])
        expr = pose.invert(d) - self.driver.neutral
        target = self.target.neutral + self._g * expr
        target = _scale_similarity(pose, self.gains.head_motion).apply(target)
        return self.target.to_pixels(target).astype(np.float32)


def estimate_neutral(faces_px: np.ndarray, *, keep: float = 0.3) -> np.ndarray:
    """A person's neutral face from many frames of them, (F, 478, 3) pixels.

    Picks the frames nearest to rest (mouth closed; eyes, brows, mouth width and
    head pose at their typical closed-mouth values), aligns them to the most typical one on
    the stable points and takes the per-point median, placed where that frame was.
    ``keep`` is the fraction of frames used. Returns (478, 3) float32 pixels.
    """
    faces = np.asarray(faces_px, dtype=np.float64)
    if faces.ndim != 3 or faces.shape[1:] != (T.NUM_LANDMARKS, 3) or len(faces) == 0:
        raise ValueError(f"estimate_neutral needs (F, 478, 3) faces, got {faces.shape}")
    ref = base_face()
    feats = []
    for f in faces:
        e = expression(f)
        pose = fit_similarity(ref[T.STABLE_POINTS], f[T.STABLE_POINTS])
        yaw, pitch, roll = rotation_angles(pose.rotation)
        feats.append((e.mouth_open, e.eye_open, e.brow_height, e.mouth_width, yaw, pitch))
    feats = np.array(feats)
    # Rest is judged among the closed-mouth frames: when most of a clip is expressive
    # (smiling, talking), the clip-wide median is not a resting face.
    closed = feats[:, 0] <= np.quantile(feats[:, 0], 0.3)
    rest = np.median(feats[closed], axis=0)
    # Each feature's deviation counts relative to its spread in the clip, floored so a
    # feature that hardly varies (a still head) cannot dominate through tiny noise.
    floor = np.array([0.05, 0.03, 0.03, 0.03, 3.0, 3.0])
    spread = np.maximum(np.percentile(feats, 90, axis=0) - np.percentile(feats, 10, axis=0), floor)
    dev = np.abs(feats - rest) / spread
    dev[:, 0] = feats[:, 0] / spread[0]  # mouth openness counts from zero
    score = dev.sum(axis=1)
    n = max(1, int(round(len(faces) * keep)))
    chosen = np.argsort(score)[:n]
    anchor = faces[chosen[0]]
    aligned = [fit_similarity(f[T.STABLE_POINTS], anchor[T.STABLE_POINTS]).apply(f) for f in faces[chosen]]
    return np.median(np.stack(aligned), axis=0).astype(np.float32)
