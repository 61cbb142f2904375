"""Retargeting: move the target's face the way the driver's face moves, while the
target keeps its own face shape and stays within what its own clip shows.

Each person gets a *canonical frame*: their neutral face's pose is removed by a
similarity fit of the bundled frontal face onto it (stable points only), and lengths
are measured in that person's inter-ocular distance (IOD). Then, per driver frame:

1. Map the frame into the driver's canonical frame and fit its head pose ``P``
   (similarity on the stable points) relative to the driver's neutral.
2. Expression = pose-free frame − driver neutral, in driver IODs, scaled per region:
   by the user's gains, and by the ratio of the two faces' own feature sizes where a
   delta is naturally relative to the feature (eyelid travel to eye height, mouth
   corner travel to mouth width), so a blink closes the target's eye exactly.
3. Target = target neutral + expression, in target IODs. The mouth's opening is the
   exception: it is not a change from the driver's neutral but the driver's inner-lip
   gap itself (moved by a jaw-drop field), so closed lips close the target's even when
   the driver calibrated mid-sentence.
4. Gaze is not an offset: each iris is placed at the driver's *normalised* position
   inside the eye (eye widths from the eye's centre). The gaze (the two irises' mean)
   is clamped to the range the target's clip shows outside its crossed-eye stretches
   (``Coverage.gaze``), and the driver's vergence is kept. So a target whose clip or
   neutral has crossed eyes still looks where the driver looks. Where the model
   records how its generator draws a horizontal iris position (``GazeResponse``,
   measured at export), the clamp applies to the output's iris, and the sketch asks for
   the position that makes the output's iris land there.
5. Apply ``P`` around the target's neutral, each of its parameters (yaw, pitch, roll,
   shift, scale) softly limited to what the target's clip covers (``Coverage.pose``):
   the generator never has to draw a head pose it has not seen. ``limited`` says by
   how much the last frame exceeded them.
6. Map out of the target's canonical frame into its image.

So a driver at rest yields exactly the target's neutral (up to its gaze, and its lips
parted as far as the driver's), and features
keep their IOD-relative size: a driver's mouth open by 0.4 IOD opens the target's by
0.4 of the target's IOD, whatever the two faces' shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from models import topology as T
from models.faces import base_face
from models.geometry import Similarity, expression, fit_similarity, interocular, rotation_angles, rotation_from_angles, viewer_signals
from models.hotpath import per_frame
from models.puppet import jaw_opening

# (iris centre, its ring of 4 points, eye corner on the image's left, on its right)
EYES = {"right": (T.RIGHT_IRIS_CENTER, slice(469, 473), T.RIGHT_EYE_OUTER, T.RIGHT_EYE_INNER),
        "left": (T.LEFT_IRIS_CENTER, slice(474, 478), T.LEFT_EYE_INNER, T.LEFT_EYE_OUTER)}
POSE_KEYS = ("yaw", "pitch", "roll", "tx", "ty", "scale")
CROSSED = 0.1  # vergence (eye widths) above which a frame counts as crossed-eyed
GAZE_DEFAULT = ((-0.22, 0.22), (-0.12, 0.12))  # iris range (x, y) when a model records none
SKETCH_MARGIN = 0.1  # eye widths a sketch's iris may go past the target's range to make the output reach it
CLOSED_SLACK = 0.005  # IODs of lip gap within which a mouth counts as closed as the most closed one
JAW_PER_GAP = 0.5  # IODs the chin drops per IOD the lips part (fitted on the clips: d6 0.38, d10 0.50, d3 0.81)
TARGET_MOUTH_UNIT = 0.05  # IODs of lip gap that count, in a target's rest score, as much as a feature's whole spread
DRIVER_KEEP, TARGET_KEEP = 0.3, 0.1  # share of the frames a neutral is the median of (a target's clip is long)


class CanonicalFrame:
    """One person's neutral-face frame: pixels <-> pose-free IOD units."""

    def __init__(self, neutral_px: np.ndarray) -> None:
        neutral = np.asarray(neutral_px, dtype=np.float64)
        if neutral.shape != (T.NUM_LANDMARKS, 3) or not np.isfinite(neutral).all():
            raise ValueError(f"a neutral face must be finite (478, 3) points, got shape {neutral.shape}")
        if interocular(neutral) < 1e-3:
            raise ValueError("a neutral face must have distinct eye centres")
        self.pose = fit_similarity(base_face()[T.STABLE_POINTS], neutral[T.STABLE_POINTS])
        unposed = self.pose.invert(neutral)
        self.unit = interocular(unposed)  # canonical length of one IOD
        self.neutral = unposed / self.unit  # (478, 3), IOD units

    def to_canonical(self, px: np.ndarray) -> np.ndarray:
        return self.pose.invert(np.asarray(px, dtype=np.float64)) / self.unit

    def to_pixels(self, pts: np.ndarray) -> np.ndarray:
        return self.pose.apply(pts * self.unit)


@dataclass(frozen=True)
class Gains:
    """Per-region expression gains; 1 transfers the driver's expression as it is. The
    mouth's gain also scales how far the lips part, from closed: at 0 they stay shut."""

    mouth: float = 1.0
    eyes: float = 1.0
    brows: float = 1.0
    rest: float = 1.0
    head_motion: float = 1.0

    def per_point(self) -> np.ndarray:
        """(478, 1) float64 gain for each landmark."""
        g = np.empty((T.NUM_LANDMARKS, 1))
        regions = T.region_indices()
        for name in ("mouth", "eyes", "brows", "rest"):
            g[regions[name]] = getattr(self, name)
        return g


# ---------------------------------------------------------------- the eye's own frame

def eye_frame(pts: np.ndarray, eye: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(centre (2,), horizontal unit (2,), vertical unit (2,), width) of one eye of a
    (478, 3) face: the corners' midpoint, the face's horizontal (33 -> 263), its
    perpendicular (image down), and the corner-to-corner width."""
    _, _, a, b = EYES[eye]
    u = pts[T.LEFT_EYE_OUTER, :2] - pts[T.RIGHT_EYE_OUTER, :2]
    u = u / max(float(np.linalg.norm(u)), 1e-9)
    v = np.array([-u[1], u[0]])
    return (pts[a, :2] + pts[b, :2]) / 2, u, v, float(np.linalg.norm(pts[b, :2] - pts[a, :2]))


def iris_position(pts: np.ndarray, eye: str) -> np.ndarray:
    """(x, y): the iris centre's position in its eye, in eye widths from the eye's
    centre, along the face's horizontal and vertical."""
    c, u, v, w = eye_frame(pts, eye)
    d = pts[EYES[eye][0], :2] - c
    return np.array([d @ u, d @ v]) / max(w, 1e-9)


def place_iris(pts: np.ndarray, eye: str, position: np.ndarray, ring: np.ndarray) -> None:
    """Move one eye's iris (centre and ring, in place) to ``position`` (``iris_position``
    units) in the eye of ``pts``; ``ring`` is the ring's (4, 3) offsets from the centre."""
    centre_i, ring_i, _, _ = EYES[eye]
    c, u, v, w = eye_frame(pts, eye)
    pts[centre_i, :2] = c + (position[0] * u + position[1] * v) * w
    pts[ring_i] = pts[centre_i] + ring


# ---------------------------------------------------------------- what the target's clip covers

def soft_limit(x: float, lo: float, hi: float, knee: float) -> float:
    """``x`` itself inside [lo, hi]; beyond, eased so that it never goes more than
    ``knee`` past the bound (and moves smoothly there, with no kink at the bound)."""
    if x > hi:
        return hi + knee * float(np.tanh((x - hi) / knee))
    if x < lo:
        return lo - knee * float(np.tanh((lo - x) / knee))
    return x


def pose_parameters(sim: Similarity) -> dict[str, float]:
    yaw, pitch, roll = rotation_angles(sim.rotation)
    return {"yaw": yaw, "pitch": pitch, "roll": roll, "tx": float(sim.translation[0]), "ty": float(sim.translation[1]),
            "scale": float(np.log(sim.scale))}


def pose_from_parameters(p: dict[str, float], tz: float) -> Similarity:
    return Similarity(float(np.exp(p["scale"])), rotation_from_angles(p["yaw"], p["pitch"], p["roll"]), np.array([p["tx"], p["ty"], tz]))


KNEES = {"yaw": 1.5, "pitch": 1.5, "roll": 1.5, "tx": 0.03, "ty": 0.03, "scale": 0.02}  # how far past a limit a pose may ease


@dataclass(frozen=True)
class Coverage:
    """What the target's own clip shows, so what its generator can draw: the range of
    each iris's position in its eye (frames that are not crossed-eyed), and of the head
    pose relative to the target's neutral (degrees; shift in IODs; log scale)."""

    gaze: dict = field(default_factory=dict)  # eye -> ((x lo, x hi), (y lo, y hi))
    pose: dict = field(default_factory=dict)  # POSE_KEYS -> (lo, hi)

    def to_dict(self) -> dict:
        return {"gaze": {e: [list(map(float, r)) for r in xy] for e, xy in self.gaze.items()},
                "pose": {k: [float(lo), float(hi)] for k, (lo, hi) in self.pose.items()}}

    @staticmethod
    def from_dict(d: dict | None) -> "Coverage | None":
        """From a record (None when the record has none: a model made before coverage)."""
        if not d:
            return None
        try:
            gaze = {e: tuple(tuple(float(v) for v in d["gaze"][e][i]) for i in range(2)) for e in EYES}
            pose = {k: tuple(float(v) for v in d["pose"][k]) for k in POSE_KEYS}
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(f"coverage record is malformed ({e})") from None
        return Coverage(gaze, pose)


def measure_coverage(faces_px: np.ndarray, neutral_px: np.ndarray, *, low: float = 1.0, high: float = 99.0) -> Coverage:
    """The target's coverage from its clip's faces (F, 478, 3) pixels and its neutral:
    ``low``/``high`` percentiles, so a few odd frames do not widen it."""
    faces = np.asarray(faces_px, dtype=np.float64)
    frame = CanonicalFrame(neutral_px)
    straight = faces[viewer_signals(faces)["vergence"] <= CROSSED]
    gaze_faces = straight if len(straight) >= 10 else faces
    gaze = {}
    for eye in EYES:
        xy = np.array([iris_position(f, eye) for f in gaze_faces])
        gaze[eye] = tuple(tuple(np.percentile(xy[:, i], [low, high])) for i in range(2))
    params = [pose_parameters(fit_similarity(frame.neutral[T.STABLE_POINTS], frame.to_canonical(f)[T.STABLE_POINTS])) for f in faces]
    # The neutral itself (0) is always inside: a driver at rest must give the target at rest.
    pose = {k: (min(float(np.percentile([p[k] for p in params], low)), 0.0), max(float(np.percentile([p[k] for p in params], high)), 0.0))
            for k in POSE_KEYS}
    return Coverage(gaze, pose)


@dataclass(frozen=True)
class GazeResponse:
    """How a generator draws the horizontal iris position its sketch gives, per eye:
    output = gain * sketch + offset (``iris_position`` units), as Face Mesh reads it off
    the generated face. A generator trained briefly on a crossed-eyed clip pulls both
    irises toward that clip's typical (crossed) look; inverting its response puts the
    output's irises where the driver's are. Identity when a model records none."""

    gain: dict = field(default_factory=lambda: {eye: 1.0 for eye in EYES})
    offset: dict = field(default_factory=lambda: {eye: 0.0 for eye in EYES})

    def sketch_x(self, eye: str, wanted: float) -> float:
        """The sketch's horizontal iris position that gives ``wanted`` in the output."""
        return (wanted - self.offset[eye]) / self.gain[eye]

    def to_dict(self) -> dict:
        return {eye: {"gain": float(self.gain[eye]), "offset": float(self.offset[eye])} for eye in EYES}

    @staticmethod
    def from_dict(d: dict | None) -> "GazeResponse":
        """From an untrusted record; identity when there is none. The gain must be in
        [0.3, 3] and the offset within ±0.3 eye widths, or ValueError names the eye."""
        if not d:
            return GazeResponse()
        gain, offset = {}, {}
        for eye in EYES:
            try:
                g, o = float(d[eye]["gain"]), float(d[eye]["offset"])
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"gaze response of the {eye} eye is malformed ({e})") from None
            if not (0.3 <= g <= 3.0 and abs(o) <= 0.3):  # NaN fails both
                raise ValueError(f"gaze response of the {eye} eye is out of range (gain {g}, offset {o})")
            gain[eye], offset[eye] = g, o
        return GazeResponse(gain, offset)


# ---------------------------------------------------------------- the retargeter

def _scale_similarity(sim: Similarity, amount: float) -> Similarity:
    """Interpolate a similarity between identity (0) and itself (1)."""
    if amount == 1.0:
        return sim
    yaw, pitch, roll = rotation_angles(sim.rotation)
    rot = rotation_from_angles(yaw * amount, pitch * amount, roll * amount)
    return Similarity(sim.scale**amount, rot, sim.translation * amount)


def _feature_ratios(target: np.ndarray, driver: np.ndarray) -> np.ndarray:
    """(478, 3) per-point, per-axis scale of driver deltas onto the target (canonical
    neutrals in, IOD units). Clipped to [0.5, 2] so one odd neutral cannot explode."""
    et, ed = expression(target), expression(driver)
    out = np.ones((T.NUM_LANDMARKS, 3))
    regions = T.region_indices()
    out[regions["eyes"], 1] = np.clip(et.eye_open / max(ed.eye_open, 1e-6), 0.5, 2.0)
    out[regions["mouth"], 0] = np.clip(et.mouth_width / max(ed.mouth_width, 1e-6), 0.5, 2.0)
    return out


@cache
def _mouth_opening() -> np.ndarray:
    """(478, 3): how a face's points move, in IODs, as its lips part by one IOD: the
    puppet's jaw on the lips, and ``JAW_PER_GAP`` of it on the chin and jaw below them
    (the puppet's chin drops as far as its lower lip)."""
    field = jaw_opening().copy()
    field[np.setdiff1d(np.arange(T.NUM_LANDMARKS), T.region_indices()["mouth"])] *= JAW_PER_GAP
    return field


class Retargeter:
    """Maps driver landmarks (pixels of the driver's image) to target landmarks
    (pixels of the target's source video), given both neutral faces and, when known,
    what the target's clip covers.

    ``retarget(driver_px)``: (478, 3) float -> (478, 3) float32. After each call,
    ``limited`` maps each pose parameter the driver took beyond the target's coverage
    to how far beyond it went (empty when within).
    """

    def __init__(self, target_neutral_px: np.ndarray, driver_neutral_px: np.ndarray, gains: Gains = Gains(),
                 coverage: Coverage | None = None, response: GazeResponse = GazeResponse()) -> None:
        self.target = CanonicalFrame(target_neutral_px)
        self.driver = CanonicalFrame(driver_neutral_px)
        self.gains, self.coverage, self.response = gains, coverage, response
        self._g = gains.per_point() * _feature_ratios(self.target.neutral, self.driver.neutral)
        # The mouth opens from closed, as far as the driver's, whatever the two neutrals
        # show: a driver who calibrates mid-sentence (d3's first second: lips 0.083 IOD
        # apart) would otherwise close the target's lips past each other when theirs
        # close, and a target whose neutral is parted would never close them.
        gap = lambda n: float(n[T.LOWER_LIP_INNER, 1] - n[T.UPPER_LIP_INNER, 1])  # noqa: E731
        self._mouth = _mouth_opening() * (gains.mouth * gap(self.driver.neutral) - gap(self.target.neutral))
        n = self.target.neutral
        self._rings = {eye: n[EYES[eye][1]] - n[EYES[eye][0]] for eye in EYES}
        self._gaze = coverage.gaze if coverage is not None else {eye: GAZE_DEFAULT for eye in EYES}
        self._gaze_x = tuple(float(np.mean([self._gaze[eye][0][i] for eye in EYES])) for i in (0, 1))  # the gaze's range
        self.limited: dict[str, float] = {}

    @per_frame
    def retarget(self, driver_px: np.ndarray, *, response: GazeResponse | None = None) -> np.ndarray:
        """``response``: the gaze response of the generator this frame goes to, when it is
        not the one given at construction (live's lighter rung has its own)."""
        response = response or self.response
        d = self.driver.to_canonical(driver_px)
        pose = fit_similarity(self.driver.neutral[T.STABLE_POINTS], d[T.STABLE_POINTS])
        free = pose.invert(d)
        target = self.target.neutral + self._g * (free - self.driver.neutral) + self._mouth
        self._place_irises(target, free, response)
        target = self._limit(_scale_similarity(pose, self.gains.head_motion)).apply(target)
        return self.target.to_pixels(target).astype(np.float32)

    def _place_irises(self, target: np.ndarray, free: np.ndarray, response: GazeResponse) -> None:
        """Put each iris of ``target`` (in place) where the driver's sits in its eye.

        The *gaze* (the two irises' mean) is held within the target's range, shifting
        both irises alike, and the driver's vergence is kept. Clamping each eye to its
        own range instead would cross the eyes: a target's two ranges are offset by its
        own look (d6's by +0.09 eye widths, slightly crossed), while a driver looking
        ahead reads -0.01 to -0.11, so one eye of theirs sits past its range in most
        frames, and looking aside both do. The sketch then asks for the position that
        makes the generator draw each iris there, at most SKETCH_MARGIN past what it was
        trained on (it extrapolates cleanly that far)."""
        pos = {eye: iris_position(free, eye) for eye in EYES}
        gaze = (pos["right"][0] + pos["left"][0]) / 2
        shift = float(np.clip(gaze, *self._gaze_x)) - gaze
        for eye, ((xlo, xhi), (ylo, yhi)) in self._gaze.items():
            x = np.clip(response.sketch_x(eye, pos[eye][0] + shift), xlo - SKETCH_MARGIN, xhi + SKETCH_MARGIN)
            place_iris(target, eye, np.array([x, np.clip(pos[eye][1], ylo, yhi)]), self._rings[eye])

    def _limit(self, pose: Similarity) -> Similarity:
        """The pose with each parameter softly kept within the target's coverage."""
        if self.coverage is None:
            return pose
        wanted = pose_parameters(pose)
        kept = {k: soft_limit(v, *self.coverage.pose[k], KNEES[k]) for k, v in wanted.items()}
        self.limited = {k: wanted[k] - kept[k] for k in POSE_KEYS if abs(wanted[k] - kept[k]) > KNEES[k] / 2}
        return pose_from_parameters(kept, float(pose.translation[2]))


def _nearest_typical_pose(poses: np.ndarray) -> int:
    """Index of the (F, 3) yaw, pitch, roll (degrees) nearest their per-angle median,
    each angle counted against its spread (p10-p90, at least 3°)."""
    spread = np.maximum(np.percentile(poses, 90, axis=0) - np.percentile(poses, 10, axis=0), 3.0)
    return int(np.argmin((np.abs(poses - np.median(poses, axis=0)) / spread).sum(axis=1)))


def estimate_neutral(faces_px: np.ndarray, *, target: bool = False, keep: float | None = None) -> np.ndarray:
    """A person's neutral face from many frames of them, (F, 478, 3) pixels.

    Picks the frames nearest to rest (mouth closed; eyes, brows, mouth width and
    head pose at their typical closed-mouth values; eyes looking ahead, not crossed),
    aligns them to the most restful one on the stable points and takes the per-point
    median, placed where that frame was. ``keep``: the share of frames used.

    ``target``: the same resting face, but aligned to (placed at)
    the frame whose head pose (yaw, pitch, roll) is nearest the clip's median pose,
    talking or not. Live puts the target at its neutral while the driver sits at their
    own, so that must be the middle of the poses its generator learned, not a turn at
    their edge (d6 rests its closed mouth turned 5° one way; the pose limits then left
    it 1.6° of room that way and 12.6° the other). Its lips are closed where its clip
    shows them closed: its mouth counts in absolute units (``TARGET_MOUTH_UNIT``; against
    d6's wide spread, lips 0.109 IOD apart passed for rest), and it keeps its best tenth.
    A driver's neutral keeps the pose of their most restful frame: what they hold while
    live calibrates.
    Returns (478, 3) float32 pixels.
    """
    faces = np.asarray(faces_px, dtype=np.float64)
    if faces.ndim != 3 or faces.shape[1:] != (T.NUM_LANDMARKS, 3) or len(faces) == 0:
        raise ValueError(f"estimate_neutral needs (F, 478, 3) faces, got {faces.shape}")
    ref = base_face()
    feats, poses = [], []
    for f in faces:
        e = expression(f)
        poses.append(rotation_angles(fit_similarity(ref[T.STABLE_POINTS], f[T.STABLE_POINTS]).rotation))  # yaw, pitch, roll
        feats.append((e.mouth_open, e.eye_open, e.brow_height, e.mouth_width, *poses[-1][:2]))
    feats, poses = np.array(feats), np.array(poses)
    # Rest is judged among the closed-mouth frames: when most of a clip is expressive
    # (smiling, talking), the clip-wide median is not a resting face.
    # Lips within CLOSED_SLACK of the most closed are closed too: else noise on shut lips
    # picks the third (d9's calibration second: a blink at 0.001 IOD against 0.002).
    closed = feats[:, 0] <= max(np.quantile(feats[:, 0], 0.3), feats[:, 0].min() + CLOSED_SLACK)
    rest = np.median(feats[closed], axis=0)
    # Each feature's deviation counts relative to its spread in the clip, floored so a
    # feature that hardly varies (a still head) cannot dominate through tiny noise.
    floor = np.array([0.05, 0.03, 0.03, 0.03, 3.0, 3.0])
    spread = np.maximum(np.percentile(feats, 90, axis=0) - np.percentile(feats, 10, axis=0), floor)
    dev = np.abs(feats - rest) / spread
    # Mouth openness counts from zero; for a target, absolutely (see the docstring).
    dev[:, 0] = feats[:, 0] / (TARGET_MOUTH_UNIT if target else spread[0])
    # A resting face looks ahead: crossed eyes and a sideways gaze count against a frame,
    # absolutely, not relative to the clip (a clip can be crossed-eyed most of the time).
    # Mildly: the irises are placed from looking-ahead frames below anyway.
    sig = viewer_signals(faces)
    score = dev.sum(axis=1) + np.maximum(sig["vergence"] - 0.05, 0) / 0.1 + np.abs(sig["gaze"]) / 0.15
    n = max(1, int(round(len(faces) * (keep if keep is not None else TARGET_KEEP if target else DRIVER_KEEP))))
    chosen = np.argsort(score)[:n]
    anchor = faces[_nearest_typical_pose(poses) if target else chosen[0]]
    aligned = [fit_similarity(f[T.STABLE_POINTS], anchor[T.STABLE_POINTS]).apply(f) for f in faces[chosen]]
    neutral = np.median(np.stack(aligned), axis=0)
    # A per-point median of irises mixes gazes: place each iris at the median position
    # (inside its eye) of the chosen frames that look ahead.
    straight = [f for f, v in zip(faces[chosen], sig["vergence"][chosen]) if v <= CROSSED] or list(faces[chosen])
    for eye in EYES:
        ring = neutral[EYES[eye][1]] - neutral[EYES[eye][0]]
        place_iris(neutral, eye, np.median([iris_position(f, eye) for f in straight], axis=0), ring)
    return neutral.astype(np.float32)
