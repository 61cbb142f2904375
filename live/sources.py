"""Frame sources: where driving (or target) frames come from.

Contract (``FrameSource``): ``read()`` returns the next ``Frame`` or ``None`` when
the source has ended. A frame's image is BGR uint8 (H, W, 3); ``t_capture`` is
``time.monotonic()`` seconds when the frame was captured (for files and the puppet:
when it was produced), which latency is measured from; ``t_media`` is the frame's time
in its video (index / fps) for files and the puppet, None for a camera; ``index``
counts from 0. ``Frame.time`` is the clock the face is animated on: media time when
there is one, so an offline run behaves the same however fast the machine is. Sources are context managers and
``close()`` releases the device. ``fps`` is the nominal rate.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import numpy as np

from live.puppet import FaceShape, PuppetPose, place, puppet_points, render_puppet
from models.errors import SourceError


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    t_capture: float  # time.monotonic() seconds: where end-to-end latency starts
    index: int
    t_media: float | None = None  # seconds into the video (files, puppet); None for a camera

    @property
    def time(self) -> float:
        """The frame's time on the stream's own timeline: media time, else capture time."""
        return self.t_capture if self.t_media is None else self.t_media


@runtime_checkable
class FrameSource(Protocol):
    fps: float
    size: tuple[int, int]  # (width, height)

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class _Base:
    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (f := self.read()) is not None:
            yield f

    def close(self) -> None:
        pass


class VideoFileSource(_Base):
    """A video file decoded with OpenCV. ``realtime=True`` paces reads at the file's
    frame rate (as a camera would deliver them); otherwise frames come flat out."""

    def __init__(self, path: str | Path, *, realtime: bool = False, loop: bool = False) -> None:
        from models.video import open_video

        self._cap, info = open_video(path)  # SourceError naming the file when it is not a readable video
        self.path, self.fps, self.size, self.frame_count = info.path, info.fps, info.size, info.frames_reported
        self.realtime, self.loop = realtime, loop
        self._index = 0
        self._t0: float | None = None

    def read(self) -> Frame | None:
        ok, img = self._cap.read()
        if not ok and self.loop and self._index > 0:  # soak tests: the clip again, timestamps running on
            from models.video import open_video

            self._cap.release()
            self._cap, _ = open_video(self.path)  # reopened: seeking back is unreliable for very short files
            ok, img = self._cap.read()
        if not ok:
            return None
        now = time.monotonic()
        if self.realtime:
            if self._t0 is None:
                self._t0 = now
            due = self._t0 + self._index / self.fps
            if due > now:
                time.sleep(due - now)
            now = time.monotonic()
        frame = Frame(img, now, self._index, self._index / self.fps)  # media time runs on across loops
        self._index += 1
        return frame

    def close(self) -> None:
        self._cap.release()


def find_camera(name: str) -> int:
    """A camera index from an index string ("0") or part of a device name ("C920")."""
    if name.strip().isdigit():
        return int(name)
    sysfs = Path("/sys/class/video4linux")
    names = {}
    if sysfs.is_dir():
        for dev in sorted(sysfs.iterdir()):
            try:
                names[int(dev.name.replace("video", ""))] = (dev / "name").read_text().strip()
            except (OSError, ValueError):
                continue
    for index, label in sorted(names.items()):
        if name.lower() in label.lower():
            return index
    known = ", ".join(f"{i}: {n}" for i, n in sorted(names.items())) or "none found"
    raise SourceError(f"no camera named {name!r} (cameras: {known})",
                      fix="`reenact devices` lists the cameras; give one as --camera INDEX or part of its name")


class WebcamSource(_Base):
    """A camera through OpenCV: V4L2 on Linux, DirectShow on Windows, AVFoundation on
    macOS. Asks for ``width``x``height`` at ``fps`` and MJPG (which USB cameras need
    for 720p30 and up); the driver may give something else, see ``size`` and ``fps``."""

    def __init__(self, camera: str = "0", *, width: int = 1280, height: int = 720, fps: float = 30.0, mjpg: bool = True) -> None:
        import platform

        import cv2

        index = find_camera(camera)
        api = {"Linux": cv2.CAP_V4L2, "Windows": cv2.CAP_DSHOW, "Darwin": cv2.CAP_AVFOUNDATION}.get(platform.system(), cv2.CAP_ANY)
        self._cap = cv2.VideoCapture(index, api)
        if not self._cap.isOpened():
            raise SourceError(f"camera {camera!r} (index {index}) cannot be opened: it is missing, or in use by another app",
                              fix="close the other app using the camera (a call app, OBS), check the cable; "
                                  "`reenact devices` lists the cameras")
        if mjpg:
            self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._cap.set(cv2.CAP_PROP_FPS, fps)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue is latency too
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or fps
        self._index = 0

    def read(self) -> Frame | None:
        ok, img = self._cap.read()
        t = time.monotonic()  # as close to capture as OpenCV lets us get
        if not ok or img is None:
            raise SourceError("the camera stopped delivering frames (unplugged, or taken by another app)")
        frame = Frame(img, t, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        self._cap.release()


# Two stock puppets: a target and a driver with another face shape and colouring.
TARGET_SHAPE = FaceShape(width=1.0, height=1.0, skin=(150, 180, 225), background=(70, 60, 50))
DRIVER_SHAPE = FaceShape(width=1.18, height=0.9, skin=(120, 150, 190), background=(40, 70, 40))


def puppet_pose_at(t: float, seed: int, *, rest_seconds: float = 1.0) -> PuppetPose:
    """The puppet's scripted expression at time ``t`` (seconds): the first
    ``rest_seconds`` at rest (a neutral to calibrate on), then smooth, seeded motion
    with blinks every few seconds."""
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
        yaw=ramp * 18 * wave(3),
        pitch=ramp * 8 * wave(4),
        roll=ramp * 6 * wave(5),
    )


class PuppetSource(_Base):
    """The synthetic puppet as a video source. Deterministic for a given seed: frame
    ``i`` shows ``puppet_pose_at(i / fps, seed)``, so tests can know the truth."""

    def __init__(self, *, seed: int = 1, shape: FaceShape = TARGET_SHAPE, size: tuple[int, int] = (512, 512),
                 fps: float = 30.0, frames: int | None = None, realtime: bool = False, drift: float = 0.06) -> None:
        self.seed, self.shape, self.size, self.fps = seed, shape, size, fps
        self.frames, self.realtime, self.drift = frames, realtime, drift
        self._index = 0
        self._t0: float | None = None

    def pose(self, index: int) -> PuppetPose:
        return puppet_pose_at(index / self.fps, self.seed)

    def points(self, index: int) -> np.ndarray:
        """(478, 3) pixel landmarks of frame ``index``: the ground truth it renders."""
        w, h = self.size
        t = index / self.fps
        iod = 0.27 * min(w, h)
        cx = w / 2 + self.drift * w * math.sin(2 * math.pi * 0.11 * t) * (t > 1)
        cy = h / 2 - 0.5 * iod + self.drift * h * 0.5 * math.sin(2 * math.pi * 0.07 * t + 1) * (t > 1)
        return place(puppet_points(self.pose(index), self.shape), self.size, iod_px=iod, center=(cx, cy))

    def read(self) -> Frame | None:
        if self.frames is not None and self._index >= self.frames:
            return None
        img = render_puppet(self.points(self._index), self.size, self.shape)
        now = time.monotonic()
        if self.realtime:
            self._t0 = now if self._t0 is None else self._t0
            due = self._t0 + self._index / self.fps
            if due > now:
                time.sleep(due - now)
            now = time.monotonic()
        frame = Frame(img, now, self._index, self._index / self.fps)
        self._index += 1
        return frame


def write_video(path: str | Path, frames: Iterator[np.ndarray], fps: float) -> int:
    """Write BGR frames to an mp4 (mp4v). Returns the number written."""
    import cv2

    writer = None
    n = 0
    try:
        for img in frames:
            if writer is None:
                h, w = img.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise SourceError(f"cannot write video {str(path)!r}")
            writer.write(img)
            n += 1
    finally:
        if writer is not None:
            writer.release()
    return n
