"""The per-frame work of live: a driver frame in, the composed target frame out, each
stage timed.

    landmarks -> smoothing -> retarget onto the target -> sketch (the model's own
    spec and framing) -> generator -> composition into the target's plate

Everything that can be prepared once is prepared in ``__init__`` (the plate at the
output size, the feather mask, buffers); the per-frame methods only run the stages.
The contract (framing, sketch spec, target neutral) comes from the model directory,
never from config.toml. What a viewer is shown of it (the view, the badge, the
watermark) is the output stage's business (``live/output.py``), and the controls that
change the algorithm's parameters (gains, recalibration) live in ``live/controls.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from live.engines import Engine
from live.sources import Frame
from models.artifact import ModelDir
from models.config import LandmarksConfig, LiveConfig
from models.geometry import interocular, smoothstep
from models.landmarks import LandmarkDetector
from models.retarget import Gains, GazeResponse, Retargeter, estimate_neutral
from models.sketch import render_sketch
from models.smoothing import OneEuroFilter
from models.hotpath import per_frame

STAGES = ("landmarks", "smoothing", "retarget", "sketch", "inference", "compose")
FRONT_STAGES = STAGES[:4]  # the CPU half that the pipelined loop runs in its own thread


@dataclass
class FaceState:
    """The no-face policy. While the face is missing: hold the last output for
    ``hold_s``, then ease the target to its neutral face over ``ease_s``. When the face
    returns, ease from wherever the target was back to the driven face over ``ease_s``."""

    hold_s: float = 0.5
    ease_s: float = 0.4
    lost_at: float | None = None
    found_at: float | None = None
    from_pts: np.ndarray | None = None  # where an ease starts

    @per_frame
    def blend(self, t: float, driven: np.ndarray | None, last: np.ndarray | None, neutral: np.ndarray) -> np.ndarray | None:
        """Target landmarks to draw at time ``t``, or None to repeat the last output."""
        if driven is None:
            if self.lost_at is None:
                self.lost_at, self.found_at = t, None
                self.from_pts = last if last is not None else neutral
            since = t - self.lost_at
            if since < self.hold_s and last is not None:
                return None
            a = smoothstep((since - self.hold_s) / self.ease_s) if last is not None else 1.0
            return (1 - a) * self.from_pts + a * neutral
        if self.lost_at is not None:  # the face just came back
            self.from_pts = last if last is not None else neutral
            self.lost_at, self.found_at = None, t
        if self.found_at is not None:
            a = smoothstep((t - self.found_at) / self.ease_s)
            if a >= 1.0:
                self.found_at = None
            return (1 - a) * self.from_pts + a * driven
        return driven


@dataclass
class Calibration:
    """The driver's neutral face: the first ``seconds`` of driving, or on demand.
    Until it is ready, the first frame stands in, so the face moves from frame one, and
    for the first ``refresh_until`` seconds the estimate is redone every ``refresh_s``
    from the frames so far: a first frame that is not at rest (turned, talking) is
    replaced within a fraction of a second instead of skewing the whole first second.
    (Later refreshes would cost more and more on a long measurement, for little.)"""

    seconds: float
    refresh_s: float = 0.2
    refresh_until: float = 1.0
    started: float | None = None
    refreshed: float = 0.0
    frames: list = field(default_factory=list)
    neutral: np.ndarray | None = None
    ready: bool = False
    restarts: int = 0  # how often it was asked to measure again (the controls' recalibrate)
    completed: int = 0  # how many neutrals it has measured

    def restart(self) -> None:
        self.started, self.frames, self.ready = None, [], False
        self.restarts += 1

    @per_frame
    def add(self, t: float, px: np.ndarray) -> bool:
        """Feed a frame; True when the neutral was (re)estimated on it."""
        if self.ready:
            return False
        if self.started is None:
            self.started = self.refreshed = t
            self.neutral, self.frames = px.copy(), [px]
            if self.seconds <= 0:
                self.ready = True
                self.completed += 1
            return True
        self.frames.append(px)
        done = t - self.started >= self.seconds
        if not done and (t - self.refreshed < self.refresh_s or t - self.started > self.refresh_until):
            return False
        self.neutral, self.refreshed = estimate_neutral(np.stack(self.frames)), t
        if done:
            self.ready, self.frames = True, []
            self.completed += 1
        return True


@dataclass
class NeutralHandover:
    """When the driver's neutral changes mid-stream (the first second's measurement
    replacing the first frame's stand-in, or a recalibration), the same driver face
    retargets to a different target face: drawn at once, the head pops. Instead, for
    ``ease_s`` both retargetings follow the driver and the drawing crossfades from the
    old one's face to the new one's. A change during an ease starts from the blend
    drawn at that moment."""

    ease_s: float = 0.2
    old: Callable[[np.ndarray, GazeResponse], np.ndarray] | None = None  # (driver px, response) -> target px
    since: float = 0.0

    def start(self, old: Retargeter | None, t: float) -> None:
        """The neutral changed at ``t``; ``old`` drew until now (None: nothing to ease from)."""
        if old is None:
            self.old = None
            return
        if self.old is None or self._weight(t) >= 1.0:
            self.old = lambda px, r: old.retarget(px, response=r)
        else:  # still easing: freeze the blend reached so far as the face to leave
            earlier, a = self.old, self._weight(t)
            self.old = lambda px, r: (1 - a) * earlier(px, r) + a * old.retarget(px, response=r)
        self.since = t

    def _weight(self, t: float) -> float:
        return smoothstep((t - self.since) / self.ease_s) if self.ease_s > 0 else 1.0

    @per_frame
    def blend(self, t: float, px: np.ndarray, new: np.ndarray, response: GazeResponse) -> np.ndarray:
        """The target landmarks to draw for driver ``px``, given the new retargeter's ``new``."""
        if self.old is None:
            return new
        a = self._weight(t)
        if a >= 1.0:
            self.old = None
            return new
        return (1 - a) * self.old(px, response) + a * new


@dataclass
class SteadyFace:
    """The generator redraws every frame from scratch, so even a face held still
    shimmers: texture and edges move by a pixel from frame to frame, more than the
    driver's face does. While the landmarks barely move, keep ``keep`` of the previous
    generated face. The new face always weighs at least the largest landmark motion of
    the frame as a share of ``motion`` inter-ocular distances, so from that motion on
    the face is drawn afresh (no ghosting, no lag on real motion): only flicker, and
    motion slower than that, is damped."""

    keep: float = 0.6
    motion: float = 0.035
    last: np.ndarray | None = None  # (h, w, 3) uint8, the previous face as shown
    last_pts: np.ndarray | None = None  # (478, 2) its landmarks, model pixels

    @per_frame
    def __call__(self, face: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """``face`` (h, w, 3) uint8 generated from landmarks ``pts`` (478, 2+) in model
        pixels -> the face to show, in this object's own buffer (engines reuse theirs)."""
        pts = pts[:, :2]
        if self.last is None or self.last.shape != face.shape:
            self.last, self.last_pts = face.copy(), pts.copy()
            return self.last
        moved = float(np.abs(pts - self.last_pts).max()) / max(interocular(pts), 1e-6)
        keep = min(self.keep, 1.0 - moved / self.motion)
        if keep > 0:
            cv2.addWeighted(face, 1.0 - keep, self.last, keep, 0.0, dst=self.last)
        else:
            np.copyto(self.last, face)
        self.last_pts[:] = pts
        return self.last


def letterbox(image_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where ``fit_into`` puts a (width, height) image in a (width, height) canvas:
    (x, y, width, height) of the picture, its aspect kept, centred."""
    (iw, ih), (w, h) = image_size, size
    s = min(w / iw, h / ih)
    nw, nh = max(1, int(round(iw * s))), max(1, int(round(ih * s)))
    return (w - nw) // 2, (h - nh) // 2, nw, nh


@per_frame
def fit_into(image: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Letterbox ``image`` into a (width, height) canvas, aspect kept, black bars."""
    w, h = size
    x, y, nw, nh = letterbox((image.shape[1], image.shape[0]), size)
    canvas = np.zeros((h, w, 3), np.uint8) if out is None else out
    if out is not None:
        canvas[:] = 0
    canvas[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if nw < image.shape[1] else cv2.INTER_LINEAR)
    return canvas


class Compositor:
    """Places the generated crop into the target's plate at the output size, with a
    feathered seam; without a plate, fits the crop into the output with bars.
    Geometry, plate and mask are computed once."""

    def __init__(self, model: ModelDir, out_size: tuple[int, int], *, feather: float = 0.08) -> None:
        self.size = out_size
        ow, oh = out_size
        plate = cv2.imread(str(model.path / "plate.png")) if "plate.png" in model.meta["files"] else None
        self.crop_only = plate is None
        self.canvas = np.zeros((oh, ow, 3), np.uint8)
        if not self.crop_only:
            self._place(model.contract.framing, plate, feather)

    def _place(self, fr, plate: np.ndarray, feather: float) -> None:
        """The geometry, once. The source video is letterboxed into the output by
        ``source_to_output`` (the plate is warped by it exactly). The generated crop is
        resized (fast, per frame) to the nearest whole size and placed at the whole pixel
        that best matches the same mapping composed with the framing, so a point of the
        target's video lands within a pixel of where the plate shows it."""
        (ow, oh), (sw, sh) = self.size, fr.source_size
        s = min(ow / sw, oh / sh)
        ox, oy = (ow - sw * s) / 2, (oh - sh * s) / 2
        self.source_to_output = np.array([[s, 0.0, ox], [0.0, s, oy]])
        self.source_region = (int(np.floor(ox)), int(np.floor(oy)), int(np.ceil(sw * s)), int(np.ceil(sh * s)))  # (x, y, w, h)
        self.base = cv2.warpAffine(plate, self.source_to_output, (ow, oh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        (gw, gh), k = fr.out_size, s / fr.scale  # generated pixels, output pixels per generated pixel
        left, top = ox + fr.crop[0] * s, oy + fr.crop[1] * s  # where the crop's corner lands, exactly
        self.w, self.h = max(1, int(round(k * gw))), max(1, int(round(k * gh)))
        self.kx, self.ky = self.w / gw, self.h / gh  # the resize's own scale
        # cv2.resize maps output pixel j to input (j + 0.5) / k - 0.5: place it so the crop's centre lands exactly.
        self.x0 = int(round(left + k * gw / 2 - self.kx * (gw / 2 + 0.5) + 0.5))
        self.y0 = int(round(top + k * gh / 2 - self.ky * (gh / 2 + 0.5) + 0.5))
        self.cx0, self.cy0 = max(self.x0, 0), max(self.y0, 0)
        self.cx1, self.cy1 = min(self.x0 + self.w, ow), min(self.y0 + self.h, oh)
        # Feather: 1 inside, falling to 0 over `feather` of the crop's size at its edges.
        ramp = max(1, int(feather * min(self.w, self.h)))
        yy = np.minimum(np.arange(self.h), np.arange(self.h)[::-1]) / ramp
        xx = np.minimum(np.arange(self.w), np.arange(self.w)[::-1]) / ramp
        m = smoothstep(np.minimum(yy[:, None], xx[None, :])).astype(np.float32)
        self._sub = (slice(self.cy0 - self.y0, self.cy1 - self.y0), slice(self.cx0 - self.x0, self.cx1 - self.x0))
        self.mask = np.ascontiguousarray(m[self._sub])
        base_region = self.base[self.cy0 : self.cy1, self.cx0 : self.cx1]
        # Outside the crop the frame never changes: paint it once, then touch only the crop.
        np.copyto(self.canvas, self.base)
        self._resized = np.empty((self.h, self.w, 3), np.uint8)
        self._inner, self._bands = _feather_parts(self.mask)
        # Per band: (slices, mask, 1 - mask, plate), contiguous, ready for cv2.blendLinear.
        self._band_data = [(b, np.ascontiguousarray(self.mask[b]), np.ascontiguousarray(1.0 - self.mask[b]),
                            np.ascontiguousarray(base_region[b])) for b in self._bands]

    def crop_to_output(self, q: np.ndarray) -> np.ndarray:
        """(N, 2) generated-crop pixels -> where compose puts them in the output frame."""
        return np.array([self.x0, self.y0]) + np.array([self.kx, self.ky]) * (np.asarray(q) + 0.5) - 0.5

    @per_frame
    def compose(self, generated: np.ndarray) -> np.ndarray:
        """generated: (h, w, 3) uint8 crop -> (out_h, out_w, 3) uint8 frame (reused buffer)."""
        if self.crop_only:
            return fit_into(generated, self.size, self.canvas)
        crop = cv2.resize(generated, (self.w, self.h), dst=self._resized, interpolation=cv2.INTER_LINEAR)[self._sub]
        region = self.canvas[self.cy0 : self.cy1, self.cx0 : self.cx1]
        region[self._inner] = crop[self._inner]  # the inside is the generated face itself
        for band, mask, inv, plate in self._band_data:  # only the feathered edge is blended with the plate
            cv2.blendLinear(crop[band], plate, mask, inv, dst=region[band])
        return self.canvas


def _feather_parts(mask: np.ndarray) -> tuple[tuple[slice, slice], list[tuple[slice, slice]]]:
    """Split a feather mask into its inside (all ones: a plain copy) and the four bands
    around it (where it blends): (inside slices, [band slices])."""
    ones = mask >= 1.0
    rows, cols = np.flatnonzero(ones.any(axis=1)), np.flatnonzero(ones.any(axis=0))
    if not len(rows):
        return (slice(0, 0), slice(0, 0)), [(slice(None), slice(None))]
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    bands = [(slice(0, r0), slice(None)), (slice(r1, None), slice(None)), (slice(r0, r1), slice(0, c0)), (slice(r0, r1), slice(c1, None))]
    return (slice(r0, r1), slice(c0, c1)), [b for b in bands if mask[b].size]


@dataclass
class FrameResult:
    image: np.ndarray  # (out_h, out_w, 3) uint8 composed frame (reused buffer)
    face: bool  # a face was found in this driver frame
    generated: bool  # the generator ran (False: the last output was repeated)
    target_px: np.ndarray | None  # the landmarks the sketch was drawn from (target source pixels)
    sketch: np.ndarray | None  # the generator's input this frame, or the last one when repeating
    crop: np.ndarray | None  # the generated face as shown (after SteadyFace; a reused buffer: copy to keep); None when repeating
    driver_px: np.ndarray | None  # the driver's (smoothed) landmarks, driver image pixels
    timings: dict[str, float]  # seconds per stage
    limited: dict[str, float] = field(default_factory=dict)  # head-pose parameters kept within the target's coverage
    rung: str = "main"  # which generator made it: the model ("main") or its lighter rung ("light")
    reused_landmarks: bool = False  # the landmarks were the last frame's (a degradation step)


@dataclass
class Prepared:
    """A driver frame after the CPU half of the pipeline, ready for the generator."""

    frame: Frame
    driver_px: np.ndarray | None  # the driver's (smoothed) landmarks, driver image pixels
    target_px: np.ndarray | None  # the target landmarks (source pixels), None before any face
    sketch: np.ndarray | None  # (h, w, 3) uint8, the generator's input; None: repeat the last output
    timings: dict[str, float]
    limited: dict[str, float] = field(default_factory=dict)  # see FrameResult
    light: bool = False  # generate with the lighter rung
    reused_landmarks: bool = False


class Pipeline:
    """``process(frame)`` runs one driver frame through every stage; ``prepare`` and
    ``finish`` are its two halves (the pipelined loop runs them in two threads).

    Degradation steps: ``light=True`` generates with the lighter rung (``light_engine``,
    a smaller model with the same contract) when there is one; ``reuse_landmarks=True``
    skips detection and reuses the last landmarks; ``generate=False`` skips the
    generator and repeats the last output.
    """

    stages, front_stages = STAGES, FRONT_STAGES  # what the loop times (live/replace.py's pipeline has its own)

    def __init__(self, model: ModelDir, engine: Engine, detector: LandmarkDetector, *, live: LiveConfig,
                 landmarks: LandmarksConfig, out_size: tuple[int, int], clock: Callable[[], float],
                 light_engine: Engine | None = None, light_response: GazeResponse | None = None) -> None:
        spec = model.contract.sketch
        for e in (engine, light_engine):
            if e is not None and tuple(e.shape) != (spec.height, spec.width, 3):
                raise ValueError(f"engine expects {e.shape} sketches but the model's spec is {spec.width}x{spec.height}")
        self.engine, self.light_engine, self.detector, self.clock = engine, light_engine, detector, clock
        self.contract = model.contract
        # How each rung's generator draws gaze (measured at export; checked when the model loaded).
        self.gaze_response = GazeResponse.from_dict(model.meta.get("gaze_response"))
        self.light_response = light_response or GazeResponse()
        self.target_neutral = model.contract.neutral_px.astype(np.float64)
        self.gains = Gains(live.gain_mouth, live.gain_eyes, live.gain_brows, live.gain_rest, live.head_motion)
        self.smoother = OneEuroFilter(min_cutoff=landmarks.min_cutoff, beta=landmarks.beta, d_cutoff=landmarks.d_cutoff) if landmarks.smoothing else None
        self.calibration = Calibration(live.neutral_seconds)
        self.retargeter: Retargeter | None = None
        self._drawn_by: Retargeter | None = None  # the retargeter of the last driven face drawn in this stretch
        self.handover = NeutralHandover()
        self.steady = SteadyFace(live.steady, live.steady_motion)
        self.face = FaceState()
        self.compositor = Compositor(model, out_size)
        self._last_px: np.ndarray | None = None  # last driver landmarks (for reuse)
        self._last_target: np.ndarray | None = None
        self._last_output: np.ndarray | None = None
        self._last_sketch: np.ndarray | None = None

    # -- parameters (the controls change these)
    def recalibrate(self) -> None:
        """Measure the driver's neutral face again from the next frames."""
        self.calibration.restart()

    def calibrate(self, neutral_px: np.ndarray) -> None:
        """Take ``neutral_px`` (478, 3 driver pixels) as the driver's neutral face, now."""
        self.calibration.neutral, self.calibration.ready = np.asarray(neutral_px, np.float64), True
        self.retargeter = None

    def reset(self) -> None:
        """Forget the stream so far (smoothing, last output, the no-face state): the next
        frame starts a new, unrelated stretch of video. The calibration is kept."""
        self.detector.reset()
        if self.smoother is not None:
            self.smoother.reset()
        self.face = FaceState(self.face.hold_s, self.face.ease_s)
        self.handover = NeutralHandover(self.handover.ease_s)
        self.steady = SteadyFace(self.steady.keep, self.steady.motion)
        self._last_px = self._last_target = self._last_output = self._last_sketch = None
        self._drawn_by = None

    def set_gains(self, gains: Gains) -> None:
        self.gains = gains
        self.retargeter = None  # rebuilt with the new gains on the next frame

    def _retargeter(self) -> Retargeter:
        if self.retargeter is None:
            self.retargeter = Retargeter(self.target_neutral, self.calibration.neutral, self.gains, self.contract.coverage)
        return self.retargeter

    @property
    def has_light(self) -> bool:
        return self.light_engine is not None

    def neutral_frame(self) -> np.ndarray:
        """The target's neutral face as a composed frame (camera lost, start-up); a copy."""
        sketch = render_sketch(self.contract.framing.apply(self.target_neutral), self.contract.sketch)
        return self.compositor.compose(self.engine.infer(sketch)).copy()

    # -- the frame
    @per_frame
    def process(self, frame: Frame, *, reuse_landmarks: bool = False, generate: bool = True, light: bool = False) -> FrameResult:
        return self.finish(self.prepare(frame, reuse_landmarks=reuse_landmarks, generate=generate, light=light))

    @per_frame
    def prepare(self, frame: Frame, *, reuse_landmarks: bool = False, generate: bool = True, light: bool = False) -> Prepared:
        """Landmarks, smoothing, retargeting and the sketch of one driver frame."""
        clock, t = self.clock, {}
        t0 = clock()
        reused = reuse_landmarks and self._last_px is not None
        px = self._landmarks(frame, reused)
        t1 = clock()
        t["landmarks"] = t1 - t0
        if px is not None and self.smoother is not None and not reused:
            px = self.smoother(px, frame.time)
        elif px is None and self.smoother is not None:
            self.smoother.reset()
        self._last_px = px
        t2 = clock()
        t["smoothing"] = t2 - t1
        target = self._target(frame.time, px, self.light_response if light and self.light_engine is not None else self.gaze_response)
        t3 = clock()
        t["retarget"] = t3 - t2
        sketch = None
        if target is not None:
            self._last_target = target
            if generate or self._last_output is None:  # a frame the generator skips (degraded) needs no sketch
                sketch = render_sketch(self.contract.framing.apply(target), self.contract.sketch)
        t["sketch"] = clock() - t3
        # A held or skipped frame (no sketch) reports the target it holds.
        limited = self.retargeter.limited if px is not None and self.retargeter is not None else {}
        return Prepared(frame, px, target if target is not None else self._last_target, sketch, t, limited, light, reused)

    @per_frame
    def _landmarks(self, frame: Frame, reuse: bool) -> np.ndarray | None:
        if reuse:
            return self._last_px
        lm = self.detector.detect(frame.image)
        return None if lm is None else lm.pixels().astype(np.float64)

    @per_frame
    def _target(self, t: float, px: np.ndarray | None, response: GazeResponse) -> np.ndarray | None:
        """The target landmarks to draw: driven by ``px`` (for a generator with this gaze
        ``response``), or held/eased by the no-face policy."""
        driven = None
        if px is not None:
            if self.calibration.add(t, px):  # ease from the driven face this stretch drew, if any
                self.handover.start(self._drawn_by, t)
                self.retargeter = None
            self._drawn_by = self._retargeter()
            driven = self._drawn_by.retarget(px, response=response).astype(np.float64)
            driven = self.handover.blend(t, px, driven, response)
        return self.face.blend(t, driven, self._last_target, self.target_neutral)

    @per_frame
    def finish(self, p: Prepared) -> FrameResult:
        """The generator and composition for a prepared frame."""
        clock, t = self.clock, dict(p.timings)
        if p.sketch is None:  # held (no face yet back) or skipped by the degrader: repeat the last output
            t.update(inference=0.0, compose=0.0)
            image = self._last_output if self._last_output is not None else self.compositor.canvas
            return FrameResult(image, p.driver_px is not None, False, p.target_px, self._last_sketch, None, p.driver_px, t, p.limited,
                               reused_landmarks=p.reused_landmarks)
        light = p.light and self.light_engine is not None
        t4 = clock()
        generated = (self.light_engine if light else self.engine).infer(p.sketch)
        t5 = clock()
        t["inference"] = t5 - t4
        generated = self.steady(generated, self.contract.framing.apply(p.target_px))
        self._last_output, self._last_sketch = self.compositor.compose(generated), p.sketch
        t["compose"] = clock() - t5
        return FrameResult(self._last_output, p.driver_px is not None, True, p.target_px, p.sketch, generated, p.driver_px, t,
                           p.limited, "light" if light else "main", p.reused_landmarks)
