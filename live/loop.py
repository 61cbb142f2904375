"""The live loop: pacing, the latency budget, degradation and the fault policy.

Per iteration: take the newest driver frame, run the pipeline, hand the result to
every sink, record the timings. End-to-end latency runs from the frame's capture
timestamp to the moment the last sink accepted it.

Over budget, the loop degrades in defined, logged steps and recovers the same way:

  0 normal           every frame: landmarks + generator
  1 reuse-landmarks  landmarks on every other frame, the generator on every frame
  2 skip-generation  as 1, and the generator on every other frame (the last output
                     is repeated in between)

Latency cannot grow without bound whatever the level: the capture slot holds one
frame, so a slow frame makes the loop skip frames, never queue them.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from live.capture import CameraLost
from live.pipeline import STAGES, Mode, Pipeline, Prepared
from live.sinks import FanOut
from live.stats import StageStats

LEVELS = ("normal", "reuse-landmarks", "skip-generation")


@dataclass
class Degrader:
    """Moves between LEVELS on an exponential moving average of end-to-end latency:
    up after ``patience`` frames over budget, down after ``calm`` frames under
    ``recover`` x budget."""

    budget_s: float
    log: Callable[[str], None] = print
    patience: int = 10
    calm: int = 60
    recover: float = 0.7
    alpha: float = 0.2
    level: int = 0
    enabled: bool = True  # off: measure capacity flat out, never trade frames for latency
    ema: float | None = None
    _over: int = 0
    _under: int = 0
    changes: list = field(default_factory=list)

    def decide(self, index: int) -> tuple[bool, bool]:
        """(reuse_landmarks, generate) for frame number ``index``."""
        odd = index % 2 == 1
        return (self.level >= 1 and odd, not (self.level >= 2 and odd))

    def update(self, index: int, e2e_s: float) -> None:
        if not self.enabled:
            return
        self.ema = e2e_s if self.ema is None else self.ema + self.alpha * (e2e_s - self.ema)
        self._over = self._over + 1 if self.ema > self.budget_s else 0
        self._under = self._under + 1 if self.ema < self.recover * self.budget_s else 0
        if self._over >= self.patience and self.level < len(LEVELS) - 1:
            self._set(index, self.level + 1)
        elif self._under >= self.calm and self.level > 0:
            self._set(index, self.level - 1)

    def _set(self, index: int, level: int) -> None:
        self.log(f"latency {self.ema * 1000:.1f} ms vs budget {self.budget_s * 1000:.0f} ms: {LEVELS[self.level]} -> {LEVELS[level]}")
        self.level, self._over, self._under = level, 0, 0
        self.changes.append({"frame": index, "level": LEVELS[level], "ema_ms": round(self.ema * 1000, 2)})


class InlineFront:
    """The CPU half of the pipeline in the loop's own thread: the sequential loop."""

    def __init__(self, capture, pipeline: Pipeline, degrader: Degrader) -> None:
        self.capture, self.pipeline, self.degrader = capture, pipeline, degrader
        self.index = 0
        self.dropped = 0

    def get(self, timeout: float = 1.0) -> Prepared | None:
        frame = self.capture.get(timeout=timeout)
        if frame is None:
            return None
        reuse, generate = self.degrader.decide(self.index)
        self.index += 1
        return self.pipeline.prepare(frame, reuse_landmarks=reuse, generate=generate)

    def close(self) -> None:
        pass


class FrontStage(InlineFront):
    """The CPU half (landmarks .. sketch) in a thread of its own, so that the landmarks
    of frame n+1 are found while the generator works on frame n.

    Between the stages sits one slot, as between camera and loop: the newest prepared
    frame wins, an older one not yet taken is dropped and counted (``dropped``), so a
    slow generator never builds a queue. A lossless capture (a file read flat out,
    ``capture.lossless``) is never dropped from: the stage reads its next frame only
    when the slot is free (backpressure, double buffering). Each item keeps its frame's own capture
    timestamp. ``get`` has the capture's contract: None at the end of the source,
    CameraLost while the camera is down, TimeoutError after ``timeout``; an error in
    the stage thread is raised from ``get``."""

    def __init__(self, capture, pipeline: Pipeline, degrader: Degrader) -> None:
        super().__init__(capture, pipeline, degrader)
        self._cond = threading.Condition()
        self._slot: Prepared | None = None
        self._ended = False
        self._lost: CameraLost | None = None
        self._error: BaseException | None = None
        self._stop = False
        self._lossless = bool(getattr(capture, "lossless", False))
        self._thread = threading.Thread(target=self._run, name="landmarks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop:
                if self._lossless:  # double buffering: read the next frame only once the slot is free
                    with self._cond:
                        while self._slot is not None and not self._stop:
                            self._cond.wait(0.1)
                try:
                    item = super().get(timeout=0.2)
                except CameraLost as e:
                    with self._cond:
                        self._lost = e
                        self._cond.notify_all()
                    time.sleep(0.01)
                    continue
                except TimeoutError:
                    continue
                with self._cond:
                    self._lost = None
                    if item is None:
                        self._ended = True
                    else:
                        self.dropped += self._slot is not None
                        self._slot = item
                    self._cond.notify_all()
                if item is None:
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the loop, which raises it
            with self._cond:
                self._error = e
                self._cond.notify_all()

    def get(self, timeout: float = 1.0) -> Prepared | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._slot is None:
                if self._error is not None:
                    raise self._error
                if self._ended:
                    return None
                if self._lost is not None:
                    raise self._lost
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no frame from the landmarks stage")
                self._cond.wait(remaining)
            item, self._slot = self._slot, None
            self._cond.notify_all()
            return item

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)


class LiveLoop:
    """Runs until the source ends, ``max_frames`` were output, or ``stop()``."""

    def __init__(self, capture, pipeline: Pipeline, sinks: FanOut, *, budget_ms: float, fps: float,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 log: Callable[[str], None] = print, engine_name: str = "",
                 observer: Callable[[object, object], None] | None = None, pipelined: bool = False,
                 degrade: bool = True) -> None:
        self.capture, self.pipeline, self.sinks = capture, pipeline, sinks
        self.clock, self.sleep, self.log = clock, sleep, log
        self.fps = fps
        self.degrader = Degrader(budget_ms / 1000.0, log, enabled=degrade)
        self.stats = StageStats()
        self.engine_name = engine_name
        self.pipelined = pipelined  # landmarks of frame n+1 overlap the generator on frame n (FrontStage)
        self.front: InlineFront | None = None
        self.observer = observer  # called with (frame, result) after each hand-off, outside the timings
        self.latency_listener: Callable[[float], None] | None = None  # gets the rolling e2e p50 (s), e.g. the audio delay
        self.audio_stats = None  # shown in the overlay when audio runs
        self.paused = False
        self._stop = False
        self.frames = self.no_face = self.repeated = self.lost_frames = 0
        self._neutral: np.ndarray | None = None
        self._t_start = self._t_end = 0.0

    # -- controls (window hotkeys and CLI flags land here)
    def stop(self) -> None:
        self._stop = True

    def handle_key(self, key: str) -> None:
        p = self.pipeline
        if key == "q":
            self.stop()
        elif key == "n":
            p.recalibrate()
            self.log("recalibrating the driver's neutral face: hold still, face relaxed")
        elif key == "m":
            modes = list(Mode)
            p.mode = modes[(modes.index(p.mode) + 1) % len(modes)]
            self.log(f"view: {p.mode.value}")
        elif key in "+=":
            p.set_gain(p.gain + 0.1)
            self.log(f"expression gain {p.gain:.1f}")
        elif key in "-_":
            p.set_gain(p.gain - 0.1)
            self.log(f"expression gain {p.gain:.1f}")
        elif key == "p":
            self.paused = not self.paused
            self.log("paused" if self.paused else "resumed")

    def overlay_lines(self) -> list[str]:
        s = self.stats
        lines = [f"{LEVELS[self.degrader.level]}  e2e p50 {s.rolling_ms('e2e'):.1f} / p95 {s.rolling_ms('e2e', 95):.1f} / p99 {s.rolling_ms('e2e', 99):.1f} ms"]
        lines.append("  ".join(f"{k[:5]} {s.rolling_ms(k):.1f}" for k in ("landmarks", "inference", "compose")))
        if self.audio_stats is not None:
            a = self.audio_stats
            lines.append(f"audio: {a.input_overflows} overruns, {a.output_underflows} underruns")
        return lines

    # -- the loop
    def run(self, *, max_frames: int | None = None) -> dict:
        """Run, then report. A threaded capture stops reading when the run ends, so the
        report's counts (captured, dropped) are final, not still growing."""
        self._t_start = self.clock()
        self.front = (FrontStage if self.pipelined else InlineFront)(self.capture, self.pipeline, self.degrader)
        try:
            self._run(max_frames)
        finally:
            self.front.close()
            self.capture.stop()
        self._t_end = self.clock()
        return self.report()

    def _run(self, max_frames: int | None) -> None:
        last_image: np.ndarray | None = None
        while not self._stop and (max_frames is None or self.frames < max_frames):
            try:
                prepared = self.front.get(timeout=1.0)
            except CameraLost:
                self._send_neutral()
                continue
            except TimeoutError:
                continue
            if prepared is None:
                break
            frame = prepared.frame
            t_start = self.clock()
            if self.paused and last_image is not None:
                self.sinks.send(last_image, frame.time)
                continue
            result = self.pipeline.finish(prepared)
            t_out = self.clock()
            self.sinks.send(result.image, frame.time)
            t_end = self.clock()
            last_image = result.image
            self._record(frame.t_capture, t_start, t_out, t_end, result)
            self.degrader.update(self.frames, t_end - frame.t_capture)
            if self.latency_listener is not None and self.frames % 15 == 0:
                self.latency_listener(self.stats.rolling_ms("e2e") / 1000.0)
            if self.observer is not None:
                self.observer(frame, result)
            self.frames += 1

    def _send_neutral(self) -> None:
        """Camera lost: keep the sinks alive with the target's neutral face at the
        nominal frame rate while the capture retries."""
        if self._neutral is None:
            self._neutral = self.pipeline.neutral_output()
        self.sinks.send(self._neutral, self.clock())
        self.lost_frames += 1
        self.sleep(1.0 / self.fps)

    def _record(self, t_capture: float, t_start: float, t_out: float, t_end: float, result) -> None:
        s = self.stats
        front = sum(result.timings.get(k, 0.0) for k in ("landmarks", "smoothing", "retarget", "sketch"))
        s.add("capture_wait", t_start - t_capture - front)  # time not spent working on this frame before the generator
        for name in STAGES:
            s.add(name, result.timings.get(name, 0.0))
        s.add("output", t_end - t_out)
        e2e = t_end - t_capture
        s.add("e2e", e2e)
        s.add("overhead", e2e - result.timings.get("landmarks", 0.0) - result.timings.get("inference", 0.0))
        self.no_face += not result.face
        self.repeated += not result.generated

    def report(self) -> dict:
        """The run's numbers; every key is documented in README.md ("bench JSON")."""
        elapsed = max(self._t_end - self._t_start, 1e-9)
        stages = self.stats.report()
        captured = getattr(self.capture, "captured", None)
        return {
            "engine": self.engine_name,
            "frames_out": self.frames,
            "frames_captured": captured if captured is not None else self.capture.delivered,
            "frames_dropped": getattr(self.capture, "dropped", 0) + (self.front.dropped if self.front else 0),
            "pipelined": self.pipelined,
            "frames_repeated": self.repeated,
            "frames_no_face": self.no_face,
            "frames_camera_lost": self.lost_frames,
            "duration_s": round(elapsed, 3),
            "fps": round(self.frames / elapsed, 2),
            "e2e_ms": stages.pop("e2e", {"n": 0}),
            "overhead_ms": stages.pop("overhead", {"n": 0}),
            "stages_ms": stages,
            "degradation": self.degrader.changes,
            "sinks_failed": self.sinks.failed,
        }

