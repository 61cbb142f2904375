"""``reenact bench --av``: does the voice leave in step with the face?

The clip's video runs through the live pipeline at real-time pace; its audio runs
through the same ``DelayLine`` the live audio path uses, its delay following the
loop's rolling end-to-end p50 as it would live. Then both outputs are measured from
what they contain, not from timestamps alone:

* video: the mouth opening of each *generated* face (Face Mesh on the output), at the
  moment the frame was handed to the sink;
* audio: the loudness envelope of the delayed audio, at the moment it would play.

The lag between mouth and loudness is found by cross-correlation, once on the input
clip (people's mouths and voices are not perfectly aligned by nature) and once on the
output; the A/V offset the pipeline adds is the difference. Positive = audio late.
"""
from __future__ import annotations

import subprocess
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from live.audio import DelayController, DelayLine
from models.errors import SourceError

RATE = 16000  # analysis sample rate
GRID = 1000.0  # Hz: signals are compared on a 1 ms grid
MAX_LAG_S = 0.3  # the search window for the clip's own mouth-to-voice lag
MAX_OFFSET_S = 0.15  # the window for the output's lag, around the input's: 4.5 frames either way
MIN_CORR = 0.15  # below this a mouth/voice peak over the wide window may be noise
MIN_CORR_OUTPUT = 0.08  # the output's narrower window tolerates a weaker (but still clear) peak


class AVError(SourceError):
    pass


def read_audio(path: str | Path, rate: int = RATE) -> np.ndarray:
    """Mono float32 audio of a media file, decoded by the ffmpeg that imageio-ffmpeg ships."""
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise AVError(f"bench --av needs imageio-ffmpeg ({e})") from None
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
    res = subprocess.run(cmd, capture_output=True)
    if res.returncode != 0:
        raise AVError(f"cannot decode the audio of {path}: {res.stderr.decode(errors='replace').strip()[-300:]}")
    audio = np.frombuffer(res.stdout, np.float32)
    if audio.size == 0:
        raise AVError(f"{path} has no audio track: bench --av needs a clip with sound")
    return audio


def envelope(audio: np.ndarray, rate: int, hop_s: float = 0.005, win_s: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(times, loudness in dB) of an audio signal, one value per ``hop_s``."""
    hop, win = int(rate * hop_s), int(rate * win_s)
    n = max(0, (len(audio) - win) // hop)
    frames = np.lib.stride_tricks.sliding_window_view(audio, win)[::hop][:n]
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-10)
    return (np.arange(n) * hop + win / 2) / rate, 20 * np.log10(rms)


def lag(t_a: np.ndarray, a: np.ndarray, t_b: np.ndarray, b: np.ndarray, max_lag: float = MAX_LAG_S,
        around: float = 0.0, min_corr: float | None = None) -> float:
    """Seconds by which signal b trails signal a: the cross-correlation peak within
    ``around`` ± ``max_lag``, on a 1 ms grid, refined with a parabola. Both signals are
    z-scored over their common span. Raises AVError if the peak is at the edge of the
    window or weaker than ``min_corr``."""
    min_corr = MIN_CORR if min_corr is None else min_corr
    t_b = t_b - around
    lo, hi = max(t_a[0], t_b[0]) + max_lag, min(t_a[-1], t_b[-1]) - max_lag
    if hi - lo < 2.0:
        raise AVError("not enough overlapping audio and video to measure the offset")
    grid = np.arange(lo - max_lag, hi + max_lag, 1 / GRID)
    ga, gb = np.interp(grid, t_a, a), np.interp(grid, t_b, b)
    ga, gb = (ga - ga.mean()) / (ga.std() + 1e-12), (gb - gb.mean()) / (gb.std() + 1e-12)
    m = int(max_lag * GRID)
    core = slice(m, len(grid) - m)
    lags = np.arange(-m, m + 1)
    corr = np.array([np.dot(ga[core], gb[core.start + k : core.stop + k]) for k in lags]) / (core.stop - core.start)
    i = int(np.argmax(corr))
    if i in (0, len(corr) - 1) or corr[i] < min_corr:
        raise AVError(f"mouth movement and voice do not correlate here (peak {corr[i]:.2f} at {around * 1000 + lags[i]:.0f} ms, "
                      f"searched {around * 1000:.0f} ± {max_lag * 1000:.0f} ms): use a clip where someone talks, and a model "
                      "trained long enough to move the mouth")
    y0, y1, y2 = corr[i - 1 : i + 2]
    i = i + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2 + 1e-12)
    return around + float(lags[0] + i) / GRID


def delayed_audio(audio: np.ndarray, rate: int, frame_times: np.ndarray, latencies: np.ndarray, *, max_delay_s: float,
                  offset_s: float = 0.0, window: int = 300, settle: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Run the clip's audio through the DelayLine, block by block in step with the
    video frames, its delay following the rolling p50 of the latencies measured up to
    each frame — what the live audio path would have played. For the first ``settle``
    frames (half a second) the delay is set, not glided: the first frames of a run are
    its slowest (warm caches, a starting tracker), and gliding away from their latency
    would take seconds. Returns (delayed audio, the delay in force at each frame)."""
    line = DelayLine(samplerate=rate, channels=1, max_delay_s=max_delay_s)
    ctl = DelayController(offset_s=offset_s, max_delay_s=max_delay_s)
    recent: deque = deque(maxlen=window)
    out, delays, pos = [], [], 0
    bounds = np.append(np.round(frame_times * rate).astype(int), len(audio))
    for i in range(len(frame_times)):
        recent.append(latencies[i])
        ctl.video_latency_s = float(np.median(recent))
        line.set_delay(ctl.wanted())
        if i < settle:
            line.jump_to_target()
        end = min(bounds[i + 1], len(audio))
        while pos < end:
            n = min(1024, end - pos)
            out.append(line.process(audio[pos : pos + n, None])[:, 0])
            pos += n
        delays.append(line.delay / rate)
    return np.concatenate(out) if out else np.zeros(0, np.float32), np.asarray(delays)


def mouth_signal(points: list) -> np.ndarray:
    """Inner-lip gap / IOD per frame from (478, 3) landmarks (None = not found,
    filled by interpolation)."""
    from models.geometry import expression

    vals = np.array([np.nan if p is None else expression(p).mouth_open for p in points], dtype=np.float64)
    ok = ~np.isnan(vals)
    if ok.sum() < 10:
        raise AVError("too few frames with a face to measure the mouth")
    idx = np.arange(len(vals))
    return np.interp(idx, idx[ok], vals[ok])


def clip_mouth(source: str | Path) -> np.ndarray:
    """The mouth signal of every frame of a clip (Face Mesh in tracking mode): the
    clip's own mouth, to measure its natural mouth-to-voice lag from, whatever the live
    run later drops or repeats."""
    from models.landmarks import FaceMeshDetector
    from models.video import frames

    with FaceMeshDetector(tracking=True) as det:
        return mouth_signal([None if (lm := det.detect(img)) is None else lm.pixels() for img in frames(source)])


def output_mouth(crops: list) -> np.ndarray:
    """The mouth signal of what left, one generated face per output frame (None: the
    last one was repeated)."""
    from models.landmarks import FaceMeshDetector

    pts, last = [], None
    with FaceMeshDetector(tracking=False) as det:
        for crop in crops:
            last = crop if crop is not None else last
            face = last
            # Face Mesh finds small faces poorly: look at small crops at 256 px (the mouth ratio is scale-free).
            if face is not None and face.shape[0] < 256:
                face = cv2.resize(face, (256 * face.shape[1] // face.shape[0], 256), interpolation=cv2.INTER_CUBIC)
            lm = det.detect(face) if face is not None else None
            pts.append(None if lm is None else lm.pixels())
    return mouth_signal(pts)


def av_bench(model_dir: str | Path, source: str | Path, settings, *, log=print) -> dict:
    """Run the clip through live at real-time pace and measure the A/V offset.
    ``settings``: the session's ``LiveSettings``."""
    import time

    from live.session import RunOptions, SourceChoice, open_source, run_session
    from live.sinks import NullSink
    from models.config import CaptureConfig

    audio = read_audio(source)
    if np.percentile(envelope(audio, RATE)[1], 95) < -60:
        raise AVError(f"the audio track of {source} is silent: bench --av needs a clip where someone talks")
    src, _ = open_source(SourceChoice("file", file=str(source), realtime=True), CaptureConfig())
    fps = src.fps
    rows: list = []

    def observe(frame, result) -> None:
        rows.append((frame.index, frame.t_capture, time.monotonic(), None if result.crop is None else result.crop.copy()))

    report = run_session(model_dir, src, [NullSink()], settings, RunOptions(threaded=True), log=log, observer=observe)
    index, t_cap, t_sent = (np.array([r[k] for r in rows]) for k in range(3))
    t0 = float(np.median(t_cap - index / fps))  # wall time of the clip's start
    mouth_in = clip_mouth(source)
    latencies = t_sent - t_cap
    delayed, delays = delayed_audio(audio, RATE, index / fps, latencies, max_delay_s=settings.audio.max_delay_ms / 1000,
                                    offset_s=settings.audio.offset_ms / 1000)
    lag_in = lag(np.arange(len(mouth_in)) / fps, mouth_in, *envelope(audio, RATE))
    lag_out = lag(t_sent - t0, output_mouth([r[3] for r in rows]), *envelope(delayed, RATE), max_lag=MAX_OFFSET_S,
                  around=lag_in, min_corr=MIN_CORR_OUTPUT)
    report["av"] = {
        "offset_ms": round(1000 * (lag_out - lag_in), 2),
        "lag_in_ms": round(1000 * lag_in, 2),
        "lag_out_ms": round(1000 * lag_out, 2),
        "expected_offset_ms": round(1000 * float(np.mean(delays - latencies)), 2),
        "audio_delay_ms_p50": round(1000 * float(np.median(delays)), 2),
        "frame_ms": round(1000 / fps, 2),
        "method": "cross-correlation of output mouth opening (Face Mesh on generated faces) with the delayed audio's "
                  "loudness, minus the same lag measured on every frame of the input clip; positive = audio late",
    }
    return report


def file_av_offset(source: str | Path, rendered: str | Path, *, fps: float) -> dict:
    """The A/V offset a render added, measured as ``bench --av`` measures it: the lag
    of the rendered file's audio loudness behind its faces' mouth opening (Face Mesh on
    every frame of the file), minus the same lag in the source clip. Positive = audio
    late. Every frame of a render is the driver frame with the same index, so frame
    ``i`` plays at ``i / fps`` in both."""
    from models.landmarks import FaceMeshDetector
    from models.video import frames

    audio_in, audio_out = read_audio(source), read_audio(rendered)
    mouth_in = clip_mouth(source)
    with FaceMeshDetector(tracking=True) as det:
        mouth_out = mouth_signal([None if (lm := det.detect(img)) is None else lm.pixels() for img in frames(rendered)])
    lag_in = lag(np.arange(len(mouth_in)) / fps, mouth_in, *envelope(audio_in, RATE))
    lag_out = lag(np.arange(len(mouth_out)) / fps, mouth_out, *envelope(audio_out, RATE), max_lag=MAX_OFFSET_S,
                  around=lag_in, min_corr=MIN_CORR_OUTPUT)
    return {"offset_ms": round(1000 * (lag_out - lag_in), 2), "lag_in_ms": round(1000 * lag_in, 2),
            "lag_out_ms": round(1000 * lag_out, 2), "frame_ms": round(1000 / fps, 2),
            "audio_s": round(len(audio_out) / RATE, 3), "frames": len(mouth_out)}
