"""Test doubles for the live loop: a clock that only moves when told, an engine and a
detector that cost a chosen amount of (fake) time, and scripted sources."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from live.sources import Frame, PuppetSource, SourceError
from models.landmarks import Landmarks


@dataclass
class FakeClock:
    t: float = 1000.0

    def now(self) -> float:
        return self.t

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += max(dt, 0.0)


class WallClock:
    """Real time with FakeClock's interface: for tests whose stages run in threads
    (a fake clock shared by two threads would race). ``t`` is ignored."""

    t = 0.0

    def __call__(self) -> float:
        return time.monotonic()

    now = __call__

    def sleep(self, dt: float) -> None:
        time.sleep(max(dt, 0.0))


class FakeEngine:
    """Returns a flat image whose value is the sketch's mean (so outputs differ when
    sketches do), and spends ``cost`` seconds of fake time."""

    name, precision = "fake", "fp32"

    def __init__(self, shape: tuple[int, int, int], clock: FakeClock, cost: float = 0.005) -> None:
        self.shape, self.clock, self.cost = shape, clock, cost
        self.calls = 0
        self.closed = False

    def warmup(self) -> None:
        pass

    def infer(self, sketch: np.ndarray) -> np.ndarray:
        assert sketch.shape == self.shape and sketch.dtype == np.uint8
        self.calls += 1
        self.clock.sleep(self.cost)
        return np.full(self.shape, int(sketch.mean() * 4) % 256, np.uint8)

    def close(self) -> None:
        self.closed = True


class ScriptedDetector:
    """Answers from a script: frame index -> (478, 3) pixel landmarks or None."""

    def __init__(self, script, size: tuple[int, int], clock: FakeClock, cost: float = 0.003) -> None:
        self.script, self.size, self.clock, self.cost = script, size, clock, cost
        self.calls = 0
        self.closed = False

    def detect(self, image: np.ndarray) -> Landmarks | None:
        self.calls += 1
        self.clock.sleep(self.cost)
        idx = int(image[0, 0, 0]) + 256 * int(image[0, 0, 1])  # the source stamps the index in pixel (0, 0)
        px = self.script(idx)
        return None if px is None else Landmarks.from_pixels(px, self.size)

    def reset(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@dataclass
class StampedSource:
    """Blank frames stamped with their index, captured 'now' by the fake clock, at
    ``fps``: each read first advances the clock to the frame's due time. Raises
    SourceError at ``fail_at`` (camera unplugged) if set."""

    clock: FakeClock
    frames: int = 60
    fps: float = 30.0
    size: tuple[int, int] = (160, 120)
    fail_at: int | None = None
    pace: float = 0.0  # real seconds to wait per read (a camera delivering at its own rate)
    start: float | None = None
    index: int = 0
    closed: bool = False
    reads: list = field(default_factory=list)

    def read(self) -> Frame | None:
        if self.pace:
            time.sleep(self.pace)
        if self.fail_at is not None and self.index >= self.fail_at:
            raise SourceError("unplugged")
        if self.index >= self.frames:
            return None
        if self.start is None:
            self.start = self.clock()
        due = self.start + self.index / self.fps
        if due > self.clock():
            self.clock.t = due
        img = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        img[0, 0, 0], img[0, 0, 1] = self.index % 256, self.index // 256
        f = Frame(img, self.clock(), self.index)
        self.reads.append(self.index)
        self.index += 1
        return f

    def close(self) -> None:
        self.closed = True


def puppet_script(size=(160, 120), seed=3):
    """Landmarks of a driver puppet, per frame index (the truth PuppetSource renders)."""
    from live.sources import DRIVER_SHAPE

    src = PuppetSource(seed=seed, shape=DRIVER_SHAPE, size=size)
    return lambda i: src.points(i)
