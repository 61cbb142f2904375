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

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import numpy as np

from models.puppet import DRIVER_SHAPE, TARGET_SHAPE, FaceShape, PuppetPose, PuppetScript  # noqa: F401 - shapes re-exported
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


class PuppetSource(_Base):
    """The synthetic puppet as a video source: the frames of a ``PuppetScript``.
    Deterministic for a given seed, so tests can know the truth (``points(i)``)."""

    def __init__(self, *, seed: int = 1, shape: FaceShape = TARGET_SHAPE, size: tuple[int, int] = (512, 512),
                 fps: float = 30.0, frames: int | None = None, realtime: bool = False, drift: float = 0.06,
                 turn: float = 1.0, gaze: float = 0.0) -> None:
        self.script = PuppetScript(seed, shape, size, fps, drift, turn, gaze)
        self.size, self.fps, self.frames, self.realtime = size, fps, frames, realtime
        self._index = 0
        self._t0: float | None = None

    def pose(self, index: int) -> PuppetPose:
        return self.script.pose(index)

    def points(self, index: int) -> np.ndarray:
        """(478, 3) pixel landmarks of frame ``index``: the ground truth it renders."""
        return self.script.points(index)

    def read(self) -> Frame | None:
        if self.frames is not None and self._index >= self.frames:
            return None
        img = self.script.image(self._index)
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
