"""The ``reenact`` command. The only place where real devices and files are chosen;
everything below it receives its own config section and ready-made objects."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from models.config import Config, ConfigError, load_config

DEFAULT_CONFIG = "config.toml"


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    return load_config(path, args.set or [])


def cmd_dataset(args: argparse.Namespace) -> int:
    from training.dataset import build_dataset

    cfg = _config(args)
    m = build_dataset(args.videos, args.out, dataset=cfg.dataset, landmarks=cfg.landmarks, sketch=cfg.sketch,
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
    summary = train(args.dataset, args.out, model=cfg.model, cfg=cfg.train, resume=args.resume, progress=not args.quiet)
    return 130 if summary.get("stopped") else 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.export import export

    export(args.model_dir)
    print(f"exported {args.model_dir}: generator_fp16.onnx (GPU) and generator_fp32.onnx (CPU)")
    return 0


def cmd_puppet(args: argparse.Namespace) -> int:
    from live.sources import DRIVER_SHAPE, TARGET_SHAPE, PuppetSource, write_video

    shape = TARGET_SHAPE if args.face == "target" else DRIVER_SHAPE
    src = PuppetSource(seed=args.seed, shape=shape, size=(args.size, args.size), fps=args.fps, frames=int(args.seconds * args.fps))
    n = write_video(args.out, (f.image for f in src), args.fps)
    print(f"wrote {args.out}: {n} frames of the synthetic {args.face} puppet")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The furthest stage that works on an embedded default: puppet clip -> dataset."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clip = out / "target_puppet.mp4"
    if not clip.is_file():
        print("[1/2] rendering a synthetic target clip")
        cmd_puppet(argparse.Namespace(face="target", seed=7, size=480, fps=30.0, seconds=args.seconds, out=str(clip)))
    print("[2/2] building its dataset")
    return cmd_dataset(argparse.Namespace(videos=[str(clip)], out=str(out / "dataset"), config=args.config, set=args.set, quiet=args.quiet))


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
    d.set_defaults(func=cmd_dataset)

    t = sub.add_parser("train", parents=[common], help="train a pix2pix model of the dataset's target")
    t.add_argument("dataset", metavar="DATASET")
    t.add_argument("--out", required=True, metavar="MODEL_DIR")
    t.add_argument("--resume", action="store_true", help="continue the run in MODEL_DIR from its checkpoint")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", parents=[common], help="write fp16 (GPU) and fp32 (CPU) ONNX generators, checked for parity")
    e.add_argument("model_dir", metavar="MODEL_DIR")
    e.set_defaults(func=cmd_export)

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
    dm.set_defaults(func=cmd_demo)

    c = sub.add_parser("config", parents=[common], help="print the effective settings")
    c.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("reenact: interrupted", file=sys.stderr)
        return 130
    except (ConfigError,) as e:
        print(f"reenact: config error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - user-facing errors below; anything else re-raised
        from live.sources import SourceError
        from models.artifact import ArtifactError
        from training.dataset import DatasetError
        from training.export import ExportError
        from training.train import TrainError

        if isinstance(e, (DatasetError, SourceError, ArtifactError, TrainError, ExportError)):
            print(f"reenact: error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
