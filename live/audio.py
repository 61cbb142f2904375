"""Lip sync: the microphone, delayed to match the video's measured latency.

``DelayLine`` is the signal path: a fixed-size ring buffer read behind the write
position by a fractional delay. When the wanted delay changes, the read position
glides towards it at ``max_slew`` (a tiny, inaudible change of playback speed, 0.5 %
by default) instead of jumping, so there are no clicks. The buffer never grows: the
delay is clamped to [0, max_delay].

``DelayController`` turns the live loop's rolling end-to-end p50 (plus the sink's
known latency and the user's offset) into the wanted delay. The loop *writes* a float,
the audio callback *reads* it: neither ever waits for the other.

``AudioBridge`` runs a sounddevice full-duplex stream: microphone -> delay line ->
output device (normally a virtual microphone the call app listens to). It imports
sounddevice (and so PortAudio) only when built.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from models.errors import DeviceError


class AudioError(DeviceError):
    """The audio path cannot start; the message says how to fix it."""


class DelayLine:
    """Delays a (frames, channels) float32 stream by a smoothly varying number of samples.

    ``process(block)`` writes ``block`` and returns the same number of samples read
    ``delay`` samples behind, so a sample written at stream position p comes out at
    p + delay exactly when the delay is constant (to the sample; fractional delays are
    linearly interpolated).
    """

    def __init__(self, *, samplerate: int, channels: int = 1, max_delay_s: float = 0.5, max_slew: float = 0.005) -> None:
        if samplerate <= 0 or channels <= 0 or max_delay_s < 0 or not 0 < max_slew < 0.5:
            raise ValueError(f"DelayLine: bad parameters samplerate={samplerate} channels={channels} "
                             f"max_delay_s={max_delay_s} max_slew={max_slew}")
        self.samplerate, self.channels = samplerate, channels
        self.max_delay = int(round(max_delay_s * samplerate))
        self.size = self.max_delay + 2 * 8192 + 2  # room for the longest block on top of the delay
        self.buffer = np.zeros((self.size, channels), np.float32)
        self.written = 0  # total samples written (stream position)
        self.delay = 0.0  # current delay, samples
        self.target = 0.0  # wanted delay, samples
        self.max_slew = max_slew

    def set_delay(self, seconds: float) -> None:
        """Where the delay should glide to (clamped to [0, max_delay])."""
        self.target = float(np.clip(seconds * self.samplerate, 0, self.max_delay))

    def jump_to_target(self) -> None:
        """Set the delay at once (only before audio flows: a jump would click)."""
        self.delay = self.target

    def process(self, block: np.ndarray) -> np.ndarray:
        """block: (n, channels) float32 -> (n, channels) float32, delayed."""
        n = len(block)
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"DelayLine expects (n, {self.channels}) blocks, got {block.shape}")
        if n > 8192:
            raise ValueError(f"DelayLine blocks are at most 8192 frames, got {n}")
        start = self.written
        idx = (start + np.arange(n)) % self.size
        self.buffer[idx] = block
        self.written += n
        # Per-sample delay, moving towards the target by at most max_slew per sample.
        step = np.clip(self.target - self.delay, -self.max_slew * n, self.max_slew * n) / n
        delays = self.delay + step * np.arange(1, n + 1)
        self.delay = float(delays[-1])
        pos = (start + np.arange(n)) - delays  # fractional read positions
        pos = np.maximum(pos, start - self.max_delay - 1)  # never read past what the buffer holds
        lo = np.floor(pos)
        frac = (pos - lo)[:, None].astype(np.float32)
        lo = lo.astype(np.int64)
        a = self.buffer[lo % self.size]
        b = self.buffer[(lo + 1) % self.size]
        out = a + (b - a) * frac
        out[lo < 0] = 0.0  # before the stream started: silence
        return out


@dataclass
class DelayController:
    """The wanted audio delay = video latency (rolling p50) + sink latency + offset,
    clamped to [0, max]. ``video_latency_s`` is written by the video loop and read by
    the audio callback (a float store/load: no lock, no waiting)."""

    offset_s: float = 0.0
    sink_latency_s: float = 0.0
    max_delay_s: float = 0.5
    video_latency_s: float = 0.0

    def wanted(self) -> float:
        return float(np.clip(self.video_latency_s + self.sink_latency_s + self.offset_s, 0.0, self.max_delay_s))


@dataclass
class AudioStats:
    blocks: int = 0
    input_overflows: int = 0
    output_underflows: int = 0
    errors: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"blocks": self.blocks, "input_overflows": self.input_overflows,
                "output_underflows": self.output_underflows, "errors": list(self.errors)}


def _device(value: str) -> int | str | None:
    if value == "":
        return None
    return int(value) if value.strip().isdigit() else value


class AudioBridge:
    """Microphone -> delay line -> output device, as a sounddevice duplex stream."""

    def __init__(self, *, input: str = "", output: str = "", samplerate: int = 48000, blocksize: int = 256,
                 controller: DelayController, channels: int = 1, log: Callable[[str], None] = print) -> None:
        try:
            import sounddevice as sd
        except OSError as e:  # PortAudio missing
            raise AudioError(f"audio: PortAudio is not installed ({e})", fix="sudo apt-get install libportaudio2") from None
        self.sd, self.controller, self.log = sd, controller, log
        self.line = DelayLine(samplerate=samplerate, channels=channels, max_delay_s=controller.max_delay_s)
        self.line.set_delay(controller.wanted())
        self.line.jump_to_target()
        self.stats = AudioStats()
        try:
            self.stream = sd.Stream(device=(_device(input), _device(output)), samplerate=samplerate, blocksize=blocksize,
                                    channels=channels, dtype="float32", latency="low", callback=self._callback)
        except Exception as e:  # noqa: BLE001 - PortAudio reports bad devices in many ways
            raise AudioError(f"audio: cannot open input {input or 'default'!r} / output {output or 'default'!r}: {e}",
                             fix="`reenact devices` lists the devices; set audio.input / audio.output in config.toml") from None
        # What PortAudio says the output adds, so the voice leaves in step with the picture.
        self.device_latency_s = float(self.stream.latency[1]) if isinstance(self.stream.latency, tuple) else float(self.stream.latency)

    def _callback(self, indata, outdata, frames, time_info, status) -> None:
        # Runs on PortAudio's thread: no allocation beyond the delay line's, no locks, no waiting.
        if status.input_overflow:
            self.stats.input_overflows += 1
        if status.output_underflow:
            self.stats.output_underflows += 1
        try:
            self.line.set_delay(max(0.0, self.controller.wanted() - self.device_latency_s))
            outdata[:] = self.line.process(indata)
        except Exception as e:  # noqa: BLE001 - an audio fault must never stop the video
            outdata.fill(0)
            if len(self.stats.errors) < 10:
                self.stats.errors.append(f"{type(e).__name__}: {e}")
        self.stats.blocks += 1

    def start(self) -> None:
        self.stream.start()

    def close(self) -> None:
        try:
            self.stream.stop()
        finally:
            self.stream.close()
