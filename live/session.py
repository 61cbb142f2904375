"""Assembling a live session from settings: the one place where real devices are
built (``reenact live``, ``reenact bench`` and the demo call in here). Every part is
also constructible on its own, which is how the tests build sessions with fakes."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from live.capture import SyncCapture, ThreadedCapture
from live.engines import choose_model_dir, create_engine, nvidia_driver_present
from live.loop import LiveLoop
from live.pipeline import Mode, Pipeline
from live.trust import Badge, Watermarker
from live.sinks import FanOut, NullSink, RecorderSink, SinkError, VirtualCameraSink, WindowSink
from live.sources import DRIVER_SHAPE, FrameSource, PuppetSource, VideoFileSource, WebcamSource
from models.artifact import load_model_dir
from models.config import Config
from models.landmarks import FaceMeshDetector


@dataclass
class SourceChoice:
    kind: str  # camera | file | puppet
    camera: str = "0"
    file: str = ""
    realtime: bool = True
    seconds: float | None = None  # puppet length
    loop: bool = False  # replay a file endlessly (soak tests)


def open_source(choice: SourceChoice, cfg: Config) -> tuple[FrameSource, Callable[[], FrameSource] | None]:
    """(source, reopen) — reopen rebuilds a camera after it was lost; None for files."""
    c = cfg.capture
    if choice.kind == "camera":
        def make() -> FrameSource:
            return WebcamSource(choice.camera, width=c.width, height=c.height, fps=c.fps, mjpg=c.mjpg)

        return make(), make
    if choice.kind == "file":
        return VideoFileSource(choice.file, realtime=choice.realtime, loop=choice.loop), None
    frames = None if choice.seconds is None else int(choice.seconds * c.fps)
    return PuppetSource(seed=c.puppet_seed, shape=DRIVER_SHAPE, size=(640, 480), fps=c.fps, frames=frames, realtime=choice.realtime), None


def open_sinks(cfg: Config, fps: float, *, virtual_camera: bool, window: bool, record: str,
               on_key: Callable[[str], None] | None, log: Callable[[str], None]) -> list:
    """The sinks asked for. A virtual camera that cannot open is reported with its
    fix; the session carries on with the other sinks, and fails only if none is left."""
    o = cfg.output
    size = (o.width, o.height)
    sinks, problems = [], []
    if virtual_camera:
        try:
            cam = VirtualCameraSink(size=size, fps=fps, device=o.device, backend=o.backend)
            log(f"virtual camera: {cam.device}")
            sinks.append(cam)
        except SinkError as e:
            problems.append(e)
            log(e.line())
    if window:
        try:
            sinks.append(WindowSink(size=size, on_key=on_key))
        except SinkError as e:
            problems.append(e)
            log(e.line())
    if record:
        sinks.append(RecorderSink(record, size=size, fps=fps))
        log(f"recording to {record}")
    if not sinks:
        if not problems:
            raise SinkError("no output chosen: keep the virtual camera, or add --window or --record FILE.mp4")
        raise SinkError("no output could be opened: " + "; ".join(str(e) for e in problems), fix=problems[0].fix)
    return sinks


def run_session(model_dir: str | Path, source: FrameSource, sinks: list, cfg: Config, *, threaded: bool,
                reopen: Callable[[], FrameSource] | None = None, max_frames: int | None = None,
                json_path: str | Path | None = None, mode: Mode = Mode.OUTPUT, gain: float = 1.0,
                log: Callable[[str], None] = print, on_loop: Callable[[LiveLoop], None] | None = None,
                fidelity_every: int = 0, observer: Callable | None = None, degrade: bool = True) -> dict:
    """Run one live session to its end (source ended, max_frames, Ctrl-C or 'q').

    ``fidelity_every`` > 0 keeps every n-th generated face and, after the run (outside
    the timings), runs Face Mesh on it against the landmarks its sketch was drawn
    from: the report's ``fidelity`` says how faithfully the output follows the driver."""
    model_dir, why = choose_model_dir(model_dir, engine=cfg.live.engine, tier=cfg.live.model_tier, gpu=nvidia_driver_present())
    log(f"model: {model_dir} ({why})")
    model = load_model_dir(model_dir)
    if cfg.live.opencv_threads:
        import cv2

        cv2.setNumThreads(cfg.live.opencv_threads)  # on few cores, OpenCV's pool competes with ONNX Runtime's
    engine = create_engine(model, cfg.live.engine, log=log, cpu_threads=cfg.live.cpu_threads)
    detector = FaceMeshDetector(tracking=True, min_detection_confidence=cfg.landmarks.min_detection_confidence,
                                min_presence=cfg.landmarks.min_presence)
    pipeline = Pipeline(model, engine, detector, live=cfg.live, landmarks=cfg.landmarks,
                        out_size=(cfg.output.width, cfg.output.height), clock=time.perf_counter, badge=make_badge(cfg, log),
                        watermark=make_watermark(model, cfg, log))
    pipeline.mode = mode
    if gain != 1.0:
        pipeline.set_gain(gain)
    audio = _start_audio(cfg, log) if cfg.audio.enabled else None
    capture = ThreadedCapture(source, reopen=reopen, log=log) if threaded else SyncCapture(source)
    fan = FanOut(sinks, log)
    kept: list = []

    def observe(frame, result) -> None:
        if fidelity_every > 0 and result.crop is not None and frame.index % fidelity_every == 0:
            kept.append((result.crop.copy(), model.contract.framing.apply(result.target_px)))
        if observer is not None:
            observer(frame, result)

    loop = LiveLoop(capture, pipeline, fan, budget_ms=cfg.live.budget_ms, fps=getattr(source, "fps", 30.0),
                    clock=time.monotonic, log=log, engine_name=engine.name,  # the clock frames are stamped with
                    observer=observe if (fidelity_every > 0 or observer is not None) else None, pipelined=cfg.live.pipelined,
                    degrade=degrade)
    for sink in sinks:
        if isinstance(sink, WindowSink):
            sink.on_key = loop.handle_key
            sink.overlay = loop.overlay_lines
    if audio is not None:
        loop.latency_listener = lambda p50_s: setattr(audio.controller, "video_latency_s", p50_s)
        loop.audio_stats = audio.stats
    if on_loop:
        on_loop(loop)
    log(f"live: engine {engine.name}, model {model.contract.sketch.width}x{model.contract.sketch.height}, "
        f"budget {cfg.live.budget_ms:g} ms; keys in the window: n recalibrate, m view, +/- gain, p pause, q quit")
    try:
        report = loop.run(max_frames=max_frames)
    except KeyboardInterrupt:
        loop._t_end = loop.clock()
        report = loop.report()
        report["interrupted"] = True
        log("interrupted")
    finally:
        if audio is not None:
            audio.close()
        capture.close()
        fan.close()
        detector.close()
        engine.close()
    report["model"] = str(Path(model_dir))
    if audio is not None:
        report["audio"] = {**audio.stats.as_dict(), "delay_ms": round(1000 * audio.line.delay / audio.line.samplerate, 2),
                           "device_latency_ms": round(1000 * audio.device_latency_s, 2)}
    if kept:
        report["fidelity"] = output_fidelity(kept)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=1))
    return report


def make_badge(cfg: Config, log: Callable[[str], None]) -> Badge | None:
    """The disclosure badge from [output]; switching it off is allowed but logged."""
    o = cfg.output
    if not o.badge:
        log("disclosure badge OFF (output.badge = false): viewers will not be told this face is AI-generated")
        return None
    return Badge((o.width, o.height), text=o.badge_text, position=o.badge_position, height=o.badge_size, opacity=o.badge_opacity)


def make_watermark(model, cfg: Config, log: Callable[[str], None]) -> Watermarker | None:
    """The invisible watermark carrying the model's ID (`reenact verify` reads it)."""
    if not cfg.output.watermark:
        log("invisible watermark OFF (output.watermark = false)")
        return None
    return Watermarker(model_id(model), (cfg.output.width, cfg.output.height))


def model_id(model) -> str:
    """8 hex digits naming a model's weights: the start of generator.pt's sha256."""
    return model.meta["files"]["generator.pt"]["sha256"][:8]


def _start_audio(cfg: Config, log: Callable[[str], None]):
    """The lip-sync audio path, or None (logged) when it cannot start: audio problems
    never stop the video."""
    from live.audio import AudioBridge, AudioError, DelayController

    a = cfg.audio
    controller = DelayController(offset_s=a.offset_ms / 1000, max_delay_s=a.max_delay_ms / 1000)
    try:
        bridge = AudioBridge(input=a.input, output=a.output, samplerate=a.samplerate, blocksize=a.blocksize, controller=controller, log=log)
        bridge.start()
    except AudioError as e:
        log(f"{e.line()}; continuing without audio")
        return None
    log(f"audio: microphone delayed to match the video (device latency {1000 * bridge.device_latency_s:.1f} ms)")
    return bridge


def output_fidelity(kept: list) -> dict:
    """Face Mesh (still-image mode) on generated faces vs the landmarks they were drawn from."""
    import numpy as np

    from training.metrics import landmark_fidelity

    with FaceMeshDetector(tracking=False) as det:
        f = landmark_fidelity(np.stack([k[0] for k in kept]), np.stack([k[1] for k in kept]), det)
    return {"frames": len(kept), **{k: round(v, 4) for k, v in f.items()}}


def rss_mb() -> float:
    """Resident memory of this process (Linux /proc; NaN elsewhere)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class SoakRecorder:
    """Per-frame end-to-end latency with its time, and RSS every ``every_s`` seconds,
    so a long run can be compared minute by minute."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.t0 = time.monotonic()
        self.samples: list = []
        self.rss: list = [(0.0, rss_mb())]
        self.every_s = every_s

    def __call__(self, frame, result) -> None:
        now = time.monotonic()
        self.samples.append((now - self.t0, now - frame.t_capture))
        if now - self.t0 - self.rss[-1][0] >= self.every_s:
            self.rss.append((now - self.t0, rss_mb()))

    def report(self) -> dict:
        import numpy as np

        t = np.array([s[0] for s in self.samples])
        e = np.array([s[1] for s in self.samples]) * 1000
        minutes = []
        for m in range(int(t[-1] // 60) + 1 if len(t) else 0):
            sel = (t >= 60 * m) & (t < 60 * (m + 1))
            if sel.sum() > 30:
                minutes.append({"minute": m + 1, "frames": int(sel.sum()), "p50": round(float(np.percentile(e[sel], 50)), 2),
                                "p99": round(float(np.percentile(e[sel], 99)), 2)})
        after_warmup = [r for r in self.rss if r[0] >= 30] or self.rss
        return {"minutes": minutes, "rss_mb": [(round(a, 1), round(b, 1)) for a, b in self.rss],
                "rss_growth_pct": round(100 * (self.rss[-1][1] / after_warmup[0][1] - 1), 2)}


def summary_line(report: dict) -> str:
    e, o = report["e2e_ms"], report["overhead_ms"]
    if not e.get("n"):
        return f"{report['frames_out']} frames out"
    return (f"{report['frames_out']} frames at {report['fps']:.1f} fps; end-to-end p50 {e['p50']:.1f} / p95 {e['p95']:.1f} / "
            f"p99 {e['p99']:.1f} ms; overhead p50 {o['p50']:.1f} ms; dropped {report['frames_dropped']}, "
            f"repeated {report['frames_repeated']}, no face {report['frames_no_face']}"
            + (f"; landmark fidelity {report['fidelity']['landmark_error_iod']:.3f} IOD, face found in "
               f"{100 * report['fidelity']['detection_rate']:.1f} % of outputs" if "fidelity" in report else ""))
