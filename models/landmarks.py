"""Face landmarks: the value type, the detector interface and the MediaPipe adapter.

Coordinates: ``Landmarks.points`` is (478, 3) float32 in MediaPipe's normalised form:
x / image width, y / image height, z in the same scale as x (depth, negative towards
the camera). ``Landmarks.pixels()`` gives (478, 3) float32 in pixels, z scaled by the
width, which is the space every geometric step (framing, retargeting, sketch) works in.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from models.topology import NUM_LANDMARKS


@dataclass(frozen=True)
class Landmarks:
    """One face. ``points``: (478, 3) float32, normalised as described in the module
    docstring. ``image_size``: (width, height) of the image they were found in.
    ``confidence``: in [0, 1], see ``FaceMeshDetector``."""

    points: np.ndarray
    image_size: tuple[int, int]
    confidence: float

    def __post_init__(self) -> None:
        if self.points.shape != (NUM_LANDMARKS, 3):
            raise ValueError(f"Landmarks.points must be ({NUM_LANDMARKS}, 3), got {self.points.shape}")

    def pixels(self) -> np.ndarray:
        """(478, 3) float32 pixel coordinates; z is scaled by the image width like x."""
        w, h = self.image_size
        return (self.points * np.array([w, h, w], dtype=np.float32)).astype(np.float32)

    @classmethod
    def from_pixels(cls, pts: np.ndarray, image_size: tuple[int, int], confidence: float = 1.0) -> "Landmarks":
        w, h = image_size
        norm = np.asarray(pts, dtype=np.float32) / np.array([w, h, w], dtype=np.float32)
        return cls(norm.astype(np.float32), (int(w), int(h)), float(confidence))


@runtime_checkable
class LandmarkDetector(Protocol):
    """Finds one face in a BGR uint8 (H, W, 3) image.

    ``detect`` returns ``None`` when there is no face. A detector in tracking mode uses
    the previous call's result, so feed it frames of one video in order; ``reset()``
    forgets that state (call it between unrelated clips). ``close()`` frees native
    resources; detectors are context managers.
    """

    def detect(self, image: np.ndarray) -> Landmarks | None: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


def inside_fraction(points: np.ndarray) -> float:
    """Fraction of normalised (N, 3) points whose x and y lie inside the image."""
    xy = points[:, :2]
    return float(np.mean(np.all((xy >= 0.0) & (xy <= 1.0), axis=1)))


@contextlib.contextmanager
def _native_stderr_silenced():
    """MediaPipe's C++ side prints a screenful of glog/TFLite notices on start-up that
    mean nothing to a user. Send file descriptor 2 to /dev/null while it starts;
    Python exceptions are unaffected."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# One NormalizedLandmark as MediaPipe serialises it when only x, y and z are set (proto2:
# set fields are written even when 0): 0x0a, length 15, then tag 0x0d x, 0x15 y, 0x1d z,
# each a little-endian float32.
_RECORD = np.dtype([("head", "u1", 2), ("tx", "u1"), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"), ("tz", "u1"), ("z", "<f4")])
_RECORD_HEAD = (0x0A, 0x0F)


def landmark_array(landmark_list) -> np.ndarray:
    """(N, 3) float32 x, y, z of a MediaPipe ``NormalizedLandmarkList``.

    Reading 478 points field by field from Python costs ~0.6 ms a frame on a slow-class
    core; the serialised list is read in one go instead (~0.1 ms). Any other layout
    (visibility or presence set, a field missing) takes the field-by-field path."""
    raw = landmark_list.SerializeToString()
    n = len(landmark_list.landmark)
    if len(raw) == n * _RECORD.itemsize:
        rec = np.frombuffer(raw, _RECORD)
        if (np.all(rec["head"] == _RECORD_HEAD) and np.all(rec["tx"] == 0x0D) and np.all(rec["ty"] == 0x15)
                and np.all(rec["tz"] == 0x1D)):
            return np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float32)
    return np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], dtype=np.float32).reshape(-1, 3)


class FaceMeshDetector:
    """MediaPipe Face Mesh (legacy ``mp.solutions.face_mesh``, bundled models), 478
    points with irises.

    ``tracking=True`` is video mode: the face detector runs only when tracking is lost,
    which is both faster and steadier. ``tracking=False`` is still-image mode.

    Confidence: the legacy graph does not expose its face-presence score; it only drops
    faces below ``min_presence``. A returned face has therefore passed that gate, and
    ``confidence`` is the fraction of its landmarks that lie inside the image: a face
    cut by the frame edge has extrapolated, unreliable points and scores below 1.
    """

    def __init__(self, *, tracking: bool = True, min_detection_confidence: float = 0.5,
                 min_presence: float = 0.5) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        with _native_stderr_silenced():
            import mediapipe as mp  # heavy; imported only when a detector is built

        self._args = dict(
            static_image_mode=not tracking,
            max_num_faces=1,
            refine_landmarks=True,  # adds the 10 iris points: 478 in all
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_presence,
        )
        self._mp = mp
        self._mesh = self._new_mesh()

    def _new_mesh(self):
        # The graph logs on construction and on its first frame: warm it up silently.
        with _native_stderr_silenced():
            mesh = self._mp.solutions.face_mesh.FaceMesh(**self._args)
            mesh.process(np.zeros((64, 64, 3), np.uint8))
        return mesh

    def detect(self, image: np.ndarray) -> Landmarks | None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect() needs a BGR uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        # cvtColor, not a reversed-channel copy: 0.01 against 0.67 ms for a 256x256 crop
        result = self._mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        pts = landmark_array(result.multi_face_landmarks[0])
        h, w = image.shape[:2]
        return Landmarks(pts, (w, h), inside_fraction(pts))

    def reset(self) -> None:
        self._mesh.close()
        self._mesh = self._new_mesh()

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceMeshDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_BLANK = np.zeros((64, 64, 3), np.uint8)  # no face: a video-mode graph shown it stops tracking


class FaceCropTracker:
    """Face Mesh on a face-sized crop instead of the whole frame (live's detector).

    Once a face is found (by ``finder``, still-image mode, on the whole frame),
    ``tracker`` (video mode) follows it in a square window ``scale`` times the face's
    size, resampled to ``side`` pixels: on a 1280x720 webcam frame (s18, slow class)
    7.8-8.2 ms a frame at p50 against 7.9-8.1 for the whole frame, and a lower p99, with
    landmarks within 0.003 IOD of the whole frame's; the larger the frame, the more the
    crop saves. The window moves only when the face leaves its middle or changes size by
    20 %, so Face Mesh's own tracking sees a steady picture; a lost face sends the next
    frame back to the finder.

    A window as large as the frame's short side saves nothing (a 512x512 clip: 8.2
    with the crop, 7.7 ms without): then ``whole`` (video mode, its own tracking state)
    follows the face in the whole frame instead. At a switch between the two, the graph
    taken up is shown a blank frame first, so it finds the face afresh instead of
    fitting it where it last saw it.

    ``finder``/``tracker``/``whole`` default to Face Mesh; tests give doubles. Same
    contract as ``LandmarkDetector``: landmarks in the whole frame's normalised
    coordinates.
    """

    def __init__(self, *, side: int = 256, scale: float = 1.8, finder: LandmarkDetector | None = None,
                 tracker: LandmarkDetector | None = None, whole: LandmarkDetector | None = None,
                 min_detection_confidence: float = 0.5, min_presence: float = 0.5) -> None:
        if side < 64 or scale < 1.2:
            raise ValueError(f"FaceCropTracker: need side >= 64 and scale >= 1.2, got {side}, {scale}")
        args = dict(min_detection_confidence=min_detection_confidence, min_presence=min_presence)
        self.finder = finder or FaceMeshDetector(tracking=False, **args)
        self.tracker = tracker or FaceMeshDetector(tracking=True, **args)
        self.whole = whole or FaceMeshDetector(tracking=True, **args)  # built here: not mid-stream
        self._path: str | None = None  # "crop" or "whole": which graph tracked the last frame
        self.side, self.scale = side, scale
        self.window: tuple[int, int, int] | None = None  # (x0, y0, size) in whole frame pixels
        self.moves = 0  # how often the window moved (for tests and benchmarks)

    def detect(self, image: np.ndarray) -> Landmarks | None:
        """Landmarks of the face in ``image`` (BGR uint8 (H, W, 3)), or None."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect() needs a BGR uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        if self.window is None:
            found = self.finder.detect(image)
            if found is not None:
                self._place(found.pixels())
            return found
        x0, y0, size = self.window
        if size >= min(h, w):
            return self._follow_whole(image)
        self._take_up("crop", self.tracker)
        k = self.side / size
        crop = self._crop(image, x0, y0, size)
        found = None if crop is None else self.tracker.detect(crop)
        if found is None:
            self.window = None  # the next frame searches the whole image
            return None
        px = found.pixels().astype(np.float64) / k  # z scales with x
        px[:, 0] += x0
        px[:, 1] += y0
        self._follow(px)
        return Landmarks.from_pixels(px, (w, h), inside_fraction(px[:, :2] / np.array([w, h])))

    def _follow_whole(self, image: np.ndarray) -> Landmarks | None:
        """Track in the whole frame; the window still follows the face, so a face that
        moves back from the camera returns to the crop."""
        self._take_up("whole", self.whole)
        found = self.whole.detect(image)
        if found is None:
            self.window = None
        else:
            self._follow(found.pixels())
        return found

    def _take_up(self, path: str, graph: LandmarkDetector) -> None:
        """Make ``graph`` forget the face it last tracked, many frames ago, when tracking
        moves to it from the other path (~1 ms, at a switch only)."""
        if self._path is not None and self._path != path:
            graph.detect(_BLANK)
        self._path = path

    def _crop(self, image: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray | None:
        """(side, side, 3) the window resampled bilinearly, or None when it misses the
        frame. Crop pixel u covers frame pixels x0 + u / k .. x0 + (u + 1) / k
        (k = side / size), so a point at u in the crop is at x0 + u / k in the frame.
        The part over the frame's edge is the edge replicated; the window is then one
        resize (0.3 ms on the slow class, against 0.9 for the general warp it replaces)."""
        h, w = image.shape[:2]
        top, left, bottom, right = max(0, -y0), max(0, -x0), max(0, y0 + size - h), max(0, x0 + size - w)
        if top + bottom >= size or left + right >= size:
            return None
        window = image[y0 + top : y0 + size - bottom, x0 + left : x0 + size - right]
        if top or left or bottom or right:
            window = cv2.copyMakeBorder(window, top, bottom, left, right, cv2.BORDER_REPLICATE)
        return cv2.resize(window, (self.side, self.side), interpolation=cv2.INTER_LINEAR)

    def _box(self, px: np.ndarray) -> tuple[np.ndarray, float]:
        lo, hi = px[:, :2].min(axis=0), px[:, :2].max(axis=0)
        return (lo + hi) / 2, float((hi - lo).max()) * self.scale

    def _place(self, px: np.ndarray) -> None:
        centre, size = self._box(px)
        size = max(int(round(size)), 16)  # whole pixels: the crop is then a plain resize of a view
        self.window = (int(round(centre[0] - size / 2)), int(round(centre[1] - size / 2)), size)

    def _follow(self, px: np.ndarray) -> None:
        centre, size = self._box(px)
        x0, y0, s = self.window
        off_centre = np.abs(centre - (x0 + s / 2, y0 + s / 2)).max() > 0.125 * s
        if off_centre or abs(np.log(max(size, 1e-6) / s)) > 0.2:
            self._place(px)
            self.moves += 1

    def reset(self) -> None:
        self.window = None
        self._path = None
        for detector in (self.finder, self.tracker, self.whole):
            detector.reset()

    def close(self) -> None:
        for detector in (self.finder, self.tracker, self.whole):
            detector.close()

    def __enter__(self) -> "FaceCropTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
