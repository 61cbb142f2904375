"""Frame sinks: where the live output goes. Several run at once.

Contract (``FrameSink``): ``send(image, t_frame)`` hands over one BGR uint8
(H, W, 3) frame of the size the sink was opened with; ``t_frame`` is the time, in
seconds on the stream's own timeline, of the driver frame it was made from (``Frame.time``:
its media time for a video file, its capture time for a camera). ``send`` must not keep a reference
to ``image`` after it returns (the caller reuses the buffer). ``close()`` releases the
device; sinks are context managers. A sink raises ``SinkError`` when it fails.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np
from models.errors import SinkError
from models.hotpath import per_frame


@runtime_checkable
class FrameSink(Protocol):
    name: str

    @per_frame
    def send(self, image: np.ndarray, t_frame: float) -> None: ...

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


VIRTUAL_CAMERA_FIX = {  # the same fixes `reenact doctor` prints
    "Linux": "sudo apt-get install v4l2loopback-dkms && sudo modprobe v4l2loopback devices=1 video_nr=10 card_label=reenact "
             "exclusive_caps=1 (exclusive_caps=1 makes Chrome, Zoom and Teams list it; with Secure Boot on, enrol a MOK key "
             "for DKMS first), then output.device = \"/dev/video10\"",
    "Windows": "install OBS Studio 28+ and start its Virtual Camera once (Controls -> Start Virtual Camera)",
    "Darwin": "install OBS Studio 28+ and start its Virtual Camera once (Controls -> Start Virtual Camera)",
}


def virtual_camera_fix(system: str | None = None) -> str:
    """What to do when no virtual-camera driver is present, for this OS (one line)."""
    return VIRTUAL_CAMERA_FIX.get(system or platform.system(), "no virtual camera backend for this platform; use --record or --window")


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
                raise SinkError(f"virtual camera: no virtual-camera driver found (pyvirtualcam said: {msg})",
                                fix=virtual_camera_fix()) from None
            raise SinkError(f"virtual camera: {msg}", fix="`reenact doctor` checks the virtual camera") from None
        self.device = self._cam.device

    @per_frame
    def send(self, image: np.ndarray, t_frame: float) -> None:
        _check(image, self.size, self.name)
        self._cam.send(image)

    def close(self) -> None:
        self._cam.close()


class RecorderSink(_Base):
    """Writes an mp4 (OpenCV, mp4v) at ``fps``, timed by the frames' capture timestamps:
    when the loop had no time for some camera frames, the last output is repeated in
    their place, so the recording lasts as long as what was captured (at most one frame
    interval off) instead of playing fast. Written to a hidden temp file and renamed on
    close, so a crash never leaves a truncated file under the real name."""

    name = "recorder"

    def __init__(self, path: str | Path, *, size: tuple[int, int], fps: float) -> None:
        import cv2

        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.size, self.fps = size, float(fps)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SinkError(f"recorder: cannot write {str(self.path)!r}: {e.strerror} ({e.filename})") from None
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
        if not self._writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise SinkError(f"recorder: cannot write {str(self.path)!r} (is the folder writable?)")
        self.frames = 0  # frames written, repeats included
        self._t0: float | None = None
        self._last: np.ndarray | None = None

    @per_frame
    def send(self, image: np.ndarray, t_frame: float) -> None:
        _check(image, self.size, self.name)
        if self._t0 is None:
            self._t0 = t_frame
        slot = int(round((t_frame - self._t0) * self.fps))  # where this frame belongs in the file's timeline
        while self._last is not None and self.frames < slot:  # the loop skipped frames: hold the last picture
            self._writer.write(self._last)
            self.frames += 1
        self._writer.write(image)
        self.frames += 1
        self._last = image.copy()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            self._tmp.replace(self.path)


class EncodedVideoSink(_Base):
    """An H.264 mp4 through ffmpeg (the binary inside imageio-ffmpeg), one frame per
    ``send`` in order, with the audio of ``audio_from`` muxed in when it has any: frame
    ``i`` plays at ``i / fps``, as does the audio under it, so they stay in sync.

    For renders that must not look finished before they are: the video is encoded under
    a hidden ``.partial`` name. ``close()`` ends the encoding; only ``commit()`` gives
    the file its real name, muxing the audio in (cut or padded with silence to exactly
    the video's length), and ``discard()`` (an interrupted or failed render) deletes
    it. The caller does one of the two."""

    name = "encoder"

    def __init__(self, path: str | Path, *, size: tuple[int, int], fps: float, audio_from: str | Path | None = None,
                 crf: int = 18) -> None:
        import imageio_ffmpeg

        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial.mp4")
        self._muxed = self.path.with_name(f".{self.path.stem}.muxing.mp4")
        self.size, self.fps, self.frames, self._committed = size, float(fps), 0, False
        self.audio_from = audio_from
        self.has_audio = audio_from is not None and has_audio_stream(audio_from)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SinkError(f"encoder: cannot write {str(self.path)!r}: {e.strerror} ({e.filename})") from None
        # Even sizes for yuv420p; macro_block_size 1 keeps ffmpeg from rescaling what was drawn.
        self._writer = imageio_ffmpeg.write_frames(
            str(self._tmp), size, pix_fmt_in="bgr24", fps=self.fps, quality=None, codec="libx264", macro_block_size=1,
            output_params=["-crf", str(crf), "-preset", "veryfast"], ffmpeg_log_level="error")
        try:
            self._writer.send(None)  # starts ffmpeg
        except (OSError, RuntimeError) as e:
            self._tmp.unlink(missing_ok=True)
            raise SinkError(f"encoder: ffmpeg cannot write {str(self.path)!r}: {e}") from None

    @per_frame
    def send(self, image: np.ndarray, t_frame: float) -> None:
        _check(image, self.size, self.name)
        try:
            self._writer.send(np.ascontiguousarray(image))
        except (OSError, RuntimeError) as e:
            raise SinkError(f"encoder: ffmpeg stopped writing {str(self.path)!r}: {e}") from None
        self.frames += 1

    def commit(self) -> Path:
        """Finish the file, mux the audio in, and give it its real name (the render is complete)."""
        import subprocess

        import imageio_ffmpeg

        self.close()
        if self.has_audio:
            # The video's exact length (-t): apad fills a short sound track with silence, -t cuts a long one.
            cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(self._tmp), "-i", str(self.audio_from),
                   "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-af", "apad",
                   "-t", f"{self.frames / self.fps:.6f}", "-movflags", "+faststart", str(self._muxed)]
            res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if res.returncode != 0:
                self._muxed.unlink(missing_ok=True)
                raise SinkError(f"encoder: ffmpeg could not add the sound to {str(self.path)!r}: {res.stderr.strip()[-300:]}")
            self._muxed.replace(self.path)
            self._tmp.unlink(missing_ok=True)
        else:
            self._tmp.replace(self.path)
        self._committed = True
        return self.path

    def discard(self) -> None:
        """Delete the unfinished file (nothing happens after ``commit``)."""
        if self._committed:
            return
        try:
            self.close()
        except SinkError:
            pass
        self._tmp.unlink(missing_ok=True)
        self._muxed.unlink(missing_ok=True)

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            except (OSError, RuntimeError) as e:
                raise SinkError(f"encoder: ffmpeg could not finish {str(self.path)!r}: {e}") from None


def has_audio_stream(path: str | Path) -> bool:
    """Does the media file at ``path`` carry an audio stream? (ffmpeg's own probe.)"""
    import re
    import subprocess

    import imageio_ffmpeg

    res = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    return re.search(r"Stream #\d+:\d+.*: Audio:", res.stderr) is not None


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

    @per_frame
    def send(self, image: np.ndarray, t_frame: float) -> None:
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

    @per_frame
    def send(self, image: np.ndarray, t_frame: float) -> None:
        self.frames += 1

    def close(self) -> None:
        pass


class MemorySink(_Base):
    """Keeps a copy of every frame with its frame time and hand-off time (tests)."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, keep_images: bool = True) -> None:
        self.clock, self.keep_images = clock, keep_images
        self.frames: list[np.ndarray] = []
        self.t_frame: list[float] = []
        self.t_sent: list[float] = []
        self.closed = False

    @per_frame
    def send(self, image: np.ndarray, t_frame: float) -> None:
        if self.keep_images:
            self.frames.append(image.copy())
        self.t_frame.append(t_frame)
        self.t_sent.append(self.clock())

    def close(self) -> None:
        self.closed = True


class FanOut:
    """Sends each frame to every sink. A sink that raises is reported once, closed and
    dropped; the others carry on. Sinks may join (``add``) and leave (``remove``, which
    closes them) while frames flow: the controls start and stop the recording and the
    virtual camera from other threads."""

    def __init__(self, sinks: list[FrameSink], log: Callable[[str], None] = print) -> None:
        import threading

        self.sinks = list(sinks)
        self.log = log
        self.failed: list[str] = []
        self._lock = threading.Lock()  # uncontended except when a sink joins or leaves

    @per_frame
    def send(self, image: np.ndarray, t_frame: float) -> None:
        with self._lock:
            for sink in list(self.sinks):
                try:
                    sink.send(image, t_frame)
                except Exception as e:  # noqa: BLE001 - one bad sink must not stop the others
                    self.log(f"sink {sink.name} failed and was dropped: {type(e).__name__}: {e}")
                    self.failed.append(sink.name)
                    self.sinks.remove(sink)
                    try:
                        sink.close()
                    except Exception:  # noqa: BLE001
                        pass

    def add(self, sink: FrameSink) -> None:
        with self._lock:
            self.sinks.append(sink)

    def remove(self, sink: FrameSink) -> None:
        """Take ``sink`` out and close it (after the frame being sent, if any)."""
        with self._lock:
            if sink in self.sinks:
                self.sinks.remove(sink)
        try:
            sink.close()
        except Exception as e:  # noqa: BLE001
            self.log(f"sink {sink.name} failed to close: {e}")

    def close(self) -> None:
        with self._lock:
            sinks, self.sinks = self.sinks, []
        for sink in sinks:
            try:
                sink.close()
            except Exception as e:  # noqa: BLE001
                self.log(f"sink {sink.name} failed to close: {e}")
