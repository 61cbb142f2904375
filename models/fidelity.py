"""Landmark fidelity: does a generated face show the landmarks its sketch was drawn from?

Face Mesh runs on each generated image; the mean point error over the 478 points,
divided by the inter-ocular distance, says how faithfully the generator follows its
input, and the detection rate how often a face is found at all. The trainer's
validation and live's ``bench`` both report it.
"""
from __future__ import annotations

import numpy as np

from models.geometry import interocular
from models.landmarks import LandmarkDetector


def landmark_fidelity(images: np.ndarray, points: np.ndarray, detector: LandmarkDetector) -> dict[str, float]:
    """images: (B, H, W, 3) uint8; points: (B, 478, 3) pixel landmarks the sketches
    were drawn from. Returns mean error / IOD over detected frames and the detection rate."""
    errs, found = [], 0
    for img, pts in zip(images, points):
        lm = detector.detect(np.ascontiguousarray(img))
        if lm is None:
            continue
        found += 1
        err = np.linalg.norm(lm.pixels()[:, :2] - pts[:, :2], axis=1).mean()
        errs.append(float(err / max(interocular(pts), 1e-6)))
    return {"landmark_error_iod": float(np.mean(errs)) if errs else float("nan"),
            "detection_rate": found / max(len(images), 1)}
