"""Controls: the commands a user gives a running session, and the stats overlay.

Window hotkeys, the terminal, command-line flags (and a control panel) all drive the
same ``Controls`` object, so a control behaves the same whichever way it arrives. It
changes the algorithm's parameters through their own small interfaces
(``Pipeline.recalibrate``/``set_gains``, ``OutputStage.mode``, ``LiveLoop.paused``/
``stop``); none of this state lives in the per-frame code.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from live.output import Mode
from models.retarget import Gains

KEYS = {"n": "recalibrate", "m": "next view", "+": "more expression", "-": "less expression", "p": "pause", "q": "quit"}
GAIN_STEP = 0.1
GAIN_RANGE = (0.0, 3.0)


class Controls:
    """``loop`` must offer ``paused``, ``stop()``, ``stats`` and ``degrader``; ``pipeline``
    ``gains``, ``set_gains`` and ``recalibrate``; ``output`` a ``mode``."""

    def __init__(self, loop, pipeline, output, *, log: Callable[[str], None] = print) -> None:
        self.loop, self.pipeline, self.output, self.log = loop, pipeline, output, log
        self.base = pipeline.gains  # the configured per-region gains; the global gain scales their expression part
        self.gain = 1.0
        self.audio_stats = None  # shown in the overlay when audio runs

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

    def toggle_pause(self) -> None:
        self.loop.paused = not self.loop.paused
        self.log("paused" if self.loop.paused else "resumed")

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
