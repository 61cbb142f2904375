"""Face Mesh topology: which of the 478 landmarks form which facial feature.

The data lives in ``models/data/topology.json`` (derived from mediapipe's connection
lists by ``tools/make_topology.py``) so that rendering never imports mediapipe.
"""
from __future__ import annotations

import json
from functools import cache
from importlib import resources

import numpy as np

NUM_LANDMARKS = 478

# Named points (MediaPipe indices). "right" is the subject's right, image left.
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_INNER, LEFT_EYE_OUTER = 362, 263
RIGHT_EYE_TOP, RIGHT_EYE_BOTTOM = 159, 145
LEFT_EYE_TOP, LEFT_EYE_BOTTOM = 386, 374
RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER = 468, 473
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
RIGHT_BROW_MID, LEFT_BROW_MID = 105, 334
NOSE_TIP = 1

# Points that move little with expression: eye corners, nose bridge, forehead, temples.
# Head pose is fitted on these only, so a smile or an open jaw does not read as a head turn.
STABLE_POINTS = np.array(
    [33, 133, 362, 263, 168, 6, 197, 195, 10, 151, 9, 8, 234, 454, 127, 356], dtype=np.intp
)


@cache
def topology() -> dict:
    """The parsed topology.json: ``edges`` per feature, ordered ``loops``, ``triangles``."""
    text = resources.files("models").joinpath("data/topology.json").read_text()
    return json.loads(text)


@cache
def loop(name: str) -> np.ndarray:
    """Ordered landmark indices of a closed contour (face_oval, left_eye, right_eye,
    outer_lips, inner_lips) as an intp array."""
    return np.asarray(topology()["loops"][name], dtype=np.intp)


@cache
def edges(name: str) -> np.ndarray:
    """(E, 2) intp array of landmark index pairs for one feature."""
    return np.asarray(topology()["edges"][name], dtype=np.intp).reshape(-1, 2)


@cache
def triangles() -> np.ndarray:
    """(T, 3) intp array of the Face Mesh tessellation's triangles."""
    return np.asarray(topology()["triangles"], dtype=np.intp)


@cache
def region_indices() -> dict[str, np.ndarray]:
    """Landmark indices per expression region, used to scale expression per region.

    Regions may not overlap; anything not listed belongs to ``rest``.
    """
    def pts(*names: str) -> set[int]:
        return {int(i) for n in names for i in edges(n).ravel()}

    mouth = pts("lips")
    eyes = pts("left_eye", "right_eye", "left_iris", "right_iris") | {468, 473}
    brows = pts("left_brow", "right_brow")
    out = {
        "mouth": np.array(sorted(mouth), dtype=np.intp),
        "eyes": np.array(sorted(eyes - mouth), dtype=np.intp),
        "brows": np.array(sorted(brows - mouth - eyes), dtype=np.intp),
    }
    used = mouth | eyes | brows
    out["rest"] = np.array(sorted(set(range(NUM_LANDMARKS)) - used), dtype=np.intp)
    return out
