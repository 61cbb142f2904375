"""Derive models/data/base_face.npy: one frontal, neutral face (478, 3), float32.

It is the synthetic puppet's mesh and the frontal reference for head-pose angles.
Taken from the most frontal closed-mouth frame of a shared driver clip, then centred
on the stable points, rolled level and scaled to unit inter-ocular distance. Only the
geometry is kept: no pixel of the person is stored.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import topology as T  # noqa: E402
from models.geometry import expression, eye_centers, interocular  # noqa: E402
from models.landmarks import FaceMeshDetector  # noqa: E402


def main(video: str) -> None:
    cap = cv2.VideoCapture(video)
    best, best_score = None, np.inf
    with FaceMeshDetector(tracking=True) as det:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            lm = det.detect(frame)
            if lm is None:
                continue
            px = lm.pixels()
            r, l = eye_centers(px)
            mid = (r + l) / 2
            iod = interocular(px)
            ex = expression(px)
            # frontal: nose tip centred between the eyes, eyes level, little depth skew
            asym = abs(px[T.NOSE_TIP, 0] - mid[0]) / iod + abs(l[1] - r[1]) / iod + abs(l[2] - r[2]) / iod
            score = asym + 2 * ex.mouth_open
            if score < best_score:
                best, best_score = px, score
    assert best is not None, "no face found"
    r, l = eye_centers(best)
    angle = np.arctan2(l[1] - r[1], l[0] - r[0])
    c, s = np.cos(-angle), np.sin(-angle)
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    pts = (best - best[T.STABLE_POINTS].mean(0)) @ rz.T / interocular(best)
    out = ROOT / "models" / "data" / "base_face.npy"
    np.save(out, pts.astype(np.float32))
    print(f"wrote {out}; frontal score {best_score:.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared/data/faces/driver_liveportrait_d10.mp4"))
