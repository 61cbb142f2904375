"""A synthetic face ("puppet"): Face Mesh landmarks deformed by a few expression
controls and rendered as a shaded triangle mesh that Face Mesh detects again.

It stands in for a person wherever one is needed without a camera or a real video:
hermetic tests, the demo, benchmarks, distillation's extra driver. ``PuppetPose`` is
what a frame shows, ``FaceShape`` is who the puppet is, ``puppet_points`` deforms the
mesh, ``render_puppet`` draws it, and ``PuppetScript`` says what frame ``i`` of a
seeded performance shows (its exact landmarks and image), so tests know the truth.
Both training and live use it, so it lives here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from models import topology as T
from models.faces import base_face
from models.geometry import interocular, rotation_from_angles, smoothstep


@dataclass(frozen=True)
class PuppetPose:
    """Expression controls, 0 = neutral. jaw, smile, blink, brow in [0, 1];
    yaw, pitch, roll in degrees; gaze_x, gaze_y move both irises, in eye widths
    (positive: towards image right, and down)."""

    jaw: float = 0.0
    smile: float = 0.0
    blink: float = 0.0
    brow: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0


@dataclass(frozen=True)
class FaceShape:
    """Who the puppet is: per-axis scale of the base mesh, its skin colour (BGR), and
    its look. ``iris`` None draws a plain dark iris; a colour (BGR) draws an iris of
    that colour with a pupil and a catch-light. ``teeth`` shows upper teeth and a
    tongue when the mouth opens (else a dark cavity)."""

    width: float = 1.0
    height: float = 1.0
    depth: float = 1.0
    skin: tuple[int, int, int] = (150, 180, 225)
    background: tuple[int, int, int] = (70, 60, 50)
    iris: tuple[int, int, int] | None = None
    teeth: bool = False
    lips: tuple[int, int, int] = (60, 60, 190)
    brows: tuple[int, int, int] = (35, 40, 50)
    hair: tuple[int, int, int] | None = None  # BGR: hair behind the head and a neck below it; None: neither
    smooth: bool = False  # soften the mesh's facets into smooth shading


JAW_DROP = 0.5  # IOD units the chin drops at jaw = 1
_IRIS_RIGHT, _IRIS_LEFT = list(range(468, 473)), list(range(473, 478))  # each iris: its centre, then 4 rim points


def _split_loop(loop_name: str, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a closed contour at points a and b into its (upper, lower) halves."""
    lp = list(T.loop(loop_name))
    ia, ib = lp.index(a), lp.index(b)
    if ia > ib:
        ia, ib = ib, ia
    one, two = lp[ia + 1 : ib], lp[ib + 1 :] + lp[:ia]
    base = base_face()
    up, low = (one, two) if base[one, 1].mean() < base[two, 1].mean() else (two, one)
    return np.array(up, dtype=np.intp), np.array(low, dtype=np.intp)


def jaw_opening() -> np.ndarray:
    """(478, 3) float64: how a face's points move as its mouth opens (the puppet's jaw),
    in inter-ocular distances per inter-ocular distance of inner-lip gap."""
    jaw = _deformers()["jaw"]
    return jaw / (jaw[T.LOWER_LIP_INNER, 1] - jaw[T.UPPER_LIP_INNER, 1])


@cache
def _deformers() -> dict[str, np.ndarray]:
    """Per-landmark displacement fields (478, 3) for unit jaw/smile/blink/brow, in IOD units."""
    b = base_face().astype(np.float64)
    n = len(b)
    x, y = b[:, 0], b[:, 1]

    # Jaw: everything below the mouth corners drops, fading out towards the ears.
    y_corner = (b[T.MOUTH_RIGHT, 1] + b[T.MOUTH_LEFT, 1]) / 2
    up_o, low_o = _split_loop("outer_lips", T.MOUTH_RIGHT, T.MOUTH_LEFT)
    up_i, low_i = _split_loop("inner_lips", 78, 308)
    lower = set(low_o) | set(low_i)
    upper = set(up_o) | set(up_i)
    y_low = b[17, 1]
    w = smoothstep((y - y_corner) / (y_low - y_corner)) * (1 - smoothstep((np.abs(x) - 0.55) / 0.5))
    # The lower lip opens as an arc (an ellipse with its ends at the corners), not a box.
    half = (b[T.MOUTH_LEFT, 0] - b[T.MOUTH_RIGHT, 0]) / 2
    mid_x = (b[T.MOUTH_LEFT, 0] + b[T.MOUTH_RIGHT, 0]) / 2
    low = np.array(sorted(lower))
    w[low] = np.sqrt(np.clip(1 - ((x[low] - mid_x) / half) ** 2, 0.0, 1.0))
    w[list(upper)] = 0.0
    jaw = np.zeros((n, 3))
    jaw[:, 1] = JAW_DROP * w
    jaw[:, 2] = 0.1 * w

    # Smile: mouth corners out and up, with a Gaussian falloff around each corner.
    smile = np.zeros((n, 3))
    for idx, sign in ((T.MOUTH_RIGHT, -1.0), (T.MOUTH_LEFT, 1.0)):
        d = np.linalg.norm(b[:, :2] - b[idx, :2], axis=1)
        g = np.exp(-((d / 0.22) ** 2))
        smile[:, 0] += sign * 0.16 * g
        smile[:, 1] += -0.13 * g

    # Blink: the upper lid closes onto the lower lid; skin just above it follows.
    blink = np.zeros((n, 3))
    for name, a, c in (("right_eye", T.RIGHT_EYE_OUTER, T.RIGHT_EYE_INNER), ("left_eye", T.LEFT_EYE_INNER, T.LEFT_EYE_OUTER)):
        up, low = _split_loop(name, a, c)
        order = np.argsort(b[low, 0])
        lx, ly = b[low, 0][order], b[low, 1][order]
        x0, x1 = min(b[a, 0], b[c, 0]), max(b[a, 0], b[c, 0])
        inside = (x > x0) & (x < x1) & (y < np.interp(x, lx, ly))
        gap = np.interp(x, lx, ly) - y
        lid_y = np.interp(x, b[up, 0][np.argsort(b[up, 0])], b[up, 1][np.argsort(b[up, 0])])
        above = inside & (y < lid_y - 1e-6)
        fall = np.clip(1 - (lid_y - y) / 0.3, 0, 1) * 0.6
        dy = np.zeros(n)
        dy[up] = 0.95 * gap[up]
        dy[above] = (fall * 0.95 * (np.interp(x, lx, ly) - lid_y))[above]
        blink[:, 1] += dy

    # Brows: brow points rise; the forehead skin near them follows.
    brow_idx = np.unique(np.concatenate([T.edges("left_brow").ravel(), T.edges("right_brow").ravel()]))
    d = np.min(np.linalg.norm(b[:, None, :2] - b[None, brow_idx, :2], axis=2), axis=1)
    g = np.exp(-((d / 0.25) ** 2)) * (y < b[brow_idx, 1].max() + 0.15)
    brow = np.zeros((n, 3))
    brow[:, 1] = -0.22 * g
    return {"jaw": jaw, "smile": smile, "blink": blink, "brow": brow}


def puppet_points(pose: PuppetPose, shape: FaceShape = FaceShape()) -> np.ndarray:
    """(478, 3) float64 face points in IOD units of the *base* face, centred, y down."""
    b = base_face().astype(np.float64)
    dfm = _deformers()
    pts = b + pose.jaw * dfm["jaw"] + pose.smile * dfm["smile"] + pose.blink * dfm["blink"] + pose.brow * dfm["brow"]
    if pose.gaze_x or pose.gaze_y:
        pts = pts.copy()
        for iris, (a, c), (top, bottom) in ((_IRIS_RIGHT, (T.RIGHT_EYE_OUTER, T.RIGHT_EYE_INNER), (T.RIGHT_EYE_TOP, T.RIGHT_EYE_BOTTOM)),
                                            (_IRIS_LEFT, (T.LEFT_EYE_INNER, T.LEFT_EYE_OUTER), (T.LEFT_EYE_TOP, T.LEFT_EYE_BOTTOM))):
            pts[iris, 0] += pose.gaze_x * abs(b[c, 0] - b[a, 0])
            pts[iris, 1] += pose.gaze_y * abs(b[bottom, 1] - b[top, 1])
    pts = pts * np.array([shape.width, shape.height, shape.depth])
    centre = np.array([0.0, 0.55 * shape.height, 0.6])
    rot = rotation_from_angles(pose.yaw, pose.pitch, pose.roll)
    return (pts - centre) @ rot.T + centre


def place(points: np.ndarray, *, iod_px: float, center: tuple[float, float]) -> np.ndarray:
    """Map IOD-unit points to image pixels: the stable-point centroid lands on
    ``center`` (pixels) and one IOD spans ``iod_px`` pixels."""
    return points * iod_px + np.array([center[0], center[1], 0.0])


def render_puppet(px: np.ndarray, size: tuple[int, int], shape: FaceShape = FaceShape()) -> np.ndarray:
    """Render (478, 3) pixel points as a BGR uint8 image of ``size`` (width, height)."""
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = shape.background
    if shape.hair is not None:
        _draw_hair_and_neck(img, px, shape)
    tris = T.triangles()
    p3 = px[tris]  # (T, 3, 3)
    normals = np.cross(p3[:, 1] - p3[:, 0], p3[:, 2] - p3[:, 0])
    nz = np.abs(normals[:, 2]) / (np.linalg.norm(normals, axis=1) + 1e-9)
    order = np.argsort(-p3[:, :, 2].mean(1))  # far to near
    skin = np.array(shape.skin, np.float64)
    S = 16.0  # 4 fractional bits for sub-pixel vertices
    fixed = np.round(px[:, :2] * S).astype(np.int32)
    for t in order:
        col = tuple(int(c) for c in skin * (0.35 + 0.65 * nz[t]))
        cv2.fillConvexPoly(img, fixed[tris[t]], col, cv2.LINE_AA, 4)
    if shape.smooth:  # blur the shading inside the face only, so the outline stays sharp
        face = np.zeros((h, w), np.uint8)
        cv2.fillPoly(face, [fixed[T.loop("face_oval")]], 255, cv2.LINE_AA, 4)
        face = cv2.erode(face, np.ones((5, 5), np.uint8))
        sigma = max(1.0, 0.03 * interocular(px))
        soft = cv2.GaussianBlur(img, (0, 0), sigma)
        a = (cv2.GaussianBlur(face, (0, 0), 1.5).astype(np.float32) / 255.0)[..., None]
        img = (img * (1 - a) + soft * a).astype(np.uint8)

    def poly(name: str) -> np.ndarray:
        return fixed[T.loop(name)]

    line = max(1, int(round(0.035 * interocular(px))))
    # Eyes: white sclera, the iris clipped to the eye opening, dark lid line.
    for eye, iris_c, iris in (("right_eye", T.RIGHT_IRIS_CENTER, range(469, 473)), ("left_eye", T.LEFT_IRIS_CENTER, range(474, 478))):
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [poly(eye)], 255, cv2.LINE_AA, 4)
        eye_img = img.copy()
        cv2.fillPoly(eye_img, [poly(eye)], (235, 235, 235), cv2.LINE_AA, 4)
        r = float(np.mean(np.linalg.norm(px[list(iris), :2] - px[iris_c, :2], axis=1)))
        _draw_iris(eye_img, fixed[iris_c], r, S, shape.iris)
        a = (mask.astype(np.float32) / 255.0)[..., None]
        img = (img * (1 - a) + eye_img * a).astype(np.uint8)
        cv2.polylines(img, [poly(eye)], True, (30, 25, 25), line, cv2.LINE_AA, 4)
    # Brows: thick dark strokes along both brow edge sets.
    for brow in ("right_brow", "left_brow"):
        segs = [fixed[e] for e in T.edges(brow)]
        cv2.polylines(img, segs, False, shape.brows, 3 * line, cv2.LINE_AA, 4)
    # Lips, then the mouth opening: a dark cavity, with teeth and a tongue where the shape has them.
    cv2.fillPoly(img, [poly("outer_lips")], shape.lips, cv2.LINE_AA, 4)
    if not shape.teeth:
        cv2.fillPoly(img, [poly("inner_lips")], (45, 35, 90), cv2.LINE_AA, 4)
        return img
    return _draw_mouth_interior(img, px, fixed, poly("inner_lips"), S)


def _draw_hair_and_neck(img: np.ndarray, px: np.ndarray, shape: FaceShape) -> None:
    """A head of hair behind the upper face and a neck under the chin, placed and
    turned with the face's own landmarks (drawn first: the face covers them)."""
    h, w = img.shape[:2]
    iod = interocular(px)
    top, chin = px[10, :2], px[152, :2]
    up = (top - chin) / (np.linalg.norm(top - chin) + 1e-9)
    side = np.array([-up[1], up[0]])
    half = 0.5 * float(np.linalg.norm(px[234, :2] - px[454, :2]))
    eyes = (px[T.RIGHT_EYE_OUTER, :2] + px[T.LEFT_EYE_OUTER, :2]) / 2
    # Hair: an ellipse around the crown, kept above a line just below the eyes.
    hair_c = eyes + up * 0.25 * iod
    angle = math.degrees(math.atan2(side[1], side[0]))
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, tuple(int(v * 16) for v in hair_c), (int(1.18 * half * 16), int((np.dot(top - hair_c, up) + 0.35 * iod) * 16)),
                angle, 0, 360, 255, -1, cv2.LINE_AA, 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    above = (xx - eyes[0]) * up[0] + (yy - eyes[1]) * up[1] > -0.45 * iod
    mask[~above] = 0
    a = (cv2.GaussianBlur(mask, (0, 0), 1.0).astype(np.float32) / 255.0)[..., None]
    img[:] = (img * (1 - a) + np.array(shape.hair, np.float32) * a).astype(np.uint8)
    # Neck: a slightly darker column from under the jaw down out of the frame.
    neck_w = 0.6 * 2 * half
    base = chin + up * 0.6 * iod
    neck = np.array([base + side * neck_w / 2, base - side * neck_w / 2,
                     base - side * neck_w * 0.6 - up * 4 * iod, base + side * neck_w * 0.6 - up * 4 * iod])
    cv2.fillConvexPoly(img, np.round(neck * 16).astype(np.int32), tuple(int(c * 0.72) for c in shape.skin), cv2.LINE_AA, 4)


def _draw_iris(img: np.ndarray, centre: np.ndarray, r: float, S: float, colour: tuple[int, int, int] | None) -> None:
    """An iris of radius ``r`` pixels at ``centre`` (fixed-point, ``S`` per pixel): plain
    dark, or ``colour`` with a darker rim, a pupil and a catch-light."""
    c = tuple(int(v) for v in centre)
    if colour is None:
        cv2.circle(img, c, int(round(r * S)), (40, 30, 25), -1, cv2.LINE_AA, 4)
        return
    cv2.circle(img, c, int(round(r * S)), tuple(int(v * 0.55) for v in colour), -1, cv2.LINE_AA, 4)
    cv2.circle(img, c, int(round(0.85 * r * S)), colour, -1, cv2.LINE_AA, 4)
    cv2.circle(img, c, int(round(0.42 * r * S)), (15, 12, 12), -1, cv2.LINE_AA, 4)
    glint = (int(c[0] - 0.35 * r * S), int(c[1] - 0.35 * r * S))
    cv2.circle(img, glint, max(1, int(round(0.18 * r * S))), (250, 250, 250), -1, cv2.LINE_AA, 4)


def _draw_mouth_interior(img: np.ndarray, px: np.ndarray, fixed: np.ndarray, opening: np.ndarray, S: float) -> np.ndarray:
    """The open mouth: a dark cavity, a band of upper teeth under the upper lip and a
    tongue at the bottom, all clipped to the inner-lip opening."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [opening], 255, cv2.LINE_AA, 4)
    inner = img.copy()
    cv2.fillPoly(inner, [opening], (40, 30, 70), cv2.LINE_AA, 4)
    lp = px[T.loop("inner_lips"), :2]
    left, right = float(lp[:, 0].min()), float(lp[:, 0].max())
    top, bottom = float(px[13, 1]), float(px[14, 1])  # the inner lips' midpoints, upper and lower
    gap = float(np.linalg.norm(px[14, :2] - px[13, :2]))
    if gap > 0.06 * interocular(px):  # open: teeth and tongue; nearly shut: the dark line alone
        cx = (left + right) / 2
        half_w = (right - left) / 2
        teeth_h = min(0.45 * gap, 0.09 * (right - left) + 2)
        tongue = (int(cx * S), int((bottom + 0.15 * gap) * S))
        cv2.ellipse(inner, tongue, (int(0.55 * half_w * S), int(0.45 * gap * S)), 0, 0, 360, (95, 90, 185), -1, cv2.LINE_AA, 4)
        band = np.array([[left, top - 2], [right, top - 2], [right, top + teeth_h], [left, top + teeth_h]]) * S
        cv2.fillConvexPoly(inner, band.astype(np.int32), (225, 232, 238), cv2.LINE_AA, 4)
        for k in range(-3, 4):  # the gaps between the front teeth
            x = cx + k * 0.16 * half_w
            cv2.line(inner, (int(x * S), int((top - 2) * S)), (int(x * S), int((top + teeth_h) * S)), (180, 185, 190), 1, cv2.LINE_AA, 4)
    a = (mask.astype(np.float32) / 255.0)[..., None]
    return (img * (1 - a) + inner * a).astype(np.uint8)


# Two stock puppets: a target and a driver with another face shape and colouring.
TARGET_SHAPE = FaceShape(width=1.0, height=1.0, skin=(150, 180, 225), background=(70, 60, 50))
DRIVER_SHAPE = FaceShape(width=1.18, height=0.9, skin=(120, 150, 190), background=(40, 70, 40))
# The built-in character's look: coloured irises, teeth, hair and smooth skin (models/data/character).
CHARACTER_SHAPE = FaceShape(width=0.96, height=1.04, skin=(140, 172, 214), background=(92, 78, 64), iris=(150, 110, 50),
                            teeth=True, lips=(80, 75, 175), brows=(30, 38, 52), hair=(28, 36, 52), smooth=True)


def puppet_pose_at(t: float, seed: int, *, rest_seconds: float = 1.0, turn: float = 1.0, gaze: float = 0.0) -> PuppetPose:
    """The puppet's scripted expression at time ``t`` (seconds): the first
    ``rest_seconds`` at rest (a neutral to calibrate on), then smooth, seeded motion
    with blinks every few seconds. ``turn`` scales the head's motion (1: yaw up to 18°,
    pitch 8°, roll 6°); ``gaze`` the eyes' (1: up to 0.22 eye widths aside, 0.3 eye
    heights up or down; 0: the eyes look ahead)."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.15, 0.5, size=7)  # Hz
    ph = rng.uniform(0, 2 * math.pi, size=7)
    ramp = min(1.0, max(0.0, (t - rest_seconds) / 0.5))

    def wave(i: int) -> float:
        return math.sin(2 * math.pi * f[i] * t + ph[i])

    blink_period = 2.5 + 2 * rng.uniform()
    phase = (t + rng.uniform() * blink_period) % blink_period
    blink = max(0.0, 1 - abs(phase - 0.15) / 0.15) if t > rest_seconds else 0.0
    return PuppetPose(
        jaw=ramp * 0.7 * max(0.0, wave(0)) ** 1.5,
        smile=ramp * 0.8 * max(0.0, wave(1)),
        blink=min(1.0, blink * 1.2),
        brow=ramp * 0.7 * max(0.0, wave(2)) ** 2,
        yaw=turn * ramp * 18 * wave(3),
        pitch=turn * ramp * 8 * wave(4),
        roll=turn * ramp * 6 * wave(5),
        **(_gaze_at(t, seed, gaze * ramp) if gaze else {}),
    )


def _gaze_at(t: float, seed: int, scale: float) -> dict[str, float]:
    """Gaze that holds and then shifts, as eyes do, from its own seeded stream (so a
    script without gaze keeps the rest of its performance)."""
    rng = np.random.default_rng(seed + 7919)
    f = rng.uniform(0.12, 0.35, size=2)
    ph = rng.uniform(0, 2 * math.pi, size=2)

    def held(i: int) -> float:  # a sine pushed towards its extremes: dwell, then move
        v = math.sin(2 * math.pi * f[i] * t + ph[i])
        return math.copysign(abs(v) ** 0.5, v)

    return {"gaze_x": scale * 0.22 * held(0), "gaze_y": scale * 0.3 * held(1)}


@dataclass(frozen=True)
class PuppetScript:
    """A seeded puppet performance in a (width, height) frame at ``fps``: frame ``i``
    shows ``puppet_pose_at(i / fps, seed)``, its head drifting by ``drift`` of the frame."""

    seed: int = 1
    shape: FaceShape = TARGET_SHAPE
    size: tuple[int, int] = (512, 512)
    fps: float = 30.0
    drift: float = 0.06
    turn: float = 1.0  # head motion scale (see puppet_pose_at)
    gaze: float = 0.0  # eye motion scale (see puppet_pose_at)
    iod: float = 0.27  # inter-ocular distance as a fraction of the frame's smaller side (the head's size)

    def pose(self, index: int) -> PuppetPose:
        return puppet_pose_at(index / self.fps, self.seed, turn=self.turn, gaze=self.gaze)

    def points(self, index: int) -> np.ndarray:
        """(478, 3) float64 pixel landmarks of frame ``index``: the truth it renders."""
        w, h = self.size
        t = index / self.fps
        iod = self.iod * min(w, h)
        cx = w / 2 + self.drift * w * math.sin(2 * math.pi * 0.11 * t) * (t > 1)
        cy = h / 2 - 0.5 * iod + self.drift * h * 0.5 * math.sin(2 * math.pi * 0.07 * t + 1) * (t > 1)
        return place(puppet_points(self.pose(index), self.shape), iod_px=iod, center=(cx, cy))

    def image(self, index: int) -> np.ndarray:
        """Frame ``index``, BGR uint8 (height, width, 3)."""
        return render_puppet(self.points(index), self.size, self.shape)


def write_puppet_clip(path, *, seconds: float, seed: int = 1, shape: FaceShape = TARGET_SHAPE, size: int = 480,
                      fps: float = 30.0, turn: float = 1.0, gaze: float = 0.0, iod: float = 0.27) -> int:
    """Render ``seconds`` of a seeded puppet performance to an mp4; returns the frames written."""
    from models.video import write_video

    script = PuppetScript(seed, shape, (size, size), fps, turn=turn, gaze=gaze, iod=iod)
    return write_video(path, (script.image(i) for i in range(int(seconds * fps))), fps)
