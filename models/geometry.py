"""Face geometry on pixel-space landmarks: similarity fits, head pose and the
expression signals (mouth opening, eye openness, brow height) used by retargeting,
the dataset's coverage report and the quality metrics.

All functions take (478, 3) float arrays in pixels (see ``Landmarks.pixels``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import topology as T


@dataclass(frozen=True)
class Similarity:
    """x ↦ scale · R · x + t, for row vectors: ``apply(X) = scale * X @ R.T + t``."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    def apply(self, pts: np.ndarray) -> np.ndarray:
        return self.scale * pts @ self.rotation.T + self.translation

    def invert(self, pts: np.ndarray) -> np.ndarray:
        return ((pts - self.translation) @ self.rotation) / self.scale


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """Least-squares similarity (Umeyama 1991) mapping ``src`` (N, 3) onto ``dst`` (N, 3)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("fit_similarity: source points are all identical")
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    s = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[-1] = -1.0  # no reflections
    rot = u @ np.diag(s) @ vt
    scale = float((d * s).sum() / var_s)
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)


def smoothstep(x):
    """0 below 0, 1 above 1, and the cubic 3x² − 2x³ between: an ease with no jump in
    speed at either end. Works on floats and arrays."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def eye_centers(px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) eye centres, each (3,), from the eye corners."""
    right = (px[T.RIGHT_EYE_OUTER] + px[T.RIGHT_EYE_INNER]) / 2
    left = (px[T.LEFT_EYE_INNER] + px[T.LEFT_EYE_OUTER]) / 2
    return right, left


def interocular(px: np.ndarray) -> float:
    """Distance between the eye centres in the image plane (pixels)."""
    r, l = eye_centers(px)
    return float(np.linalg.norm((l - r)[:2]))


def rotation_angles(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation matrix (y-down image axes)."""
    yaw = np.degrees(np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
    roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    return float(yaw), float(pitch), float(roll)


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Inverse of ``rotation_angles``: R = Rz(roll) · Ry(yaw) · Rx(pitch), degrees."""
    y, p, r = np.radians([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Expression:
    """Expression signals, each normalised by the inter-ocular distance."""

    mouth_open: float  # inner-lip gap
    mouth_width: float  # corner to corner
    eye_open: float  # mean of both eyelid gaps
    brow_height: float  # mean brow-to-eye-centre height
    eye_open_right: float = 0.0
    eye_open_left: float = 0.0


def expression(px: np.ndarray) -> Expression:
    """Expression signals of one face (pixels in, IOD-normalised numbers out)."""
    iod = interocular(px)
    if iod <= 1e-6:
        raise ValueError("expression(): degenerate face (eye centres coincide)")

    def d(a: int, b: int) -> float:
        return float(np.linalg.norm((px[a] - px[b])[:2])) / iod

    r_eye, l_eye = eye_centers(px)
    brow = (np.linalg.norm((px[T.RIGHT_BROW_MID] - r_eye)[:2]) + np.linalg.norm((px[T.LEFT_BROW_MID] - l_eye)[:2])) / (2 * iod)
    er, el = d(T.RIGHT_EYE_TOP, T.RIGHT_EYE_BOTTOM), d(T.LEFT_EYE_TOP, T.LEFT_EYE_BOTTOM)
    return Expression(
        mouth_open=d(T.UPPER_LIP_INNER, T.LOWER_LIP_INNER),
        mouth_width=d(T.MOUTH_RIGHT, T.MOUTH_LEFT),
        eye_open=(er + el) / 2,
        brow_height=float(brow),
        eye_open_right=er,
        eye_open_left=el,
    )


def head_pose(px: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a face relative to a frontal ``reference``
    face (both (478, 3) pixels), fitted on the stable points."""
    sim = fit_similarity(reference[T.STABLE_POINTS], px[T.STABLE_POINTS])
    return rotation_angles(sim.rotation)


# ---------------------------------------------------------------- what a viewer reads off a face
# The signals `reenact eval` compares between driver and output, each over frames:
# (F, 478, 3) pixel landmarks in, (F,) numbers out. Lengths are normalised by the face's
# own size, so faces of any size and two different people compare.

def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def face_axis(faces: np.ndarray) -> np.ndarray:
    """(F, 2) unit vectors along the face's horizontal: from landmark 33 to landmark 263."""
    return _unit(faces[:, T.LEFT_EYE_OUTER, :2] - faces[:, T.RIGHT_EYE_OUTER, :2])


def eye_gaze(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) horizontal iris offsets, each (F,): the iris centre's offset from
    its eye's centre (the corners' midpoint), in eye widths, along the face's
    horizontal axis. Iris 468 belongs to the eye at 33/133, iris 473 to 362/263."""
    u = face_axis(faces)
    out = []
    for iris, a, b in ((T.RIGHT_IRIS_CENTER, T.RIGHT_EYE_OUTER, T.RIGHT_EYE_INNER),
                       (T.LEFT_IRIS_CENTER, T.LEFT_EYE_INNER, T.LEFT_EYE_OUTER)):
        centre = (faces[:, a, :2] + faces[:, b, :2]) / 2
        width = np.linalg.norm(faces[:, b, :2] - faces[:, a, :2], axis=1)
        out.append(np.einsum("fi,fi->f", faces[:, iris, :2] - centre, u) / np.maximum(width, 1e-9))
    return out[0], out[1]


def viewer_signals(faces: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame signals of (F, 478, 3) pixel faces:

    * ``mouth``: inner-lip gap / inter-ocular distance (IOD);
    * ``eyes``: eyelid gap / eye width, mean of both eyes;
    * ``brows``: brow-to-upper-lid distance / IOD, mean of both;
    * ``yaw``: the nose tip's offset from the eyes' midpoint along the face's horizontal / IOD;
    * ``gaze``: mean horizontal iris offset of both eyes (``eye_gaze``);
    * ``vergence``: right eye's offset minus the left's; positive means crossed;
    * ``shape``: face-oval width (234-454) over height (10-152).
    """
    faces = np.asarray(faces, dtype=np.float64)
    xy = faces[..., :2]

    def dist(a, b):
        return np.linalg.norm(xy[:, a] - xy[:, b], axis=1)

    right_c, left_c = (xy[:, T.RIGHT_EYE_OUTER] + xy[:, T.RIGHT_EYE_INNER]) / 2, (xy[:, T.LEFT_EYE_INNER] + xy[:, T.LEFT_EYE_OUTER]) / 2
    iod = np.maximum(np.linalg.norm(left_c - right_c, axis=1), 1e-9)
    eyes = (dist(T.RIGHT_EYE_TOP, T.RIGHT_EYE_BOTTOM) / np.maximum(dist(T.RIGHT_EYE_OUTER, T.RIGHT_EYE_INNER), 1e-9)
            + dist(T.LEFT_EYE_TOP, T.LEFT_EYE_BOTTOM) / np.maximum(dist(T.LEFT_EYE_INNER, T.LEFT_EYE_OUTER), 1e-9)) / 2
    brows = (dist(T.RIGHT_BROW_MID, T.RIGHT_EYE_TOP) + dist(T.LEFT_BROW_MID, T.LEFT_EYE_TOP)) / (2 * iod)
    yaw = np.einsum("fi,fi->f", xy[:, T.NOSE_TIP] - (right_c + left_c) / 2, face_axis(faces)) / iod
    gr, gl = eye_gaze(faces)
    return {"mouth": dist(T.UPPER_LIP_INNER, T.LOWER_LIP_INNER) / iod, "eyes": eyes, "brows": brows, "yaw": yaw,
            "gaze": (gr + gl) / 2, "vergence": gr - gl, "shape": dist(234, 454) / np.maximum(dist(10, 152), 1e-9)}
