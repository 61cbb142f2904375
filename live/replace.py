"""The per-frame work of replacement (face swap): the user's frame in, the same frame
with the target's face out, each stage timed.

    landmarks -> smoothing -> aligned crop (the model's template) [and, for a guided
    model, the sketch of the user's landmarks on the target's face shape] -> encoder
    and the target's decoder -> colour matched to the user's face -> warped back -> blended
    into the user's own frame through a feathered mask of the user's face oval

``SwapPipeline`` has ``Pipeline``'s interface (live/pipeline.py), so the loop, the
degrader, the output stage (badge, watermark), the sinks, the audio and the panel run
it unchanged. Outside the blend mask, the output is the user's frame as it came (fitted
to the output size). Set up once in ``__init__``; the per-frame methods only run stages.

The user's real face is never shown: when the face is lost, the last swapped frame is
held for ``hold_s``, then the face's last region is pixelated until the face returns;
before the first face is found, the whole frame is.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from live.engines import Engine
from live.pipeline import Calibration, FrameResult, Prepared, fit_into, letterbox
from live.sources import Frame
from models.artifact import SwapModelDir
from models.config import LandmarksConfig
from models.hotpath import per_frame
from models.landmarks import LandmarkDetector
from models.retarget import Gains
from models.smoothing import OneEuroFilter
from models import topology as T
from models.swap import align, alignment, face_mask, invert_alignment, transform_points

SWAP_STAGES = ("landmarks", "smoothing", "align", "inference", "compose")
SWAP_FRONT_STAGES = SWAP_STAGES[:3]
COVER_BLOCKS = 24  # a covered region is pixelated to about this many blocks across the frame


class SwapPipeline:
    """``process(frame)`` runs one of the user's frames through every stage;
    ``prepare`` and ``finish`` are its two halves. Re-enactment's controls that mean
    nothing here (gains, the driver's neutral) are accepted and kept, not applied."""

    stages, front_stages = SWAP_STAGES, SWAP_FRONT_STAGES
    has_light = False

    def __init__(self, model: SwapModelDir, engine: Engine, detector: LandmarkDetector, *, landmarks: LandmarksConfig,
                 out_size: tuple[int, int], clock: Callable[[], float], hold_s: float = 0.5) -> None:
        if tuple(engine.shape) != model.input_shape:
            raise ValueError(f"engine expects {engine.shape} faces but the model's crop is {model.input_shape}")
        self.engine, self.detector, self.clock, self.hold_s = engine, detector, clock, hold_s
        self.template, self.size, self.guide = model.template, model.template.size, model.guide
        self.out_size = out_size
        self.smoother = OneEuroFilter(min_cutoff=landmarks.min_cutoff, beta=landmarks.beta, d_cutoff=landmarks.d_cutoff) if landmarks.smoothing else None
        self.gains = Gains()
        self.calibration = Calibration(0.0)  # nothing to calibrate: kept for the controls' status
        self.calibration.ready = True
        w, h = out_size
        self.canvas = np.zeros((h, w, 3), np.uint8)  # the user's frame at the output size
        self._cover = np.zeros((h, w, 3), np.uint8)
        self._mask8 = np.empty((self.size, self.size), np.uint8)  # the blend mask as levels: warped cheaply
        self._face4 = np.empty((self.size, self.size, 4), np.uint8)  # the face and that mask, warped back together
        self._placed: tuple | None = None  # (input shape, the canvas view the frame is resized into)
        self._last_output: np.ndarray | None = None
        self._last_region: tuple[np.ndarray, tuple[slice, slice]] | None = None  # (mask, where) of the last swapped face
        self._lost_at: float | None = None
        self._fit: tuple[float, float, float] | None = None  # (scale, x, y) of the user's frame in the output

    # -- the controls' interface (re-enactment's parameters: no effect on a swap)
    def recalibrate(self) -> None:
        self.calibration.restarts += 1

    def calibrate(self, neutral_px: np.ndarray) -> None:
        pass

    def set_gains(self, gains: Gains) -> None:
        self.gains = gains

    def reset(self) -> None:
        """Forget the stream so far (smoothing, the last face)."""
        self.detector.reset()
        if self.smoother is not None:
            self.smoother.reset()
        self._last_output = self._last_region = self._lost_at = None

    def neutral_frame(self) -> np.ndarray:
        """What is shown while the camera is lost: a dark frame (there is no target scene)."""
        return np.zeros_like(self.canvas)

    # -- the frame
    @per_frame
    def process(self, frame: Frame, *, reuse_landmarks: bool = False, generate: bool = True, light: bool = False) -> FrameResult:
        return self.finish(self.prepare(frame, reuse_landmarks=reuse_landmarks, generate=generate, light=light))

    @per_frame
    def prepare(self, frame: Frame, *, reuse_landmarks: bool = False, generate: bool = True, light: bool = False) -> Prepared:
        """Landmarks, smoothing and the aligned crop. ``Prepared.sketch`` is the network's
        input: the crop, and for a guided model the guide sketch beside it (the user's
        landmarks moved onto the target's face shape); ``target_px`` the user's landmarks
        in output pixels."""
        clock, t = self.clock, {}
        t0 = clock()
        lm = self.detector.detect(frame.image)
        px = None if lm is None else lm.pixels().astype(np.float64)
        t1 = clock()
        t["landmarks"] = t1 - t0
        if px is not None and self.smoother is not None:
            px = self.smoother(px, frame.time)
        elif px is None and self.smoother is not None:
            self.smoother.reset()
        t2 = clock()
        t["smoothing"] = t2 - t1
        crop, out_px = None, None
        if px is not None:
            out_px = self._to_output(px, frame.image.shape)
            if generate or self._last_output is None:  # from the camera's own pixels, not the resized frame
                crop = self._network_input(frame.image, px)
        t["align"] = clock() - t2
        return Prepared(frame, px, out_px, crop, t)

    @per_frame
    def _network_input(self, image: np.ndarray, px: np.ndarray) -> np.ndarray:
        """(S, S, 3) the aligned crop, or (S, 2S, 3) the crop and its guide sketch. A new
        array per frame: the loop may still hold the previous one."""
        m, s = alignment(px, self.template), self.size
        if self.guide is None:
            return align(image, m, s)
        x = np.empty((s, 2 * s, 3), np.uint8)
        x[:, :s] = align(image, m, s)
        self.guide.draw(transform_points(px, m), out=x[:, s:])
        return x

    @per_frame
    def _place(self, image: np.ndarray) -> None:
        """The user's frame into the canvas, letterboxed as ``fit_into`` does; the bars are
        painted once per frame size, then only the picture is resized in place."""
        if self._placed is None or self._placed[0] != image.shape:
            fit_into(image, self.out_size, self.canvas)
            x, y, nw, nh = letterbox((image.shape[1], image.shape[0]), self.out_size)
            self._placed = (image.shape, self.canvas[y : y + nh, x : x + nw], cv2.INTER_AREA if nw < image.shape[1] else cv2.INTER_LINEAR)
            return
        _, view, how = self._placed
        cv2.resize(image, (view.shape[1], view.shape[0]), dst=view, interpolation=how)

    def _to_output(self, px: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """(478, 2) the user's landmarks in output pixels (where ``fit_into`` puts the frame)."""
        ih, iw = shape[:2]
        x, y, nw, nh = letterbox((iw, ih), self.out_size)
        return px[:, :2] * np.array([nw / iw, nh / ih]) + np.array([x, y])

    @per_frame
    def finish(self, p: Prepared) -> FrameResult:
        """The network and the blend for a prepared frame (or the no-face policy)."""
        clock, t = self.clock, dict(p.timings)
        t.update(inference=0.0, compose=0.0)
        if p.target_px is None:  # no face: never show the user's own
            t0 = clock()
            image = self._no_face(p.frame)
            t["compose"] = clock() - t0
            return FrameResult(image, False, False, None, None, None, None, t)
        self._lost_at = None
        if p.sketch is None:  # the degrader skipped the network: repeat the last output
            return FrameResult(self._last_output, True, False, None, None, None, p.driver_px, t)
        t4 = clock()
        out = self.engine.infer(p.sketch)
        t5 = clock()
        t["inference"] = t5 - t4
        self._place(p.frame.image)  # here, not in prepare: the output may still be reading the canvas there
        self._last_output = self._blend(out, p.sketch[:, : self.size], p.target_px)
        t["compose"] = clock() - t5
        return FrameResult(self._last_output, True, True, None, p.sketch, out[:, :, :3], p.driver_px, t)

    @per_frame
    def _blend(self, out: np.ndarray, crop: np.ndarray, out_px: np.ndarray) -> np.ndarray:
        """The generated face, colour matched to the user's crop, warped back into the
        canvas through the feathered face-oval mask (0 outside the oval: those pixels stay
        the user's). Only the oval's box is touched."""
        m = alignment(out_px, self.template)
        mask = face_mask(transform_points(out_px, m), self.size)
        face = match_colour(out[:, :, :3], crop, mask)
        # The face and its mask (as levels: a mask of 0 stays exactly 0) warped back as one
        # BGRA image: one warp instead of two (they were 1.3 and 0.9 ms on the slow class).
        cv2.cvtColor(face, cv2.COLOR_BGR2BGRA, dst=self._face4)
        cv2.convertScaleAbs(mask, dst=self._mask8, alpha=255.0)
        cv2.insertChannel(self._mask8, self._face4, 3)
        x0, y0, x1, y1 = _oval_box(out_px, self.out_size)
        if x1 <= x0 or y1 <= y0:
            return self.canvas
        back = invert_alignment(m)
        back[:, 2] -= (x0, y0)
        size = (x1 - x0, y1 - y0)
        # Outside the crop the border is 0, alpha included: no face is blended there.
        warped = cv2.warpAffine(self._face4, back, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        face_r = cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR)
        alpha = cv2.extractChannel(warped, 3).astype(np.float32)
        alpha *= 1 / 255
        region = self.canvas[y0:y1, x0:x1]
        cv2.blendLinear(face_r, region.copy(), alpha, 1.0 - alpha, dst=region)
        self._last_region = (alpha, (slice(y0, y1), slice(x0, x1)))
        return self.canvas

    @per_frame
    def _no_face(self, frame: Frame) -> np.ndarray:
        """Hold the last swapped frame for ``hold_s``; then the user's frame with the last
        face region pixelated; the whole frame pixelated before any face was swapped."""
        if self._lost_at is None:
            self._lost_at = frame.time
        if self._last_output is not None and frame.time - self._lost_at < self.hold_s:
            return self._last_output
        self._place(frame.image)
        w, h = self.out_size
        cell = max(1, w // COVER_BLOCKS)
        blocks = cv2.resize(self.canvas, (max(1, w // cell), max(1, h // cell)), interpolation=cv2.INTER_AREA)
        cv2.resize(blocks, (w, h), dst=self._cover, interpolation=cv2.INTER_NEAREST)
        if self._last_region is None:
            return self._cover
        mask, where = self._last_region
        grown = cv2.dilate((mask > 0.01).astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
        region = self.canvas[where]
        region[grown] = self._cover[where][grown]
        return self.canvas


def _oval_box(out_px: np.ndarray, out_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the face oval's box in the output frame, a pixel wider for the
    warp's interpolation, clipped to the frame. The blend mask is 0 outside it."""
    oval = out_px[T.loop("face_oval"), :2]
    w, h = out_size
    x0, y0 = np.floor(oval.min(0)).astype(int) - 1
    x1, y1 = np.ceil(oval.max(0)).astype(int) + 2
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


@per_frame
def match_colour(face: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``face`` (S, S, 3) uint8 BGR with its colour statistics (mean and spread per
    channel of Lab, inside ``mask`` > 0.5) moved to those of ``reference``: Reinhard's
    colour transfer, so the target's face takes the user's lighting and white balance.
    Applied as a per-channel lookup table on uint8 Lab: no float image is made."""
    inside = (mask > 0.5).astype(np.uint8)
    if cv2.countNonZero(inside) < 16:
        return np.ascontiguousarray(face)
    a, b = cv2.cvtColor(face, cv2.COLOR_BGR2LAB), cv2.cvtColor(reference, cv2.COLOR_BGR2LAB)
    ma, sa = cv2.meanStdDev(a, mask=inside)
    mb, sb = cv2.meanStdDev(b, mask=inside)
    gain = np.clip((sb + 1e-3) / (sa + 1e-3), 0.5, 2.0)  # a flat face (or a flat reference) must not blow up
    table = np.clip((np.arange(256, dtype=np.float64)[None] - ma) * gain + mb, 0, 255).round().astype(np.uint8)  # (3, 256)
    return cv2.cvtColor(cv2.LUT(a, np.ascontiguousarray(table.T[None])), cv2.COLOR_LAB2BGR)
