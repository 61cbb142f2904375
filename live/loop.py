"""The live loop: pacing, the latency budget, degradation and the fault policy.

Per iteration: take the newest driver frame, run the pipeline, hand the result to
every sink, record the timings. End-to-end latency runs from the frame's capture
timestamp to the moment the last sink accepted it.

Over budget, the loop degrades in defined, logged steps and recovers the same way:

  normal           every frame: landmarks + generator
  light            the model's lighter rung (MODEL_DIR/.../light) instead of the model,
                   when it has one: a little less detail, every frame still fresh
  reuse-landmarks  landmarks on every other frame, the generator on every frame
  skip-generation  as reuse-landmarks, and the generator on every other frame (the
                   last output is repeated in between)

Quality goes before motion: repeating or reusing anything is the last resort.

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
from live.output import OutputStage
from live.pipeline import Pipeline, Prepared
from live.sinks import FanOut
from live.slot import LatestSlot
from live.stats import StageStats
from models.hotpath import per_frame

LEVELS = ("normal", "light", "reuse-landmarks", "skip-generation")


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
    level: int = 0  # an index into ``levels``
    enabled: bool = True  # off: measure capacity flat out, never trade frames for latency
    light: bool = False  # a lighter rung exists: the first step down
    ema: float | None = None
    _over: int = 0
    _under: int = 0
    changes: list = field(default_factory=list)
    generator_s: dict = field(default_factory=dict)  # rung -> moving average of its generator's time

    def note_generator(self, rung: str, seconds: float) -> None:
        """What a generator call cost: the step back up from "light" is taken only when
        the main rung's extra cost would still fit."""
        old = self.generator_s.get(rung)
        self.generator_s[rung] = seconds if old is None else old + self.alpha * (seconds - old)

    def _extra_cost_up(self) -> float:
        """Seconds the next level up would add to a frame, where known."""
        if self.name != "light" or not {"main", "light"} <= set(self.generator_s):
            return 0.0
        return max(0.0, self.generator_s["main"] - self.generator_s["light"])

    @property
    def levels(self) -> tuple[str, ...]:
        return LEVELS if self.light else tuple(name for name in LEVELS if name != "light")

    @property
    def name(self) -> str:
        return self.levels[self.level]

    @per_frame
    def decide(self, index: int) -> tuple[bool, bool, bool]:
        """(use the light rung, reuse landmarks, generate) for frame number ``index``."""
        rank, odd = LEVELS.index(self.name), index % 2 == 1
        return self.light and rank >= 1, rank >= 2 and odd, not (rank >= 3 and odd)

    @per_frame
    def update(self, index: int, e2e_s: float) -> None:
        if not self.enabled:
            return
        self.ema = e2e_s if self.ema is None else self.ema + self.alpha * (e2e_s - self.ema)
        self._over = self._over + 1 if self.ema > self.budget_s else 0
        self._under = self._under + 1 if self.ema + self._extra_cost_up() < self.recover * self.budget_s else 0
        if self._over >= self.patience and self.level < len(self.levels) - 1:
            self._set(index, self.level + 1)
        elif self._under >= self.calm and self.level > 0:
            self._set(index, self.level - 1)

    def _set(self, index: int, level: int) -> None:
        self.log(f"latency {self.ema * 1000:.1f} ms vs budget {self.budget_s * 1000:.0f} ms: {self.name} -> {self.levels[level]}")
        self.level, self._over, self._under = level, 0, 0
        self.changes.append({"frame": index, "level": self.name, "ema_ms": round(self.ema * 1000, 2)})


class InlineFront:
    """The CPU half of the pipeline in the loop's own thread: the sequential loop."""

    dropped = 0  # nothing sits between the halves here, so nothing is dropped

    def __init__(self, capture, pipeline: Pipeline, degrader: Degrader) -> None:
        self.capture, self.pipeline, self.degrader = capture, pipeline, degrader
        self.index = 0

    @per_frame
    def get(self, timeout: float = 1.0) -> Prepared | None:
        frame = self.capture.get(timeout=timeout)
        if frame is None:
            return None
        light, reuse, generate = self.degrader.decide(self.index)
        self.index += 1
        return self.pipeline.prepare(frame, reuse_landmarks=reuse, generate=generate, light=light)

    def close(self) -> None:
        pass


class FrontStage(InlineFront):
    """The CPU half (landmarks .. sketch) in a thread of its own, so that the landmarks
    of frame n+1 are found while the generator works on frame n.

    Between the stages sits a ``LatestSlot``, as between camera and loop: the newest
    prepared frame wins, an older one not yet taken is dropped and counted
    (``dropped``), so a slow generator never builds a queue. A lossless capture (a file
    read flat out, ``capture.lossless``) is never dropped from: the stage reads its next
    frame only when the slot is free (backpressure, double buffering). Each item keeps
    its frame's own capture timestamp. ``get`` has the capture's contract: None at the
    end of the source, CameraLost while the camera is down, TimeoutError after
    ``timeout``; an error in the stage thread is raised from ``get``."""

    def __init__(self, capture, pipeline: Pipeline, degrader: Degrader) -> None:
        super().__init__(capture, pipeline, degrader)
        self._slot: LatestSlot[Prepared] = LatestSlot()
        self._stop = False
        self._lossless = bool(getattr(capture, "lossless", False))
        self._thread = threading.Thread(target=self._run, name="landmarks", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return self._slot.dropped

    def _run(self) -> None:
        try:
            while not self._stop:
                if self._lossless and not self._slot.wait_empty(0.1):
                    continue  # double buffering: read the next frame only once the slot is free
                try:
                    item = super().get(timeout=0.2)
                except CameraLost as e:
                    self._slot.set_problem(e)
                    time.sleep(0.01)
                    continue
                except TimeoutError:
                    continue
                self._slot.set_problem(None)
                if item is None:
                    self._slot.end()
                    return
                self._slot.put(item)
        except BaseException as e:  # noqa: BLE001 - handed to the loop, which raises it
            self._slot.fail(e)

    @per_frame
    def get(self, timeout: float = 1.0) -> Prepared | None:
        try:
            return self._slot.get(timeout)
        except TimeoutError:
            raise TimeoutError("no frame from the landmarks stage") from None

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)


class LiveLoop:
    """Runs until the source ends, ``max_frames`` were output, or ``stop()``.

    Per frame: the newest prepared driver frame, the generator and composition
    (``pipeline.finish``), the output stage (view, watermark, badge), the sinks."""

    def __init__(self, capture, pipeline: Pipeline, output: OutputStage, sinks: FanOut, *, budget_ms: float, fps: float,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 log: Callable[[str], None] = print, engine_name: str = "",
                 observer: Callable[[object, object], None] | None = None, pipelined: bool = False,
                 degrade: bool = True) -> None:
        self.capture, self.pipeline, self.output, self.sinks = capture, pipeline, output, sinks
        self.clock, self.sleep, self.log = clock, sleep, log
        self.fps = fps
        self.degrader = Degrader(budget_ms / 1000.0, log, enabled=degrade, light=pipeline.has_light)
        self.stats = StageStats()
        self.engine_name = engine_name
        self.pipelined = pipelined  # landmarks of frame n+1 overlap the generator on frame n (FrontStage)
        self.front: InlineFront | None = None
        self.observer = observer  # called with (frame, result) after each hand-off, outside the timings
        self.latency_listener: Callable[[float], None] | None = None  # gets the rolling e2e p50 (s), e.g. the audio delay
        self.paused = False
        self.interrupted = False
        self._stop = False
        self.frames = self.no_face = self.repeated = self.lost_frames = self.pose_limited = self.reused = 0
        self.by_rung: dict[str, int] = {}  # generated frames per rung (main, light)
        self.limited_now: dict[str, float] = {}  # how far the driver's head is beyond the target's coverage, this frame
        self._neutral: np.ndarray | None = None
        self._t_start = self._t_end = self._cpu_start = self._cpu_end = 0.0

    def stop(self) -> None:
        self._stop = True

    def run(self, *, max_frames: int | None = None) -> dict:
        """Run, then report (also after Ctrl-C, marked ``interrupted``). A threaded
        capture stops reading when the run ends, so the report's counts are final."""
        self._t_start, self._cpu_start = self.clock(), time.process_time()
        self.front = (FrontStage if self.pipelined else InlineFront)(self.capture, self.pipeline, self.degrader)
        try:
            self._run(max_frames)
        except KeyboardInterrupt:
            self.interrupted = True
            self.log("interrupted")
        finally:
            self.front.close()
            self.capture.stop()
            self._t_end, self._cpu_end = self.clock(), time.process_time()
        return self.report()

    @per_frame
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
            if self.paused and last_image is not None:
                self.sinks.send(last_image, frame.time)
                continue
            t_start = self.clock()
            result = self.pipeline.finish(prepared)
            image, out_timings = self.output.render(frame, result)
            t_out = self.clock()
            self.sinks.send(image, frame.time)
            t_end = self.clock()
            last_image = image
            self._record(frame.t_capture, t_start, t_out, t_end, result, out_timings)
            if self.observer is not None:
                self.observer(frame, result)
            self.frames += 1

    def _send_neutral(self) -> None:
        """Camera lost: keep the sinks alive with the target's neutral face at the
        nominal frame rate while the capture retries."""
        if self._neutral is None:
            self._neutral = self.output.disclose(self.pipeline.neutral_frame()).copy()
        self.sinks.send(self._neutral, self.clock())
        self.lost_frames += 1
        self.sleep(1.0 / self.fps)

    @per_frame
    def _record(self, t_capture: float, t_start: float, t_out: float, t_end: float, result, out_timings: dict) -> None:
        s = self.stats
        front = sum(result.timings.get(k, 0.0) for k in self.pipeline.front_stages)
        s.add("capture_wait", t_start - t_capture - front)  # time not spent working on this frame before the generator
        for name in self.pipeline.stages:
            s.add(name, result.timings.get(name, 0.0))
        for name, seconds in out_timings.items():
            s.add(name, seconds)
        s.add("output", t_end - t_out)
        e2e = t_end - t_capture
        s.add("e2e", e2e)
        s.add("overhead", e2e - result.timings.get("landmarks", 0.0) - result.timings.get("inference", 0.0))
        self.no_face += not result.face
        self.repeated += not result.generated
        self.reused += result.reused_landmarks
        if result.generated:
            self.by_rung[result.rung] = self.by_rung.get(result.rung, 0) + 1
            self.degrader.note_generator(result.rung, result.timings["inference"])
        self._note_limits(result.limited)
        self.degrader.update(self.frames, e2e)
        if self.latency_listener is not None and self.frames % 15 == 0:
            self.latency_listener(s.rolling_ms("e2e") / 1000.0)

    def _note_limits(self, limited: dict[str, float]) -> None:
        """Count frames whose head pose was kept within the target's coverage; log when it starts."""
        if limited and not self.limited_now:
            what = ", ".join(f"{k} {v:+.2g}" for k, v in limited.items())
            self.log(f"the driver's head goes beyond what the target's clip shows ({what} past it): the target's head stays within it")
        self.limited_now = limited
        self.pose_limited += bool(limited)

    def report(self) -> dict:
        """The run's numbers; every key is documented in README.md ("bench JSON")."""
        elapsed = max(self._t_end - self._t_start, 1e-9)
        stages = self.stats.report()
        captured = getattr(self.capture, "captured", None)
        report = {
            "engine": self.engine_name,
            "frames_out": self.frames,
            "frames_captured": captured if captured is not None else self.capture.delivered,
            "frames_dropped": getattr(self.capture, "dropped", 0) + (self.front.dropped if self.front else 0),
            "pipelined": self.pipelined,
            "frames_repeated": self.repeated,
            "frames_reused_landmarks": self.reused,
            "frames_by_rung": dict(self.by_rung),
            "frames_no_face": self.no_face,
            "frames_camera_lost": self.lost_frames,
            "frames_pose_limited": self.pose_limited,
            "duration_s": round(elapsed, 3),
            "fps": round(self.frames / elapsed, 2),
            # CPU time of the whole process (all threads: capture, Face Mesh, ONNX Runtime) per frame out
            "cpu_ms_per_frame": round(1000 * (self._cpu_end - self._cpu_start) / max(self.frames, 1), 2),
            "e2e_ms": stages.pop("e2e", {"n": 0}),
            "overhead_ms": stages.pop("overhead", {"n": 0}),
            "stages_ms": stages,
            "degradation": self.degrader.changes,
            "sinks_failed": self.sinks.failed,
        }
        if self.interrupted:
            report["interrupted"] = True
        return report
