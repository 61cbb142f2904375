"""Controls: the commands a user gives a running session, and the stats overlay.

Window hotkeys, the terminal, command-line flags (and a control panel) all drive the
same ``Controls`` object, so a control behaves the same whichever way it arrives. It
changes the algorithm's parameters through their own small interfaces
(``Pipeline.recalibrate``/``set_gains``, ``OutputStage.mode``, ``LiveLoop.paused``/
``stop``); none of this state lives in the per-frame code.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable

import numpy as np

from live.output import Mode
from models.config import AudioConfig, LiveConfig, setting_range
from models.retarget import Gains

KEYS = {"n": "recalibrate", "m": "next view", "+": "more expression", "-": "less expression", "p": "pause", "q": "quit"}
GAIN_STEP = 0.1
GAIN_RANGE = (0.0, 3.0)
# Per-region gains a user may set, each with its [live] key and the top of its range (models/config.py).
REGIONS = {region: (f"live.{key}", setting_range(LiveConfig, key)[1])
           for region, key in (("mouth", "gain_mouth"), ("eyes", "gain_eyes"), ("brows", "gain_brows"), ("head_motion", "head_motion"))}
BADGE_POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
AUDIO_OFFSET_RANGE = setting_range(AudioConfig, "offset_ms")
STEADY_RANGE = setting_range(LiveConfig, "steady")


class Controls:
    """``loop`` must offer ``paused``, ``stop()``, ``stats`` and ``degrader``; ``pipeline``
    ``gains``, ``set_gains`` and ``recalibrate``; ``output`` a ``mode``."""

    def __init__(self, loop, pipeline, output, *, log: Callable[[str], None] = print) -> None:
        self.loop, self.pipeline, self.output, self.log = loop, pipeline, output, log
        self.base = pipeline.gains  # the configured per-region gains; the global gain scales their expression part
        self.gain = 1.0
        self.audio_stats = None  # shown in the overlay when audio runs
        self.audio_controller = None  # the lip-sync delay's controller when audio runs (its offset_s is set here)
        self.audio_line = None  # ... and its delay line (the delay actually applied now)
        self.audio_offset_ms = 0.0
        self.badge_position = "bottom-right"
        self.rebadge: Callable[[str], Any] | None = None  # position -> a new badge (None: the badge is off)
        self.outputs: dict[str, "Switchable"] = {}  # sinks the user may start and stop: "virtual-camera", "recording"
        self.on_change: Callable[[str, Any], None] | None = None  # (config key, value): the panel keeps it
        self.switch_camera: Callable[[str], None] | None = None  # name -> read from that camera now (camera sources only)
        self._lock = threading.Lock()  # commands come from the window, the terminal and the panel's threads

    # -- commands
    def recalibrate(self) -> None:
        self.pipeline.recalibrate()
        self.log("recalibrating the driver's neutral face: hold still, face relaxed")

    def set_view(self, mode: Mode) -> None:
        self.output.mode = mode
        self.log(f"view: {mode.value}")

    def next_view(self) -> None:
        modes = list(Mode)
        self.set_view(modes[(modes.index(self.output.mode) + 1) % len(modes)])

    def set_gain(self, gain: float) -> None:
        """The global expression gain: scales mouth, eyes and brows together."""
        self.gain = float(np.clip(gain, *GAIN_RANGE))
        b = self.base
        self.pipeline.set_gains(Gains(b.mouth * self.gain, b.eyes * self.gain, b.brows * self.gain, b.rest, b.head_motion))
        self.log(f"expression gain {self.gain:.1f}")

    def set_region(self, region: str, value: float) -> None:
        """One region's gain (mouth, eyes, brows) or the head motion, as the config's keys set it."""
        if region not in REGIONS:
            raise ValueError(f"unknown region {region!r}; regions: {', '.join(REGIONS)}")
        key, hi = REGIONS[region]
        value = float(np.clip(value, 0.0, hi))
        with self._lock:
            self.base = dataclasses.replace(self.base, **{region: value})
            self.set_gain(self.gain)
        self._changed(key, value)

    def set_steady(self, keep: float) -> None:
        """How much of the previous generated face is kept while the face holds still
        (``live.steady``; 0 = off). A pipeline without it (face replacement) ignores it."""
        keep = float(np.clip(keep, *STEADY_RANGE))
        steady = getattr(self.pipeline, "steady", None)
        if steady is not None:
            steady.keep = keep  # one float, read by the generator's thread on its next frame
        self.log(f"steady face {keep:.1f}" + ("" if steady is not None else " (this pipeline has none: kept for next time)"))
        self._changed("live.steady", keep)

    def set_audio_offset(self, ms: float) -> None:
        """Extra audio delay in ms (positive: the voice later), on top of the video latency."""
        self.audio_offset_ms = float(np.clip(ms, *AUDIO_OFFSET_RANGE))
        if self.audio_controller is not None:
            self.audio_controller.offset_s = self.audio_offset_ms / 1000
        self.log(f"audio offset {self.audio_offset_ms:+.0f} ms" + ("" if self.audio_controller else " (audio is off: kept for next time)"))
        self._changed("audio.offset_ms", self.audio_offset_ms)

    def set_badge_position(self, position: str) -> None:
        """Move the disclosure badge to another corner. It can be moved, never removed."""
        if position not in BADGE_POSITIONS:
            raise ValueError(f"unknown badge position {position!r}; one of: {', '.join(BADGE_POSITIONS)}")
        self.badge_position = position
        if self.rebadge is not None and self.output.badge is not None:
            self.output.badge = self.rebadge(position)
        self.log(f"badge: {position}")
        self._changed("output.badge_position", position)

    def set_output(self, name: str, on: bool) -> None:
        """Start or stop one of ``outputs`` (the virtual camera, the recording)."""
        if name not in self.outputs:
            raise ValueError(f"no output {name!r} here; outputs: {', '.join(self.outputs) or 'none'}")
        self.outputs[name].set(on)

    def set_camera(self, name: str) -> None:
        """Drive from another camera: now when the source is a camera, and from the next start in any case."""
        name = str(name).strip()
        if not name:
            raise ValueError("give a camera index or part of its name")
        if self.switch_camera is not None:
            self.switch_camera(name)
            self.log(f"camera: switching to {name!r}")
        else:
            self.log(f"camera: {name!r} from the next start (this session is not driven by a camera)")
        self._changed("capture.camera", name)

    def toggle_pause(self) -> None:
        self.loop.paused = not self.loop.paused
        self.log("paused" if self.loop.paused else "resumed")

    def set_paused(self, paused: bool) -> None:
        if bool(paused) != self.loop.paused:
            self.toggle_pause()

    def _audio_state(self) -> dict:
        """The delay applied to the microphone now, and the A/V offset it leaves: that
        delay minus the video's latency and the output device's (positive: the voice
        late), the user's own ``offset_ms`` included, like bench --av's expected offset."""
        c, line = self.audio_controller, self.audio_line
        if c is None or line is None:
            return {"audio_delay_ms": None, "av_offset_ms": None}
        delay = line.delay / line.samplerate
        return {"audio_delay_ms": round(1000 * delay, 1),
                "av_offset_ms": round(1000 * (delay - c.video_latency_s - c.sink_latency_s), 1)}

    def _changed(self, key: str, value: Any) -> None:
        if self.on_change is not None:
            self.on_change(key, value)

    def state(self) -> dict:
        """Everything a control surface shows, read from the parts themselves (the
        pipeline's gains, the output's view), not from what was last asked for."""
        g = self.pipeline.gains
        s = self.loop.stats
        return {
            "gain": round(self.gain, 3),
            "regions": {"mouth": round(self.base.mouth, 3), "eyes": round(self.base.eyes, 3), "brows": round(self.base.brows, 3),
                        "head_motion": round(self.base.head_motion, 3)},
            "pipeline_gains": {k: round(getattr(g, k), 3) for k in ("mouth", "eyes", "brows", "rest", "head_motion")},
            "steady": round(self.pipeline.steady.keep, 3) if getattr(self.pipeline, "steady", None) is not None else None,
            "view": self.output.mode.value,
            "paused": bool(self.loop.paused),
            "badge_position": self.badge_position,
            "audio_offset_ms": self.audio_offset_ms,
            **self._audio_state(),
            "degradation": self.loop.degrader.name,
            "frames": self.loop.frames,
            "outputs": {name: o.on for name, o in self.outputs.items()},
            "stages_ms": {k: _ms(s, k) for k in ("landmarks", "retarget", "sketch", "inference", "compose", "e2e")},
            "calibration": {"restarts": self.pipeline.calibration.restarts, "completed": self.pipeline.calibration.completed,
                            "ready": self.pipeline.calibration.ready},
        }

    def quit(self) -> None:
        self.loop.stop()

    def handle_key(self, key: str) -> None:
        """One key press (window or terminal); unknown keys are ignored."""
        actions = {"n": self.recalibrate, "m": self.next_view, "+": lambda: self.set_gain(self.gain + GAIN_STEP),
                   "=": lambda: self.set_gain(self.gain + GAIN_STEP), "-": lambda: self.set_gain(self.gain - GAIN_STEP),
                   "_": lambda: self.set_gain(self.gain - GAIN_STEP), "p": self.toggle_pause, "q": self.quit}
        action = actions.get(key)
        if action is not None:
            action()

    # -- what the preview window shows over the picture
    def overlay_lines(self) -> list[str]:
        s = self.loop.stats
        lines = [f"{self.loop.degrader.name}  e2e p50 {s.rolling_ms('e2e'):.1f} / p95 {s.rolling_ms('e2e', 95):.1f} / "
                 f"p99 {s.rolling_ms('e2e', 99):.1f} ms",
                 "  ".join(f"{k[:5]} {s.rolling_ms(k):.1f}" for k in ("landmarks", "inference", "compose"))]
        if self.loop.limited_now:
            lines.append("head pose limited to the target's range: " + ", ".join(self.loop.limited_now))
        if self.audio_stats is not None:
            a = self.audio_stats
            lines.append(f"audio: {a.input_overflows} overruns, {a.output_underflows} underruns")
        return lines


def _ms(stats, stage: str) -> float | None:
    """A stage's rolling p50 in ms, None before it has run (JSON has no NaN). The
    loop's thread appends while another thread reads: a read that meets an append is
    skipped, not retried."""
    try:
        v = stats.rolling_ms(stage)
    except (RuntimeError, ValueError):
        return None
    return None if v != v else round(v, 2)


class Switchable:
    """A sink the user may start and stop while the session runs: ``open()`` makes it,
    and it joins (or leaves, and is closed) the session's ``FanOut``."""

    def __init__(self, name: str, fan, open_sink: Callable[[], Any], *, log: Callable[[str], None] = print) -> None:
        self.name, self.fan, self.open_sink, self.log = name, fan, open_sink, log
        self.sink = None

    @property
    def on(self) -> bool:
        return self.sink is not None and self.sink in self.fan.sinks

    def set(self, on: bool) -> None:
        if on and not self.on:
            self.sink = self.open_sink()
            self.fan.add(self.sink)
            self.log(f"{self.name}: started ({getattr(self.sink, 'device', getattr(self.sink, 'path', ''))})")
        elif not on and self.sink is not None:
            sink, self.sink = self.sink, None
            self.fan.remove(sink)
            self.log(f"{self.name}: stopped")
