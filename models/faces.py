"""The bundled frontal face mesh (models/data/base_face.npy).

(478, 3) float32, centred on the stable points, eyes level, in units of the
inter-ocular distance, y down, z away from the camera. It is the synthetic puppet's
mesh and the frontal reference for head-pose angles.
"""
from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np


@cache
def base_face() -> np.ndarray:
    with resources.files("models").joinpath("data/base_face.npy").open("rb") as f:
        pts = np.load(f)
    pts.setflags(write=False)
    return pts
