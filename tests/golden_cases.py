"""The fixed inputs of the golden sketch tests. Regenerate the images only when the
sketch contract changes on purpose (and bump RENDERER_VERSION):
    .venv/bin/python -m tests.golden_cases
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.puppet import PuppetPose, place, puppet_points
from models.sketch import SketchSpec

GOLDEN = Path(__file__).parent / "golden"


def cases() -> dict[str, tuple[np.ndarray, SketchSpec]]:
    neutral = place(puppet_points(PuppetPose()), iod_px=70.3, center=(128.4, 101.7))
    talking = place(puppet_points(PuppetPose(jaw=0.6, smile=0.4, blink=1.0, yaw=12, roll=-5)), iod_px=41.7, center=(96.2, 50.9))
    return {
        "neutral_256x256": (neutral.astype(np.float32), SketchSpec(256, 256)),
        "talking_192x128": (talking.astype(np.float32), SketchSpec(192, 128, line_width=3.0)),
    }


if __name__ == "__main__":
    import cv2

    from models.sketch import render_sketch

    GOLDEN.mkdir(exist_ok=True)
    for name, (pts, spec) in cases().items():
        np.save(GOLDEN / f"{name}.points.npy", pts)
        cv2.imwrite(str(GOLDEN / f"{name}.png"), render_sketch(pts, spec))
        print(name, spec.hash)
