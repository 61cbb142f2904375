"""Assembling a live session from settings: the one place where real devices are
built (``reenact live``, ``reenact bench`` and the demo call in here). Every part is
also constructible on its own, which is how the tests build sessions with fakes."""
from __future__ import annotations

import dataclasses

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2

from live.capture import SyncCapture, ThreadedCapture
from live.controls import KEYS, Controls
from live.engines import choose_model_dir, create_engine, nvidia_driver_present
from live.fitting import choose_start, describe, time_rungs
from live.loop import LiveLoop
from live.output import Mode, OutputStage
from live.pipeline import Pipeline
from live.replace import SwapPipeline
from live.sinks import FanOut, RecorderSink, SinkError, VirtualCameraSink, WindowSink
from live.sources import DRIVER_SHAPE, FrameSource, PuppetSource, VideoFileSource, WebcamSource
from live.trust import Badge, Watermarker
from models.artifact import LIGHT_RUNG, ModelDir, SwapModelDir, load_model_dir, open_model
from models.config import AudioConfig, CaptureConfig, LandmarksConfig, LiveConfig, OutputConfig
from models.files import atomic_write_text
from models.landmarks import FaceCropTracker, FaceMeshDetector
from models.retarget import GazeResponse


@dataclass
class SourceChoice:
    kind: str  # camera | file | puppet
    camera: str = "0"
    file: str = ""
    realtime: bool = True
    seconds: float | None = None  # puppet length
    loop: bool = False  # replay a file endlessly (soak tests)


def open_source(choice: SourceChoice, capture: CaptureConfig) -> tuple[FrameSource, Callable[[], FrameSource] | None]:
    """(source, reopen) — reopen rebuilds a camera after it was lost; None for files."""
    c = capture
    if choice.kind == "camera":
        def make() -> FrameSource:
            return WebcamSource(choice.camera, width=c.width, height=c.height, fps=c.fps, mjpg=c.mjpg)

        return make(), make
    if choice.kind == "file":
        return VideoFileSource(choice.file, realtime=choice.realtime, loop=choice.loop), None
    frames = None if choice.seconds is None else int(choice.seconds * c.fps)
    return PuppetSource(seed=c.puppet_seed, shape=DRIVER_SHAPE, size=(640, 480), fps=c.fps, frames=frames, realtime=choice.realtime,
                       gaze=1.0), None


def open_sinks(output: OutputConfig, fps: float, *, virtual_camera: bool, window: bool, record: str,
               log: Callable[[str], None], allow_none: bool = False) -> list:
    """The sinks asked for. A virtual camera that cannot open is reported with its
    fix; the session carries on with the other sinks, and fails only if none is left
    (unless ``allow_none``: the control panel shows the output, and can start the
    virtual camera later)."""
    size = (output.width, output.height)
    sinks, problems = [], []
    openers = [(virtual_camera, lambda: VirtualCameraSink(size=size, fps=fps, device=output.device, backend=output.backend)),
               (window, lambda: WindowSink(size=size))]
    for wanted, make in openers:
        if not wanted:
            continue
        try:
            sinks.append(make())
            log(f"{sinks[-1].name}: {getattr(sinks[-1], 'device', 'open')}")
        except SinkError as e:
            problems.append(e)
            log(e.line())
    if record:
        sinks.append(RecorderSink(record, size=size, fps=fps))
        log(f"recording to {record}")
    if not sinks and not allow_none:
        if not problems:
            raise SinkError("no output chosen: keep the virtual camera, or add --window or --record FILE.mp4")
        raise SinkError("no output could be opened: " + "; ".join(str(e) for e in problems), fix=problems[0].fix)
    return sinks


@dataclass(frozen=True)
class LiveSettings:
    """The sections of the settings a live session uses (and nothing else)."""

    live: LiveConfig
    landmarks: LandmarksConfig
    output: OutputConfig
    audio: AudioConfig

    @staticmethod
    def of(cfg) -> "LiveSettings":
        return LiveSettings(cfg.live, cfg.landmarks, cfg.output, cfg.audio)


@dataclass(frozen=True)
class RunOptions:
    """How this run goes, beyond the settings: what the command line asked for."""

    threaded: bool = True  # capture on its own thread, newest frame wins (real time); False: every frame, in order
    max_frames: int | None = None
    json_path: str | Path | None = None
    mode: Mode = Mode.OUTPUT
    gain: float = 1.0
    paused: bool = False
    fidelity_every: int = 0  # > 0: Face Mesh on every n-th generated face after the run (bench)
    degrade: bool = True  # False: flat out, every frame generated (capacity)


def run_session(model_dir: str | Path, source: FrameSource, sinks: list, settings: LiveSettings, run: RunOptions = RunOptions(), *,
                reopen: Callable[[], FrameSource] | None = None, log: Callable[[str], None] = print,
                observer: Callable | None = None, on_controls: Callable[[Controls], None] | None = None) -> dict:
    """Run one live session to its end (source ended, max_frames, Ctrl-C or 'q') and
    return its report. Every part is closed on the way out, whatever happens.

    ``fidelity_every`` > 0 keeps every n-th generated face and, after the run (outside
    the timings), runs Face Mesh on it against the landmarks its sketch was drawn
    from: the report's ``fidelity`` says how faithfully the output follows the driver."""
    model_dir, why = choose_model_dir(model_dir, engine=settings.live.engine, tier=settings.live.model_tier, gpu=nvidia_driver_present())
    model = open_model(model_dir)
    log(f"model: {model_dir} ({why}); " + ("replacement: the target's face on your own head" if model.kind == "swap"
                                          else "re-enactment: the target's head in the target's scene"))
    kept: list = []
    with contextlib.ExitStack() as stack:
        loop, controls, audio = _assemble(stack, model, source, sinks, settings, run, reopen, log)
        loop.observer = _observer(model, run.fidelity_every, kept, observer)
        if on_controls is not None:
            on_controls(controls)
        report = loop.run(max_frames=run.max_frames)
        if audio is not None:
            report["audio"] = {**audio.stats.as_dict(), "delay_ms": round(1000 * audio.line.delay / audio.line.samplerate, 2),
                               "device_latency_ms": round(1000 * audio.device_latency_s, 2)}
    report["model"] = str(Path(model_dir))
    report["model_id"] = model.model_id
    report["model_kind"] = model.kind
    if kept:
        report["fidelity"] = output_fidelity(kept)
    if run.json_path:
        Path(run.json_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.json_path, json.dumps(report, indent=1))
    return report


def _assemble(stack: contextlib.ExitStack, model: ModelDir, source: FrameSource, sinks: list, settings: LiveSettings,
              run: RunOptions, reopen, log) -> tuple[LiveLoop, Controls, object]:
    """Build the session's parts, each registered with ``stack`` to be closed."""
    lv, out = settings.live, settings.output
    stack.callback(source.close)  # also when a part below fails to start (closing twice is harmless)
    if lv.opencv_threads:
        cv2.setNumThreads(lv.opencv_threads)  # on few cores, OpenCV's pool competes with ONNX Runtime's
    fan = FanOut(sinks, log)
    stack.callback(fan.close)
    pipeline = open_model_pipeline(stack, model, lv, settings.landmarks, (out.width, out.height), log)
    engine = pipeline.engine
    output = OutputStage((out.width, out.height), badge=make_badge(out, log), watermark=make_watermark(model, out, log),
                         mode=run.mode, clock=time.perf_counter)
    audio = _start_audio(settings.audio, log) if settings.audio.enabled else None
    if audio is not None:
        stack.callback(audio.close)
    # Fit the machine before the capture thread starts: frames read while the rungs are
    # timed would only be overwritten (dropped) before the loop runs.
    fitted = _fit_machine(pipeline, getattr(source, "size", (out.width, out.height)), lv.budget_ms, log) if run.degrade else None
    capture = ThreadedCapture(source, reopen=reopen, log=log) if run.threaded else SyncCapture(source)
    stack.callback(capture.close)
    loop = LiveLoop(capture, pipeline, output, fan, budget_ms=lv.budget_ms, fps=getattr(source, "fps", 30.0),
                    clock=time.monotonic, log=log, engine_name=engine.name, pipelined=lv.pipelined, degrade=run.degrade)
    loop.paused = run.paused
    if fitted is not None:
        _start_on(loop, *fitted)
    controls = Controls(loop, pipeline, output, log=log)
    controls.audio_offset_ms, controls.badge_position = settings.audio.offset_ms, out.badge_position
    controls.rebadge = lambda position: make_badge(dataclasses.replace(out, badge_position=position), log)
    if isinstance(source, WebcamSource) and isinstance(capture, ThreadedCapture):  # another camera, at the same size and rate
        w, h = source.size
        controls.switch_camera = lambda name: capture.switch(lambda: WebcamSource(name, width=w, height=h, fps=source.fps))
    if run.gain != 1.0:
        controls.set_gain(run.gain)
    for sink in sinks:
        if isinstance(sink, WindowSink):
            sink.on_key, sink.overlay = controls.handle_key, controls.overlay_lines
    if audio is not None:
        loop.latency_listener = lambda p50_s: setattr(audio.controller, "video_latency_s", p50_s)
        controls.audio_stats, controls.audio_controller, controls.audio_line = audio.stats, audio.controller, audio.line
    h, w, _ = model.input_shape
    log(f"live: engine {engine.name}, model {model.kind} {w}x{h}, budget {lv.budget_ms:g} ms; "
        "keys in the window: " + ", ".join(f"{k} {v}" for k, v in KEYS.items()))
    return loop, controls, audio


def _fit_machine(pipeline: Pipeline, frame_size: tuple[int, int], budget_ms: float,
                 log: Callable[[str], None]) -> tuple[dict[str, float], str]:
    """(the generator's milliseconds per rung, the rung to start on): each rung timed
    here, the best one whose whole frame fits the budget chosen, and both logged."""
    frame_ms, generator_ms = time_rungs(pipeline, tuple(frame_size))
    rung, why = choose_start(frame_ms, budget_ms)
    log(f"this machine: {describe(frame_ms)} per frame; starting on {rung}: {why}")
    return generator_ms, rung


def _start_on(loop: LiveLoop, generator_ms: dict[str, float], rung: str) -> None:
    """Give the loop's degrader each rung's generator time (what it then keeps up to
    date from the frames it generates) and its starting rung."""
    loop.degrader.generator_s = {name: ms / 1000 for name, ms in generator_ms.items()}
    if rung == "light":
        loop.degrader.level = loop.degrader.levels.index("light")


def open_pipeline(stack: contextlib.ExitStack, model: ModelDir, live: LiveConfig, landmarks: LandmarksConfig,
                  out_size: tuple[int, int], log: Callable[[str], None], *, rungs: bool = True) -> Pipeline:
    """The model's engine (and its lighter rung's, when it has one and ``rungs``), a
    Face Mesh detector and the pipeline over them, all registered with ``stack``."""
    engine = create_engine(model, live.engine, log=log, cpu_threads=live.cpu_threads)
    stack.callback(engine.close)
    light = light_rung(model) if rungs else None
    light_engine = None
    if light is not None:
        light_engine = create_engine(light, live.engine, log=log, cpu_threads=live.cpu_threads)
        stack.callback(light_engine.close)
    gates = dict(min_detection_confidence=landmarks.min_detection_confidence, min_presence=landmarks.min_presence)
    detector = stack.enter_context(FaceCropTracker(side=landmarks.crop_size, **gates) if landmarks.crop else FaceMeshDetector(tracking=True, **gates))
    return Pipeline(model, engine, detector, live=live, landmarks=landmarks, out_size=out_size, clock=time.perf_counter,
                    light_engine=light_engine,
                    light_response=GazeResponse.from_dict(light.meta.get("gaze_response")) if light_engine is not None else None)


def open_model_pipeline(stack: contextlib.ExitStack, model: ModelDir | SwapModelDir, live: LiveConfig, landmarks: LandmarksConfig,
                        out_size: tuple[int, int], log: Callable[[str], None]) -> Pipeline | SwapPipeline:
    """The pipeline of either kind of model: re-enactment's (with its lighter rung) or replacement's."""
    opener = open_swap_pipeline if model.kind == "swap" else open_pipeline
    return opener(stack, model, live, landmarks, out_size, log)


def open_swap_pipeline(stack: contextlib.ExitStack, model: SwapModelDir, live: LiveConfig, landmarks: LandmarksConfig,
                       out_size: tuple[int, int], log: Callable[[str], None]) -> SwapPipeline:
    """A replacement model's engine, a Face Mesh detector and the swap pipeline over them,
    all registered with ``stack``. A swap model has one rung."""
    engine = create_engine(model, live.engine, log=log, cpu_threads=live.cpu_threads)
    stack.callback(engine.close)
    gates = dict(min_detection_confidence=landmarks.min_detection_confidence, min_presence=landmarks.min_presence)
    detector = stack.enter_context(FaceCropTracker(side=landmarks.crop_size, **gates) if landmarks.crop else FaceMeshDetector(tracking=True, **gates))
    return SwapPipeline(model, engine, detector, landmarks=landmarks, out_size=out_size, clock=time.perf_counter)


def light_rung(model: ModelDir) -> ModelDir | None:
    """The model's lighter rung (MODEL/light: a smaller generator with the same
    contract), or None. One that does not keep the contract is refused by name."""
    path = model.path / LIGHT_RUNG
    if not (path / "model.json").is_file():
        return None
    light = load_model_dir(path)
    model.contract.require_same(light.contract, f"lighter rung {path}")
    return light


def _observer(model: ModelDir, fidelity_every: int, kept: list, observer: Callable | None) -> Callable | None:
    """The per-frame callback: keep every n-th generated face for the fidelity check,
    then call the caller's own observer. (A replacement model's faces have no sketch
    to be faithful to: not measured.)"""
    if fidelity_every <= 0 or model.kind == "swap":
        return observer

    def observe(frame, result) -> None:
        if result.crop is not None and frame.index % fidelity_every == 0:
            kept.append((result.crop.copy(), model.contract.framing.apply(result.target_px)))
        if observer is not None:
            observer(frame, result)

    return observe


def make_badge(output: OutputConfig, log: Callable[[str], None]) -> Badge | None:
    """The disclosure badge from [output]; switching it off is allowed but logged."""
    o = output
    if not o.badge:
        log("disclosure badge OFF (output.badge = false): viewers will not be told this face is AI-generated")
        return None
    return Badge((o.width, o.height), text=o.badge_text, position=o.badge_position, height=o.badge_size, opacity=o.badge_opacity)


def make_watermark(model: ModelDir, output: OutputConfig, log: Callable[[str], None]) -> Watermarker | None:
    """The invisible watermark carrying the model's ID (`reenact verify` reads it)."""
    if not output.watermark:
        log("invisible watermark OFF (output.watermark = false)")
        return None
    return Watermarker(model.model_id, (output.width, output.height))


def _start_audio(audio: AudioConfig, log: Callable[[str], None]):
    """The lip-sync audio path, or None (logged) when it cannot start: audio problems
    never stop the video."""
    from live.audio import AudioBridge, AudioError, DelayController

    a = audio
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

    from models.fidelity import landmark_fidelity

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
