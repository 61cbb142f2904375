"""``reenact demo``: the built-in character, driven by the synthetic puppet.

By default the demo trains nothing: the built-in character (models/data/character, a
made-up face) is driven by another puppet and written to a video, in well under a
minute on two CPU cores. ``--train`` runs the whole chain instead:

    target clip -> dataset -> short training -> export -> live, driven by another puppet

It spans both sides, so it lives in the entry package, and it calls library functions
(not other commands).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from models.config import PRESETS, Config, ModelConfig
from models.errors import EXIT_INTERRUPTED, EXIT_OK, UsageError

DEMO_SIZE = (1536, 512)  # driver | sketch | output, side by side


def register(sub, common: argparse.ArgumentParser) -> None:
    dm = sub.add_parser("demo", parents=[common], help="drive the built-in character with the synthetic puppet (--train: the whole chain)")
    dm.add_argument("--out", default="runs/demo", metavar="DIR")
    dm.add_argument("--train", action="store_true",
                    help="the whole chain instead: render a puppet target, build its dataset, train, export, drive")
    dm.add_argument("--seconds", type=float, help="with --train: length of the synthetic target clip (default 20)")
    dm.add_argument("--steps", type=int, help="with --train: training steps (default 500)")
    dm.add_argument("--preset", choices=sorted(PRESETS), help="with --train: model preset (default: cpu without a CUDA GPU, else full)")
    dm.add_argument("--drive-seconds", type=float, default=12.0, help="length of the driven video")
    dm.add_argument("--driver-seed", type=int, default=23)
    dm.add_argument("--live", action="store_true", help="drive the demo model from your camera into the virtual camera")
    dm.set_defaults(func=cmd_demo)


def demo_preset(choice: str | None, *, gpu: bool | None = None) -> tuple[str, str]:
    """(preset, why): the demo trains the model live will run here — the CPU preset
    unless PyTorch can use a CUDA GPU."""
    if choice:
        return choice, "--preset"
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    return ("full", "a CUDA GPU is present") if gpu else ("cpu", "no CUDA GPU; real time on CPU cores")


def train_demo_model(out: Path, cfg: Config, *, seconds: float, steps: int, preset: str | None, quiet: bool) -> Path:
    """Steps 1-4: a synthetic target clip, its dataset, a short training run, the export."""
    from models.puppet import TARGET_SHAPE, write_puppet_clip
    from training.commands import dataset_summary
    from training.dataset import SYNTHETIC_CONSENT, build_dataset
    from training.export import export
    from training.train import train

    out.mkdir(parents=True, exist_ok=True)
    clip = out / "target_puppet.mp4"
    if not clip.is_file():
        print("[1/5] rendering a synthetic target clip")
        write_puppet_clip(clip, seconds=seconds, seed=7, shape=TARGET_SHAPE, size=480)
    preset, why = demo_preset(preset)
    model_cfg = ModelConfig(**PRESETS[preset])
    print(f"[2/5] building its dataset ({preset} model preset: {why})")
    m = build_dataset([clip], out / "dataset", consent=SYNTHETIC_CONSENT, dataset=cfg.dataset, landmarks=cfg.landmarks,
                      sketch=cfg.sketch, model=model_cfg, progress=not quiet)
    print(dataset_summary(m, out / "dataset"))
    model_dir = out / "model"
    print(f"[3/5] training the {preset} model for {steps} steps (bounded; a real target trains for hours)")
    # A narrower discriminator than a real run's: the puppet is simple and the demo must be quick on a CPU.
    train_cfg = dataclasses.replace(cfg.train, steps=steps, batch_size=4, val_every=steps, preview_every=steps,
                                    checkpoint_every=max(1, steps // 4), val_frames=16, ndf=32)
    train(out / "dataset", model_dir, model=model_cfg, cfg=train_cfg, resume=(model_dir / "checkpoint.pt").exists(), progress=not quiet)
    print("[4/5] exporting")
    export(model_dir)
    return model_dir


def cmd_demo(args: argparse.Namespace, cfg: Config) -> int:
    from live.output import Mode
    from live.session import LiveSettings, RunOptions, SourceChoice, open_sinks, open_source, run_session, summary_line
    from live.sinks import RecorderSink
    from live.sources import DRIVER_SHAPE, PuppetSource

    t0 = time.monotonic()
    out = Path(args.out)
    if not args.train and (args.seconds is not None or args.steps is not None or args.preset is not None):
        raise UsageError("--seconds, --steps and --preset shape the model `reenact demo --train` trains; add --train")
    if args.train:
        model_dir = train_demo_model(out, cfg, seconds=args.seconds or 20.0, steps=args.steps or 500, preset=args.preset,
                                     quiet=args.quiet)
        step = "[5/5] "
    else:
        from models.artifact import builtin_character

        model_dir, step = builtin_character(), ""
        print(f"the built-in character, a made-up face ({model_dir}); `reenact demo --train` trains one from scratch")
    if args.live:
        print(f"{step}driving the demo model live from your camera into the virtual camera (q or Ctrl-C to stop)")
        source, reopen = open_source(SourceChoice("camera", camera=cfg.capture.camera), cfg.capture)
        sinks = open_sinks(cfg.output, source.fps, virtual_camera=True, window=True, record="", log=print)
        report = run_session(model_dir, source, sinks, LiveSettings.of(cfg), RunOptions(json_path=out / "latency.json"), reopen=reopen)
        print(summary_line(report))
        return EXIT_INTERRUPTED if report.get("interrupted") else EXIT_OK
    print(f"{step}driving it with the puppet (another face shape, its own expressions and gaze)")
    settings = LiveSettings.of(cfg)
    settings = dataclasses.replace(settings, output=dataclasses.replace(cfg.output, width=DEMO_SIZE[0], height=DEMO_SIZE[1]))
    video = out / "demo.mp4"
    driver = PuppetSource(seed=args.driver_seed, shape=DRIVER_SHAPE, size=(640, 480), frames=int(args.drive_seconds * 30), gaze=1.0)
    # A file, not a camera: every frame generated, none repeated, however slow the machine.
    run = RunOptions(threaded=False, json_path=out / "latency.json", mode=Mode.SIDE_BY_SIDE, fidelity_every=2, degrade=False)
    report = run_session(model_dir, driver, [RecorderSink(video, size=DEMO_SIZE, fps=30)], settings, run)
    print(summary_line(report))
    print(f"demo video (driver | sketch | output): {video}")
    print(f"latency report: {out / 'latency.json'}")
    print(f"done in {time.monotonic() - t0:.0f} s")
    return EXIT_INTERRUPTED if report.get("interrupted") else EXIT_OK
