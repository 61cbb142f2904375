"""Validation metrics on held-out frames.

Image quality: L1 (on [0, 1] images), PSNR and SSIM from scikit-image.
Landmark fidelity: Face Mesh on the generated frame against the landmarks its sketch
was drawn from, mean point error over the 478 points divided by the inter-ocular
distance; and the fraction of generated frames in which a face is found at all.
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from models.geometry import interocular
from models.landmarks import LandmarkDetector


def image_metrics(fake: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """fake, real: (B, H, W, 3) uint8. Means over the batch."""
    l1, psnr, ssim = [], [], []
    for f, r in zip(fake, real):
        l1.append(float(np.abs(f.astype(np.float32) - r.astype(np.float32)).mean() / 255.0))
        psnr.append(float(peak_signal_noise_ratio(r, f, data_range=255)))
        ssim.append(float(structural_similarity(r, f, channel_axis=2, data_range=255)))
    return {"l1": float(np.mean(l1)), "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}


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
