"""Validation metrics on held-out frames: L1 (on [0, 1] images), PSNR and SSIM from
scikit-image. Landmark fidelity, which live's bench reports too, is in models/fidelity.py."""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def image_metrics(fake: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """fake, real: (B, H, W, 3) uint8. Means over the batch."""
    l1, psnr, ssim = [], [], []
    for f, r in zip(fake, real):
        l1.append(float(np.abs(f.astype(np.float32) - r.astype(np.float32)).mean() / 255.0))
        psnr.append(float(peak_signal_noise_ratio(r, f, data_range=255)))
        ssim.append(float(structural_similarity(r, f, channel_axis=2, data_range=255)))
    return {"l1": float(np.mean(l1)), "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}
