"""Frame sinks: where the live output goes. Several run at once.

Contract (``FrameSink``): ``send(image, t_capture)`` hands over one BGR uint8
(H, W, 3) frame of the size the sink was opened with; ``t_capture`` is the capture
timestamp of the driver frame it was made from. ``send`` must not keep a reference
to ``image`` after it returns (the caller reuses the buffer). ``close()`` releases the
device; sinks are context managers. A sink raises ``SinkError`` when it fails.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np


class SinkError(RuntimeError):
    """A sink could not open or failed; the message says how to fix it."""


@runtime_checkable
class FrameSink(Protocol):
    name: str

    def send(self, image: np.ndarray, t_capture: float) -> None: ...

    def close(self) -> None: ...


def _check(image: np.ndarray, size: tuple[int, int], name: str) -> None:
    w, h = size
    if image.shape != (h, w, 3) or image.dtype != np.uint8:
        raise SinkError(f"{name}: expected a uint8 ({h}, {w}, 3) frame, got {image.dtype} {image.shape}")


class _Base:
    name = "sink"

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def virtual_camera_help() -> str:
    """What to do when no virtual-camera driver is present, for this OS."""
    system = platform.system()
    if system == "Linux":
        return ("no v4l2loopback device found. Install and load it:\n"
                "    sudo apt-get install v4l2loopback-dkms\n"
                "    sudo modprobe v4l2loopback devices=1 video_nr=10 card_label=reenact exclusive_caps=1\n"
                "exclusive_caps=1 is what makes Chrome, Zoom and Teams list the device. With Secure Boot on, the\n"
                "unsigned module will not load: enrol a MOK key for DKMS (sudo mokutil --import ...) or disable Secure Boot.\n"
                "Then set output.device = \"/dev/video10\" in config.toml (or leave it empty to use the first one).")
    if system in ("Windows", "Darwin"):
        return ("no virtual camera found. Install OBS Studio (28 or newer) and start its Virtual Camera once\n"
                "(Controls -> Start Virtual Camera) so the driver is registered; then run reenact again.")
    return "no virtual camera backend for this platform."


class VirtualCameraSink(_Base):
    """pyvirtualcam: v4l2loopback on Linux, OBS Virtual Camera on Windows/macOS,
    or any backend registered with ``pyvirtualcam.register_backend``."""

    name = "virtual-camera"

    def __init__(self, *, size: tuple[int, int], fps: float, device: str = "", backend: str = "") -> None:
        try:
            import pyvirtualcam
        except ImportError as e:
            raise SinkError(f"virtual camera: pyvirtualcam is not installed ({e})") from None
        self.size = size
        try:
            self._cam = pyvirtualcam.Camera(width=size[0], height=size[1], fps=fps, fmt=pyvirtualcam.PixelFormat.BGR,
                                            device=device or None, backend=backend or None)
        except RuntimeError as e:
            msg = str(e)
            if "No v4l2 loopback device" in msg or "not installed" in msg or "not found" in msg.lower():
                raise SinkError(f"virtual camera: {virtual_camera_help()}\n(pyvirtualcam said: {msg})") from None
            raise SinkError(f"virtual camera: {msg}") from None
        self.device = self._cam.device

    def send(self, image: np.ndarray, t_capture: float) -> None:
        _check(image, self.size, self.name)
        self._cam.send(image)

    def close(self) -> None:
        self._cam.close()


class RecorderSink(_Base):
    """Writes an mp4 (OpenCV, mp4v) at a fixed frame rate. Written to a hidden temp file
    and renamed on close, so a crash never leaves a truncated file under the real name."""

    name = "recorder"

    def __init__(self, path: str | Path, *, size: tuple[int, int], fps: float) -> None:
        import cv2

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.size = size
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            raise SinkError(f"recorder: cannot write {self.path} (is the folder writable?)")
        self.frames = 0

    def send(self, image: np.ndarray, t_capture: float) -> None:
        _check(image, self.size, self.name)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            self._tmp.replace(self.path)


class WindowSink(_Base):
    """An OpenCV preview window. ``on_key`` receives each key pressed (as a str)."""

    name = "window"

    def __init__(self, *, title: str = "reenact", size: tuple[int, int], on_key: Callable[[str], None] | None = None) -> None:
        import cv2

        self._cv2 = cv2
        self.title, self.size, self.on_key = title, size, on_key
        self.overlay: Callable[[], list[str]] | None = None  # stats lines drawn on the preview only
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise SinkError(f"window: cannot open a window here (no display?): {e}") from None

    def send(self, image: np.ndarray, t_capture: float) -> None:
        if self.overlay is not None:
            image = image.copy()
            for i, line in enumerate(self.overlay()):
                org = (12, 28 + 26 * i)
                self._cv2.putText(image, line, org, self._cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 4, self._cv2.LINE_AA)
                self._cv2.putText(image, line, org, self._cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, self._cv2.LINE_AA)
        self._cv2.imshow(self.title, image)
        key = self._cv2.waitKey(1) & 0xFF
        if key != 255 and self.on_key is not None:
            self.on_key(chr(key))

    def close(self) -> None:
        try:
            self._cv2.destroyWindow(self.title)
        except self._cv2.error:
            pass


class NullSink(_Base):
    """Accepts and drops frames (benchmarks)."""

    name = "null"

    def __init__(self) -> None:
        self.frames = 0

    def send(self, image: np.ndarray, t_capture: float) -> None:
        self.frames += 1

    def close(self) -> None:
        pass


class MemorySink(_Base):
    """Keeps a copy of every frame with its capture timestamp and hand-off time (tests)."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, keep_images: bool = True) -> None:
        self.clock, self.keep_images = clock, keep_images
        self.frames: list[np.ndarray] = []
        self.t_capture: list[float] = []
        self.t_sent: list[float] = []
        self.closed = False

    def send(self, image: np.ndarray, t_capture: float) -> None:
        if self.keep_images:
            self.frames.append(image.copy())
        self.t_capture.append(t_capture)
        self.t_sent.append(self.clock())

    def close(self) -> None:
        self.closed = True


class FanOut:
    """Sends each frame to every sink. A sink that raises is reported once, closed and
    dropped; the others carry on."""

    def __init__(self, sinks: list[FrameSink], log: Callable[[str], None] = print) -> None:
        self.sinks = list(sinks)
        self.log = log
        self.failed: list[str] = []

    def send(self, image: np.ndarray, t_capture: float) -> None:
        for sink in list(self.sinks):
            try:
                sink.send(image, t_capture)
            except Exception as e:  # noqa: BLE001 - one bad sink must not stop the others
                self.log(f"sink {sink.name} failed and was dropped: {type(e).__name__}: {e}")
                self.failed.append(sink.name)
                self.sinks.remove(sink)
                try:
                    sink.close()
                except Exception:  # noqa: BLE001
                    pass

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:  # noqa: BLE001
                self.log(f"sink {sink.name} failed to close: {e}")
        self.sinks = []
