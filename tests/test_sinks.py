"""The ``FrameSink`` contract, for every sink: it takes frames of its size, keeps no
reference to the caller's buffer, refuses a wrong frame with SinkError, and closes as
a context manager. The virtual camera runs through the real pyvirtualcam ``Camera``
with a test backend (pyvirtualcam's official hook); the window needs a display and is
skipped without one."""
from __future__ import annotations

import os

import numpy as np
import pytest

from live.sinks import FrameSink, MemorySink, NullSink, RecorderSink, SinkError, VirtualCameraSink, WindowSink

SIZE = (64, 48)
received: list = []


class RecordingBackend:
    """A pyvirtualcam backend that keeps what it is sent."""

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.size = (width, height)

    def close(self):
        received.append("closed")

    def send(self, frame):
        received.append(frame.copy())

    def device(self):
        return "test-cam"

    def native_fourcc(self):
        return None


def open_sink(kind, tmp_path):
    if kind == "null":
        return NullSink()
    if kind == "memory":
        return MemorySink()
    if kind == "recorder":
        return RecorderSink(tmp_path / "r.mp4", size=SIZE, fps=30)
    if kind == "virtual-camera":
        import pyvirtualcam

        pyvirtualcam.register_backend("reenact-test", RecordingBackend)
        return VirtualCameraSink(size=SIZE, fps=30, backend="reenact-test")
    if not os.environ.get("DISPLAY"):
        pytest.skip("the window sink needs a display (DISPLAY is not set)")
    return WindowSink(size=SIZE)


def written(kind, sink, tmp_path) -> list[np.ndarray]:
    """What the sink delivered, read back where the sink keeps it."""
    if kind == "memory":
        return sink.frames
    if kind == "virtual-camera":
        return [f.reshape(SIZE[1], SIZE[0], 3) for f in received if not isinstance(f, str)]
    if kind == "recorder":
        import cv2

        cap = cv2.VideoCapture(str(tmp_path / "r.mp4"))
        frames = []
        while (r := cap.read())[0]:
            frames.append(r[1])
        return frames
    return []


@pytest.mark.parametrize("kind", ["null", "memory", "recorder", "virtual-camera", "window"])
def test_sink_keeps_the_contract(kind, tmp_path):
    received.clear()
    buf = np.full((SIZE[1], SIZE[0], 3), 200, np.uint8)
    with open_sink(kind, tmp_path) as sink:
        assert isinstance(sink, FrameSink) and sink.name
        sink.send(buf, 0.0)
        buf[:] = 0  # the caller reuses its buffer at once
        sink.send(buf, 1 / 30)
        if kind in ("recorder", "virtual-camera"):  # sinks opened for a size refuse any other
            with pytest.raises(SinkError, match="expected a uint8"):
                sink.send(np.zeros((10, 10, 3), np.uint8), 2 / 30)
    got = written(kind, sink, tmp_path)
    if kind in ("memory", "recorder", "virtual-camera"):
        assert len(got) == 2
        assert abs(int(got[0].mean()) - 200) <= 3 and int(got[1].mean()) <= 3  # the first frame was not changed afterwards
    if kind == "virtual-camera":
        import pyvirtualcam

        pyvirtualcam.camera.BACKENDS.pop("reenact-test", None)
        assert received[-1] == "closed"
