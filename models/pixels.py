"""The generator's pixel scale: uint8 BGR images <-> float values in [-1, 1].

One place owns it. The engines (per frame, into pre-allocated buffers), the trainer,
the export's parity check and distillation all convert through these functions, so the
scale can never drift between training and live.
"""
from __future__ import annotations

import cv2
import numpy as np
from models.hotpath import per_frame

SCALE = 127.5  # uint8 level per unit: 0 -> -1, 255 -> +1


@per_frame
def image_to_input(image: np.ndarray, out: np.ndarray) -> np.ndarray:
    """One (H, W, 3) uint8 image -> ``out``, (1, 3, H, W) of any float dtype, in [-1, 1]."""
    np.multiply(image.transpose(2, 0, 1)[None], 1 / SCALE, out=out, casting="unsafe")
    out -= 1.0
    return out


@per_frame
def output_to_image(photo: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) float in [-1, 1] -> ``out``, (H, W, 3) uint8, rounded and saturated."""
    hwc = np.ascontiguousarray(photo[0].transpose(1, 2, 0), dtype=np.float32)
    cv2.convertScaleAbs(hwc, dst=out, alpha=SCALE, beta=SCALE)
    return out


def images_to_tensor(images: np.ndarray):
    """(B, H, W, 3) uint8 -> torch (B, 3, H, W) float32 in [-1, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(SCALE).sub_(1.0)


def tensor_to_images(t) -> np.ndarray:
    """torch (B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8 (rounded, clamped)."""
    return ((t.detach().float().clamp(-1, 1) + 1) * SCALE).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def unit_from_levels_(t):
    """In place on a float tensor holding uint8 levels (any device): -> [-1, 1]."""
    return t.mul_(1 / SCALE).sub_(1.0)


def levels_from_unit(t):
    """A float tensor in [-1, 1] (any device) -> uint8 levels, rounded and clamped."""
    import torch

    return ((t.float() + 1.0) * SCALE + 0.5).clamp_(0, 255).to(torch.uint8)
