"""The live side's subcommands: ``live``, ``bench``, ``verify``, ``doctor``, ``devices``
and ``puppet``. The only place on this side where real devices are chosen; everything
below receives its own settings sections and ready-made objects.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from live.output import Mode
from models.config import Config
from models.errors import EXIT_INTERRUPTED, EXIT_NO_WATERMARK, EXIT_OK, UsageError
from models.files import atomic_write_text
from models.terminal import interactive


def register(sub, common: argparse.ArgumentParser) -> None:
    lv = sub.add_parser("live", parents=[common], help="drive the target's face from a camera into a virtual camera")
    lv.add_argument("--model", metavar="MODEL_DIR", help="the target's model (default: the built-in character, a made-up face)")
    lv.add_argument("--source", help="camera, puppet, or a video file (default: capture.source)")
    lv.add_argument("--camera", help="camera index or name (default: capture.camera)")
    lv.add_argument("--window", action="store_true", help="also show a preview window with stats")
    lv.add_argument("--no-virtual-camera", action="store_true", help="do not open the virtual camera")
    lv.add_argument("--record", metavar="FILE.mp4", help="also record the output")
    lv.add_argument("--view", choices=[m.value for m in Mode], default=Mode.OUTPUT.value,
                    help="what to send: the output, the camera (passthrough), the sketch, or all side by side")
    lv.add_argument("--gain", type=float, default=1.0, help="expression gain (also +/- in the window)")
    lv.add_argument("--paused", action="store_true", help="start paused (p to go)")
    lv.add_argument("--frames", type=int, help="stop after this many frames")
    lv.add_argument("--seconds", type=float, help="length of the puppet source")
    lv.add_argument("--json", default="runs/live/latency.json", metavar="FILE", help="latency report written on exit")
    lv.add_argument("--panel", action="store_true", help="serve the control panel in the browser (address printed at start; [panel])")
    lv.set_defaults(func=cmd_live)

    b = sub.add_parser("bench", parents=[common], help="run the live pipeline on a video into a null sink and report latency")
    b.add_argument("--model", required=True, metavar="MODEL_DIR")
    b.add_argument("--source", required=True, metavar="VIDEO")
    b.add_argument("--flat-out", action="store_true", help="as fast as possible instead of at the video's frame rate")
    b.add_argument("--json", metavar="OUT", help="write the report (keys documented in the README)")
    b.add_argument("--record", metavar="FILE.mp4", help="also write the output video")
    b.add_argument("--loop", type=float, metavar="SECONDS", help="replay the clip for this long (soak test): per-minute p50/p99 and RSS")
    b.add_argument("--av", action="store_true", help="also measure audio/video sync (the clip must have sound)")
    b.add_argument("--fidelity-every", type=int, default=3, metavar="N",
                   help="check every N-th output with Face Mesh after the run (0: off)")
    b.add_argument("--panel", action="store_true", help="also serve the control panel (to measure what it costs the loop)")
    b.set_defaults(func=cmd_bench)

    rd = sub.add_parser("render", parents=[common], help="re-enact a recorded driver clip into a video file, with its sound")
    rd.add_argument("driver", metavar="DRIVER_VIDEO")
    rd.add_argument("--model", metavar="MODEL_DIR", help="the target's model (default: the built-in character)")
    rd.add_argument("--out", required=True, metavar="OUT.mp4", help="the video to write (H.264, the driver's audio muxed in)")
    rd.add_argument("--side-by-side", action="store_true", help="driver | sketch | output instead of the output alone")
    rd.add_argument("--json", metavar="FILE", help="also write the run's report")
    rd.set_defaults(func=cmd_render)

    vf = sub.add_parser("verify", parents=[common], help="does a video carry reenact's watermark, and which model made it?")
    vf.add_argument("video", metavar="VIDEO")
    vf.add_argument("--window", type=int, default=120, help="also read stretches of this many frames")
    vf.add_argument("--json", metavar="OUT")
    vf.set_defaults(func=cmd_verify)

    dr = sub.add_parser("doctor", parents=[common], help="check this machine: packages, GPU, camera, virtual camera, audio; print fixes")
    dr.add_argument("--model", metavar="MODEL_DIR", help="also say which model directory live would load from it, and why")
    dr.set_defaults(func=cmd_doctor)

    dv = sub.add_parser("devices", parents=[common], help="list cameras, audio inputs/outputs and virtual cameras")
    dv.set_defaults(func=cmd_devices)

    pp = sub.add_parser("puppet", parents=[common], help="render a clip of the synthetic puppet face")
    pp.add_argument("--out", required=True, metavar="FILE.mp4")
    pp.add_argument("--face", choices=("target", "driver"), default="target")
    pp.add_argument("--seconds", type=float, default=10.0)
    pp.add_argument("--seed", type=int, default=1)
    pp.add_argument("--size", type=int, default=480)
    pp.add_argument("--fps", type=float, default=30.0)
    pp.set_defaults(func=cmd_puppet)


def model_or_character(path: str | None) -> str:
    """``--model``, or the built-in character that ships in the package when none is given."""
    from models.artifact import builtin_character

    if path:
        return path
    character = builtin_character()
    if not (character / "model.json").is_file():
        raise UsageError(f"no --model given and the built-in character is missing ({character}); reinstall reenact, "
                         "or train a model: reenact train DATASET --out MODEL_DIR")
    print(f"no --model: driving the built-in character, a made-up face ({character})")
    return str(character)


def check_model(path: str, cfg: Config) -> None:
    """Open (without hashing every file) the model directory live would load: a missing,
    misnamed or damaged model is reported before cameras and outputs are opened."""
    from live.engines import choose_model_dir, nvidia_driver_present
    from models.artifact import open_model

    chosen, _ = choose_model_dir(path, engine=cfg.live.engine, tier=cfg.live.model_tier, gpu=nvidia_driver_present())
    open_model(chosen, verify=False)


def _source_choice(args: argparse.Namespace, cfg: Config):
    from live.session import SourceChoice

    kind = args.source or cfg.capture.source
    if kind not in ("camera", "puppet") and not Path(kind).suffix:
        raise UsageError(f"--source {kind!r}: give camera, puppet or a video file path")
    if kind in ("camera", "puppet"):
        return SourceChoice(kind, camera=args.camera or cfg.capture.camera, realtime=True, seconds=args.seconds)
    return SourceChoice("file", file=kind, realtime=cfg.capture.realtime)


def terminal_keys(controls) -> None:
    """The window's keys typed at the terminal, one per line: for headless virtual-camera use."""
    def read_keys() -> None:
        for line in sys.stdin:
            if line.strip():
                controls.handle_key(line.strip()[0])

    threading.Thread(target=read_keys, name="terminal-keys", daemon=True).start()
    print("terminal controls: type n, m, +, -, p or q and press Enter")


def cmd_live(args: argparse.Namespace, cfg: Config) -> int:
    from live.session import LiveSettings, RunOptions, open_sinks, open_source, run_session, summary_line

    model = model_or_character(args.model)
    check_model(model, cfg)  # a wrong --model is named before any device is opened
    panel = _open_panel(args, cfg, model) if args.panel else None  # a taken port is named before any device opens
    try:
        source, reopen = open_source(_source_choice(args, cfg), cfg.capture)
        fps = getattr(source, "fps", cfg.capture.fps)
        if panel is not None:
            panel.fps = fps
        sinks = open_sinks(cfg.output, fps, log=print, allow_none=panel is not None,
                           virtual_camera=cfg.output.virtual_camera and not args.no_virtual_camera,
                           window=cfg.output.window or args.window, record=args.record or cfg.output.record)
        run = RunOptions(threaded=True, max_frames=args.frames, json_path=args.json, mode=Mode(args.view), gain=args.gain, paused=args.paused)

        report = run_session(model, source, sinks + ([panel.tap] if panel else []), LiveSettings.of(cfg), run, reopen=reopen,
                             **_panel_hooks(panel, on_controls=terminal_keys if interactive() else None))
    finally:
        if panel is not None:
            panel.close()
    print(summary_line(report))
    print(f"latency report: {args.json}")
    return EXIT_INTERRUPTED if report.get("interrupted") else EXIT_OK


def _panel_hooks(panel, *, on_controls=None, observer=None) -> dict:
    """run_session's ``on_controls`` and ``observer``, with the panel's added when there is one."""
    if panel is None:
        return {"on_controls": on_controls, "observer": observer}

    def controls_ready(controls) -> None:
        if on_controls is not None:
            on_controls(controls)
        panel.attach(controls)

    def observe(frame, result) -> None:
        panel.tap.observe(frame, result)
        if observer is not None:
            observer(frame, result)

    return {"on_controls": controls_ready, "observer": observe}


def _open_panel(args: argparse.Namespace, cfg: Config, model: str):
    from live.devices import audio_devices, video_devices
    from live.panel import Panel

    cameras = [{"index": d.index, "name": d.name} for d in video_devices() if d.kind == "camera"]
    microphones = [{"index": d.index, "name": d.name} for d in audio_devices()[0] if d.kind == "audio-in"]
    info = {"cameras": cameras, "microphones": microphones,"model": str(model), "source": args.source or cfg.capture.source, "camera": getattr(args, "camera", None) or cfg.capture.camera,
            "microphone": cfg.audio.input or "default", "audio_enabled": cfg.audio.enabled}
    from live.sinks import VirtualCameraSink

    out = cfg.output
    panel = Panel(cfg.panel, args.panel_settings, output_size=(out.width, out.height), fps=cfg.capture.fps, info=info,
                  log=print, open_virtual_camera=lambda fps: VirtualCameraSink(size=(out.width, out.height), fps=fps,
                                                                               device=out.device, backend=out.backend))
    try:
        panel.serve()  # before the model loads: the server's start-up never overlaps captured frames
    except BaseException:
        panel.close()
        raise
    return panel


def cmd_bench(args: argparse.Namespace, cfg: Config) -> int:
    from live.session import LiveSettings, RunOptions, SoakRecorder, SourceChoice, open_source, run_session, summary_line
    from live.sinks import NullSink, RecorderSink

    check_model(args.model, cfg)
    if args.av:
        return _bench_av(args, cfg)
    panel = _open_panel(args, cfg, args.model) if args.panel else None
    try:
        source, _ = open_source(SourceChoice("file", file=args.source, realtime=not args.flat_out, loop=args.loop is not None),
                                cfg.capture)
        sinks = [NullSink()]
        if args.record:
            sinks.append(RecorderSink(args.record, size=(cfg.output.width, cfg.output.height), fps=source.fps))
        soak = SoakRecorder() if args.loop is not None else None
        run = RunOptions(threaded=not args.flat_out, json_path=None, fidelity_every=0 if soak else args.fidelity_every,
                         max_frames=int(args.loop * source.fps) if soak else None,
                         degrade=not args.flat_out)  # flat out measures capacity: every frame generated, none repeated
        report = run_session(args.model, source, sinks + ([panel.tap] if panel else []), LiveSettings.of(cfg), run,
                             **_panel_hooks(panel, observer=soak))
    finally:
        if panel is not None:
            panel.close()
    if soak is not None:
        report["soak"] = soak.report()
    if panel is not None:  # what the page was sent: a panel nobody watched costs nothing, so say whether one did
        report["panel_frames_sent"] = dict(panel.tap.sent)
    report.update(pacing="flat-out" if args.flat_out else "real-time", source=str(args.source))
    _write_report(args.json, report)
    print(summary_line(report))
    return EXIT_INTERRUPTED if report.get("interrupted") else EXIT_OK


def cmd_render(args: argparse.Namespace, cfg: Config) -> int:
    from live.render import render_video
    from live.session import LiveSettings, summary_line

    model = model_or_character(args.model)
    check_model(model, cfg)
    report = render_video(model, args.driver, args.out, LiveSettings.of(cfg), side_by_side=args.side_by_side,
                          progress=not args.quiet)
    _write_report(args.json, report)
    if report.get("interrupted"):
        print(f"render interrupted: {args.out} was not written")
        return EXIT_INTERRUPTED
    print(summary_line(report))
    print(f"rendered {report['frames_written']} frames to {args.out} ({report['size'][0]}x{report['size'][1]}, "
          + ("with the driver's audio)" if report["audio"] else "no audio: the driver has none)"))
    return EXIT_OK


def _bench_av(args: argparse.Namespace, cfg: Config) -> int:
    from live.avsync import av_bench
    from live.session import LiveSettings, summary_line

    if args.flat_out:
        raise UsageError("--av measures sync at real-time pace; drop --flat-out")
    report = av_bench(args.model, args.source, LiveSettings.of(cfg))
    report.update(pacing="real-time", source=str(args.source))
    _write_report(args.json, report)
    av = report["av"]
    print(summary_line(report))
    print(f"A/V offset {av['offset_ms']:+.1f} ms (audio delayed {av['audio_delay_ms_p50']:.1f} ms p50; "
          f"one frame = {av['frame_ms']:.1f} ms; positive = audio late)")
    return EXIT_OK


def _write_report(path: str | None, report: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(report, indent=1))
        print(f"report: {path}")


def cmd_verify(args: argparse.Namespace, cfg: Config) -> int:
    from live.trust import PERIOD, read_video

    whole, windows = read_video(args.video, window=args.window)
    if whole.present:
        print(f"{args.video}: reenact watermark FOUND, model ID {whole.model_id} (confidence z = {whole.confidence:.1f}, "
              f"weakest ID bit z = {whole.bit_margin:.1f}, {whole.frames} frames)")
    else:
        print(f"{args.video}: no reenact watermark found (sync z = {whole.confidence:.1f}, weakest ID bit z = "
              f"{whole.bit_margin:.1f}; a mark needs both above 6 and 1.5)")
    if windows:
        found = [w for w in windows if w.present]
        ids = sorted({w.model_id for w in found})
        print(f"  {len(found)} of {len(windows)} stretches of {args.window} frames carry it" + (f" (IDs: {', '.join(ids)})" if ids else ""))
    if args.json:
        atomic_write_text(args.json, json.dumps({"video": str(args.video), "whole": whole.as_dict(),
                                                 "windows": [w.as_dict() for w in windows]}, indent=1))
    if whole.frames < 2 * PERIOD:
        print(f"  note: {whole.frames} frames is short; a few seconds of video give a reliable reading")
    return EXIT_OK if whole.present else EXIT_NO_WATERMARK


def cmd_doctor(args: argparse.Namespace, cfg: Config) -> int:
    from live.doctor import Probe, format_report, run_checks

    probe = Probe.collect()
    checks = run_checks(probe)
    print(format_report(checks))
    if args.model:
        print("\n" + model_fit(args.model, cfg, gpu=probe.nvidia_driver))
    broken = [c for c in checks if c.ok is False and c.area in ("python", "packages", "opencv")]
    return 1 if broken else EXIT_OK  # missing hardware is reported, not an error of the install


def model_fit(path: str, cfg: Config, *, gpu: bool) -> str:
    """Which model directory live would load from ``path``, and how long a frame takes
    here with each of its rungs (the figures live starts from)."""
    import contextlib

    from live.engines import choose_model_dir
    from live.fitting import choose_start, describe, time_rungs
    from live.session import open_model_pipeline
    from models.artifact import open_model

    chosen, why = choose_model_dir(path, engine=cfg.live.engine, tier=cfg.live.model_tier, gpu=gpu)
    model = open_model(chosen)
    lines = [f"model: live --model {path} will load {chosen} ({why}): "
             + ("a replacement (face swap) model" if model.kind == "swap" else "a re-enactment model")]
    with contextlib.ExitStack() as stack:
        pipe = open_model_pipeline(stack, model, cfg.live, cfg.landmarks, (cfg.output.width, cfg.output.height), lambda s: None)
        size = (cfg.capture.width, cfg.capture.height)
        timings, _ = time_rungs(pipe, size)
        rung, reason = choose_start(timings, cfg.live.budget_ms)
        lines.append(f"on this machine, a {size[0]}x{size[1]} frame takes: {describe(timings)}; live would start on {rung}: {reason}")
    return "\n".join(lines)


def cmd_devices(args: argparse.Namespace, cfg: Config) -> int:
    from live.devices import report

    print(report())
    return EXIT_OK


def cmd_puppet(args: argparse.Namespace, cfg: Config) -> int:
    from models.puppet import DRIVER_SHAPE, TARGET_SHAPE, write_puppet_clip

    shape = TARGET_SHAPE if args.face == "target" else DRIVER_SHAPE
    n = write_puppet_clip(args.out, seconds=args.seconds, seed=args.seed, shape=shape, size=args.size, fps=args.fps)
    print(f"wrote {args.out}: {n} frames of the synthetic {args.face} puppet")
    return EXIT_OK
