"""The ``reenact`` command. The only place where real devices and files are chosen;
everything below it receives its own config section and ready-made objects."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from models.config import PRESETS, Config, ModelConfig, load_config
from models.errors import EXIT_INTERRUPTED, EXIT_NO_WATERMARK, EXIT_OK, ReenactError, UsageError

DEFAULT_CONFIG = "config.toml"


def interactive() -> bool:
    """True when a person can answer at the terminal. False when stdin is not a
    terminal, and when it is not open at all (``0<&-``, some service managers)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed or broken stream
        return False


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    return load_config(path, args.set or [], preset=getattr(args, "preset", None))


def _consent(args: argparse.Namespace, cfg) -> "Consent":
    """From flags, else config, else (at a terminal) by asking; never assumed."""
    from training.dataset import CONSENT_STATEMENT, Consent

    if getattr(args, "consent_record", None) is not None:
        return args.consent_record
    name = args.target_name or cfg.dataset.target_name
    attested = args.consent or cfg.dataset.consent
    if (not name or not attested) and interactive():
        name = name or input("Who is the person in the target video? ").strip()
        answer = input(f"{CONSENT_STATEMENT}\nType 'yes' to attest: ").strip().lower()
        attested = answer == "yes"
    return Consent(name or "", bool(attested))


def cmd_dataset(args: argparse.Namespace) -> int:
    from training.dataset import Consent, build_dataset

    cfg = _config(args)
    m = build_dataset(args.videos, args.out, consent=_consent(args, cfg), dataset=cfg.dataset, landmarks=cfg.landmarks, sketch=cfg.sketch,
                      model=cfg.model, progress=not args.quiet)
    drops = ", ".join(f"{k} {v}" for k, v in m["dropped"].items())
    pct = 100.0 * m["frames_kept"] / max(m["frames_total"], 1)
    print(f"dataset {args.out}: kept {m['frames_kept']} of {m['frames_total']} frames ({pct:.1f} %); dropped: {drops}")
    print(f"  split: {m['split']['train']} train / {m['split']['val']} validation; framing {m['framing']['out_size'][0]}x{m['framing']['out_size'][1]}; sketch {m['sketch_hash']}")
    print(f"  coverage report: {Path(args.out) / 'coverage.png'} and coverage.json")
    for w in m["coverage_warnings"]:
        print(f"  warning: {w}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.train import train

    cfg = _config(args)
    out = args.out
    if out is None:
        if not args.teacher:
            raise UsageError("train needs --out MODEL_DIR")
        out = str(Path(args.teacher) / "cpu")  # the CPU tier lives beside its teacher; live picks it on CPU-only machines
    summary = train(args.dataset, out, model=cfg.model, cfg=cfg.train, resume=args.resume, progress=not args.quiet,
                    teacher=args.teacher, drivers=args.drivers or [])
    return 130 if summary.get("stopped") else 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.export import export

    from live.engines import CPU_TIER

    dirs = [Path(args.model_dir)] + [p for p in [Path(args.model_dir) / CPU_TIER] if (p / "model.json").is_file()]
    for d in dirs:  # the model, and its CPU tier when it has one
        export(d)
        print(f"exported {d}: generator_fp16.onnx (GPU) and generator_fp32.onnx (CPU)")
    return 0


def _source_choice(args: argparse.Namespace, cfg) -> "SourceChoice":
    from live.session import SourceChoice

    kind = args.source or cfg.capture.source
    if kind not in ("camera", "puppet") and not Path(kind).suffix:
        raise UsageError(f"--source {kind!r}: give camera, puppet or a video file path")
    if kind in ("camera", "puppet"):
        return SourceChoice(kind, camera=args.camera or cfg.capture.camera, file=cfg.capture.file, realtime=True,
                            seconds=getattr(args, "seconds", None))
    return SourceChoice("file", file=kind, realtime=not getattr(args, "flat_out", False) and cfg.capture.realtime)


def _check_model(path: str, cfg: Config) -> None:
    """Open (without hashing every file) the model directory live would load: a missing,
    misnamed or damaged model is reported before cameras and outputs are opened."""
    from live.engines import choose_model_dir, nvidia_driver_present
    from models.artifact import load_model_dir

    chosen, _ = choose_model_dir(path, engine=cfg.live.engine, tier=cfg.live.model_tier, gpu=nvidia_driver_present())
    load_model_dir(chosen, verify=False)


def cmd_live(args: argparse.Namespace) -> int:
    from live.pipeline import Mode
    from live.session import open_sinks, open_source, run_session, summary_line

    cfg = _config(args)
    _check_model(args.model, cfg)  # a wrong --model is named before any device is opened
    choice = _source_choice(args, cfg)
    source, reopen = open_source(choice, cfg)
    fps = getattr(source, "fps", cfg.capture.fps)
    sinks = open_sinks(cfg, fps, virtual_camera=cfg.output.virtual_camera and not args.no_virtual_camera,
                       window=cfg.output.window or args.window, record=args.record or cfg.output.record, on_key=None, log=print)
    def controls(loop) -> None:
        if args.paused:
            loop.paused = True
        if interactive():  # the same keys from the terminal, one per line: for headless virtual-camera use
            import threading

            def read_keys() -> None:
                for line in sys.stdin:
                    if line.strip():
                        loop.handle_key(line.strip()[0])

            threading.Thread(target=read_keys, name="terminal-keys", daemon=True).start()
            print("terminal controls: type n, m, +, -, p or q and press Enter")

    report = run_session(args.model, source, sinks, cfg, threaded=True, reopen=reopen, json_path=args.json,
                         mode=Mode(args.view), gain=args.gain, max_frames=args.frames, on_loop=controls)
    print(summary_line(report))
    print(f"latency report: {args.json}")
    return EXIT_INTERRUPTED if report.get("interrupted") else EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from live.session import SourceChoice, open_source, run_session, summary_line
    from live.sinks import NullSink, RecorderSink

    cfg = _config(args)
    _check_model(args.model, cfg)
    if args.av:
        from live.avsync import av_bench

        if args.flat_out:
            raise UsageError("--av measures sync at real-time pace; drop --flat-out")
        report = av_bench(args.model, args.source, cfg)
        report.update(pacing="real-time", source=str(args.source))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        av = report["av"]
        print(summary_line(report))
        print(f"A/V offset {av['offset_ms']:+.1f} ms (audio delayed {av['audio_delay_ms_p50']:.1f} ms p50; "
              f"one frame = {av['frame_ms']:.1f} ms; positive = audio late)")
        return 0
    choice = SourceChoice("file", file=args.source, realtime=not args.flat_out, loop=args.loop is not None)
    source, _ = open_source(choice, cfg)
    sinks = [NullSink()]
    soak = None
    if args.loop is not None:
        from live.session import SoakRecorder

        soak = SoakRecorder()
    if args.record:
        sinks.append(RecorderSink(args.record, size=(cfg.output.width, cfg.output.height), fps=source.fps))
    max_frames = int(args.loop * source.fps) if args.loop is not None else None
    report = run_session(args.model, source, sinks, cfg, threaded=not args.flat_out, json_path=args.json, log=print,
                         fidelity_every=0 if soak else args.fidelity_every, observer=soak, max_frames=max_frames,
                         degrade=not args.flat_out)  # flat out measures capacity: every frame generated, none repeated
    if soak is not None:
        report["soak"] = soak.report()
    report["pacing"] = "flat-out" if args.flat_out else "real-time"
    report["source"] = str(args.source)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(summary_line(report))
    if args.json:
        print(f"report: {args.json}")
    return EXIT_INTERRUPTED if report.get("interrupted") else EXIT_OK


def cmd_puppet(args: argparse.Namespace) -> int:
    from live.sources import DRIVER_SHAPE, TARGET_SHAPE, PuppetSource, write_video

    shape = TARGET_SHAPE if args.face == "target" else DRIVER_SHAPE
    src = PuppetSource(seed=args.seed, shape=shape, size=(args.size, args.size), fps=args.fps, frames=int(args.seconds * args.fps))
    n = write_video(args.out, (f.image for f in src), args.fps)
    print(f"wrote {args.out}: {n} frames of the synthetic {args.face} puppet")
    return 0


def demo_preset(choice: str | None, *, gpu: bool | None = None) -> tuple[str, str]:
    """(preset, why): the demo trains the model live will run here — the CPU preset
    unless PyTorch can use a CUDA GPU."""
    if choice:
        return choice, "--preset"
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    return ("full", "a CUDA GPU is present") if gpu else ("cpu", "no CUDA GPU; real time on CPU cores")


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole chain on the embedded synthetic puppet: target clip -> dataset ->
    short training -> export -> live, driven by a different puppet, recorded."""
    import dataclasses
    import time

    from live.pipeline import Mode
    from live.session import run_session, summary_line
    from live.sinks import RecorderSink
    from live.sources import DRIVER_SHAPE, PuppetSource
    from training.export import export
    from training.train import train

    t0 = time.monotonic()
    cfg = _config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clip = out / "target_puppet.mp4"
    if not clip.is_file():
        print("[1/5] rendering a synthetic target clip")
        cmd_puppet(argparse.Namespace(face="target", seed=7, size=480, fps=30.0, seconds=args.seconds, out=str(clip)))
    preset, why = demo_preset(args.preset)
    model_cfg = ModelConfig(**PRESETS[preset])
    print(f"[2/5] building its dataset ({preset} model preset: {why})")
    from training.dataset import SYNTHETIC_CONSENT

    cmd_dataset(argparse.Namespace(videos=[str(clip)], out=str(out / "dataset"), config=args.config, consent_record=SYNTHETIC_CONSENT,
                                   set=(args.set or []) + [f"model.size={model_cfg.size}", f"model.depth={model_cfg.depth}"],
                                   quiet=args.quiet, target_name=None, consent=False, preset=None))
    model_dir = out / "model"
    print(f"[3/5] training the {preset} model for {args.steps} steps (bounded; a real target trains for hours)")
    # A narrower discriminator than a real run's: the puppet is simple and the demo must be quick on a CPU.
    train_cfg = dataclasses.replace(cfg.train, steps=args.steps, batch_size=4, val_every=args.steps, preview_every=args.steps,
                                    checkpoint_every=max(1, args.steps // 4), val_frames=16, ndf=32)
    train(out / "dataset", model_dir, model=model_cfg, cfg=train_cfg, resume=(model_dir / "checkpoint.pt").exists(),
          progress=not args.quiet)
    print("[4/5] exporting")
    export(model_dir)
    if args.live:
        from live.session import SourceChoice, open_sinks, open_source

        print("[5/5] driving the demo model live from your camera into the virtual camera (q or Ctrl-C to stop)")
        source, reopen = open_source(SourceChoice("camera", camera=cfg.capture.camera), cfg)
        sinks = open_sinks(cfg, source.fps, virtual_camera=True, window=True, record="", on_key=None, log=print)
        report = run_session(model_dir, source, sinks, cfg, threaded=True, reopen=reopen, json_path=out / "latency.json")
        print(summary_line(report))
        return 0
    print("[5/5] driving it live with another puppet (another face shape, its own expressions)")
    demo_cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, width=1536, height=512))
    video = out / "demo.mp4"
    driver = PuppetSource(seed=args.driver_seed, shape=DRIVER_SHAPE, size=(640, 480), frames=int(args.drive_seconds * 30))
    report = run_session(model_dir, driver, [RecorderSink(video, size=(1536, 512), fps=30)], demo_cfg, threaded=False,
                         json_path=out / "latency.json", mode=Mode.SIDE_BY_SIDE, fidelity_every=2)
    print(summary_line(report))
    print(f"demo video (driver | sketch | output): {video}")
    print(f"latency report: {out / 'latency.json'}")
    print(f"done in {time.monotonic() - t0:.0f} s")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from live.trust import PERIOD, read_video

    whole, windows = read_video(args.video, window=args.window)
    found = [w for w in windows if w.present]
    if whole.present:
        print(f"{args.video}: reenact watermark FOUND, model ID {whole.model_id} (confidence z = {whole.confidence:.1f}, "
              f"weakest ID bit z = {whole.bit_margin:.1f}, {whole.frames} frames)")
    else:
        print(f"{args.video}: no reenact watermark found (sync z = {whole.confidence:.1f}, weakest ID bit z = "
              f"{whole.bit_margin:.1f}; a mark needs both above 6 and 1.5)")
    if windows:
        ids = sorted({w.model_id for w in found})
        print(f"  {len(found)} of {len(windows)} stretches of {args.window} frames carry it" + (f" (IDs: {', '.join(ids)})" if ids else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"video": str(args.video), "whole": whole.as_dict(),
                                               "windows": [w.as_dict() for w in windows]}, indent=1))
    if whole.frames < 2 * PERIOD:
        print(f"  note: {whole.frames} frames is short; a few seconds of video give a reliable reading")
    return EXIT_OK if whole.present else EXIT_NO_WATERMARK


def cmd_doctor(args: argparse.Namespace) -> int:
    from live.doctor import Probe, format_report, run_checks

    probe = Probe.collect()
    checks = run_checks(probe)
    print(format_report(checks))
    if args.model:
        from live.engines import choose_model_dir

        cfg = _config(args)
        chosen, why = choose_model_dir(args.model, engine=cfg.live.engine, tier=cfg.live.model_tier, gpu=probe.nvidia_driver)
        print(f"\nmodel: live --model {args.model} will load {chosen} ({why})")
    broken = [c for c in checks if c.ok is False and c.area in ("python", "packages", "opencv")]
    return 1 if broken else 0  # missing hardware is reported, not an error of the install


def cmd_devices(args: argparse.Namespace) -> int:
    from live.devices import report

    print(report())
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import dataclasses

    cfg = _config(args)
    for section in dataclasses.fields(cfg):
        print(f"[{section.name}]")
        for k, v in dataclasses.asdict(getattr(cfg, section.name)).items():
            print(f"{k} = {v!r}".replace("True", "true").replace("False", "false").replace("'", '"'))
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help=f"settings file (default: ./{DEFAULT_CONFIG} if present, else built-in defaults)")
    common.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one setting; repeatable")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    p = argparse.ArgumentParser(prog="reenact", description="Real-time face re-enactment: drive a target's face from your webcam.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser("dataset", parents=[common], help="target video(s) -> training pairs, manifest and coverage report")
    d.add_argument("videos", nargs="+", metavar="VIDEO")
    d.add_argument("--out", required=True, metavar="DIR")
    d.add_argument("--target-name", metavar="NAME", help="who the target is (recorded in the dataset and every model)")
    d.add_argument("--consent", action="store_true", help="attest that you may use the target's likeness")
    d.set_defaults(func=cmd_dataset)

    t = sub.add_parser("train", parents=[common], help="train a pix2pix model of the dataset's target")
    t.add_argument("dataset", metavar="DATASET")
    t.add_argument("--out", metavar="MODEL_DIR", help="where the model goes (with --teacher: default TEACHER_DIR/cpu)")
    t.add_argument("--resume", action="store_true", help="continue the run in MODEL_DIR from its checkpoint")
    t.add_argument("--preset", choices=sorted(PRESETS), help="generator architecture: full (GPU-sized) or cpu (real time on 2 CPU cores)")
    t.add_argument("--teacher", metavar="TEACHER_DIR", help="distil from this trained model (keeps its input contract)")
    t.add_argument("--drivers", nargs="+", metavar="VIDEO",
                   help="with --teacher: driver clips retargeted onto the target for extra teacher pairs; "
                        "'puppet' is the embedded puppet driver (the default)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", parents=[common], help="write fp16 (GPU) and fp32 (CPU) ONNX generators, checked for parity (also for MODEL_DIR/cpu)")
    e.add_argument("model_dir", metavar="MODEL_DIR")
    e.set_defaults(func=cmd_export)

    lv = sub.add_parser("live", parents=[common], help="drive the target's face from a camera into a virtual camera")
    lv.add_argument("--model", required=True, metavar="MODEL_DIR")
    lv.add_argument("--source", help="camera, puppet, or a video file (default: capture.source)")
    lv.add_argument("--camera", help="camera index or name (default: capture.camera)")
    lv.add_argument("--window", action="store_true", help="also show a preview window with stats")
    lv.add_argument("--no-virtual-camera", action="store_true", help="do not open the virtual camera")
    lv.add_argument("--record", metavar="FILE.mp4", help="also record the output")
    lv.add_argument("--view", choices=("output", "passthrough", "sketch", "side-by-side"), default="output",
                    help="what to send: the output, the camera (passthrough), the sketch, or all side by side")
    lv.add_argument("--gain", type=float, default=1.0, help="expression gain (also +/- in the window)")
    lv.add_argument("--paused", action="store_true", help="start paused (p to go)")
    lv.add_argument("--frames", type=int, help="stop after this many frames")
    lv.add_argument("--seconds", type=float, help="length of the puppet source")
    lv.add_argument("--json", default="runs/live/latency.json", metavar="FILE", help="latency report written on exit")
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
    b.set_defaults(func=cmd_bench)

    pp = sub.add_parser("puppet", parents=[common], help="render a clip of the synthetic puppet face")
    pp.add_argument("--out", required=True, metavar="FILE.mp4")
    pp.add_argument("--face", choices=("target", "driver"), default="target")
    pp.add_argument("--seconds", type=float, default=10.0)
    pp.add_argument("--seed", type=int, default=1)
    pp.add_argument("--size", type=int, default=480)
    pp.add_argument("--fps", type=float, default=30.0)
    pp.set_defaults(func=cmd_puppet)

    dm = sub.add_parser("demo", parents=[common], help="run the whole chain on the embedded synthetic puppet")
    dm.add_argument("--out", default="runs/demo", metavar="DIR")
    dm.add_argument("--seconds", type=float, default=20.0, help="length of the synthetic target clip")
    dm.add_argument("--steps", type=int, default=500, help="training steps")
    dm.add_argument("--preset", choices=sorted(PRESETS), help="model preset (default: cpu without a CUDA GPU, else full)")
    dm.add_argument("--drive-seconds", type=float, default=12.0, help="length of the driven video")
    dm.add_argument("--driver-seed", type=int, default=23)
    dm.add_argument("--live", action="store_true", help="drive the demo model from your camera into the virtual camera")
    dm.set_defaults(func=cmd_demo)

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

    c = sub.add_parser("config", parents=[common], help="print the effective settings")
    c.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every error a user can cause ends here as one line on stderr and
    the exit code of its family (models/errors.py; the README's table)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # OpenCV's own warnings; reenact reports what matters
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("reenact: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ReenactError as e:
        print(f"reenact: {e.family}: {e.line()}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the OS refused a file: a full disk, a path through a regular file, permissions
        where = f"{e.filename}: " if e.filename else ""
        print(f"reenact: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
