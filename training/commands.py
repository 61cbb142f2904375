"""The training side's subcommands: ``dataset``, ``train`` and ``export``.

``register`` adds them to the ``reenact`` parser; each command gets its parsed
arguments and the settings (read once by the entry point) and hands the library its
own sections only.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from models.artifact import CPU_TIER, LIGHT_RUNG
from models.config import PRESETS, Config
from models.errors import EXIT_INTERRUPTED, EXIT_OK, UsageError
from models.terminal import interactive


def register(sub, common: argparse.ArgumentParser) -> None:
    d = sub.add_parser("dataset", parents=[common], help="target video(s) -> training pairs, manifest and coverage report")
    d.add_argument("videos", nargs="+", metavar="VIDEO")
    d.add_argument("--out", required=True, metavar="DIR")
    d.add_argument("--target-name", metavar="NAME", help="who the target is (recorded in the dataset and every model)")
    d.add_argument("--consent", action="store_true", help="attest that you may use the target's likeness")
    d.set_defaults(func=cmd_dataset)

    t = sub.add_parser("train", parents=[common], help="train a pix2pix model of the dataset's target (or, with --swap, a face swap)")
    t.add_argument("dataset", metavar="DATASET", nargs="?", help="the target's dataset (`reenact dataset`); with --swap, give it there")
    t.add_argument("--out", metavar="MODEL_DIR", help=f"where the model goes (with --teacher: default TEACHER_DIR/{CPU_TIER})")
    t.add_argument("--resume", action="store_true", help="continue the run in MODEL_DIR from its checkpoint, with the [train] settings it started with "
                        "(a --set train.* given now changes one)")
    t.add_argument("--preset", choices=["auto"] + sorted(PRESETS), default="auto",
                   help="generator architecture: full (GPU-sized), cpu (real time on 2 CPU cores) or light (a CPU model's lighter rung); "
                        "auto (the default): full with a CUDA GPU, else cpu; with --teacher, cpu")
    t.add_argument("--minutes", type=float, metavar="N",
                   help="train for N minutes of wall time (at most train.steps), the learning rate decaying to the end; "
                        "then export, so live can use the model at once. With --resume: N more minutes")
    t.add_argument("--init-from", metavar="MODEL_DIR",
                   help="start the generator from this model's weights (same --preset), not from random ones; "
                        "'character': the built-in character")
    t.add_argument("--teacher", metavar="TEACHER_DIR", help="distil from this trained model (keeps its input contract)")
    t.add_argument("--drivers", nargs="+", metavar="VIDEO",
                   help="with --teacher: driver clips retargeted onto the target for extra teacher pairs; "
                        "'puppet' is the embedded puppet driver (the default)")
    t.add_argument("--swap", metavar="TARGET_DATASET",
                   help="replacement mode: train a face swap, the target's face on the user's own head; needs --user")
    t.add_argument("--user", metavar="USER_DATASET", help="with --swap: your own dataset (`reenact dataset` of a clip of you)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", parents=[common],
                       help=f"write fp16 (GPU) and fp32 (CPU) ONNX generators, checked for parity (also for MODEL_DIR/{CPU_TIER})")
    e.add_argument("model_dir", metavar="MODEL_DIR")
    e.set_defaults(func=cmd_export)


def consent_from(args: argparse.Namespace, cfg: Config):
    """The consent record: from flags, else the settings, else (at a terminal) by
    asking; never assumed."""
    from training.dataset import CONSENT_STATEMENT, Consent

    name = args.target_name or cfg.dataset.target_name
    attested = args.consent or cfg.dataset.consent
    if (not name or not attested) and interactive():
        name = name or input("Who is the person in the target video? ").strip()
        answer = input(f"{CONSENT_STATEMENT}\nType 'yes' to attest: ").strip().lower()
        attested = answer == "yes"
    return Consent(name or "", bool(attested))


def cmd_dataset(args: argparse.Namespace, cfg: Config) -> int:
    from training.dataset import build_dataset

    m = build_dataset(args.videos, args.out, consent=consent_from(args, cfg), dataset=cfg.dataset, landmarks=cfg.landmarks,
                      sketch=cfg.sketch, model=cfg.model, progress=not args.quiet)
    print(dataset_summary(m, args.out))
    return EXIT_OK


def dataset_summary(m: dict, out: str | Path) -> str:
    drops = ", ".join(f"{k} {v}" for k, v in m["dropped"].items())
    pct = 100.0 * m["frames_kept"] / max(m["frames_total"], 1)
    w, h = m["framing"]["out_size"]
    lines = [f"dataset {out}: kept {m['frames_kept']} of {m['frames_total']} frames ({pct:.1f} %); dropped: {drops}",
             f"  split: {m['split']['train']} train / {m['split']['val']} validation; framing {w}x{h}; sketch {m['sketch_hash']}",
             f"  coverage report: {Path(out) / 'coverage.png'} and coverage.json"]
    return "\n".join(lines + [f"  warning: {w}" for w in m["coverage_warnings"]])


def cmd_train(args: argparse.Namespace, cfg: Config) -> int:
    from models.errors import ModelError
    from models.files import make_dir
    from training.dataset import check_dataset

    if args.swap or args.user:
        return cmd_train_swap(args, cfg)
    if args.dataset is None:
        raise UsageError("train needs a DATASET (or --swap TARGET_DATASET --user USER_DATASET)")
    if args.out is None and not args.teacher:
        raise UsageError("train needs --out MODEL_DIR")
    if args.drivers and not args.teacher:
        raise UsageError("--drivers goes with --teacher (distillation)")
    if args.init_from and (args.teacher or args.resume):
        raise UsageError("--init-from starts a new run; it goes with neither --teacher nor --resume")
    if args.init_from == "character":
        from models.artifact import builtin_character

        args.init_from = str(builtin_character())
    if args.minutes is not None and not (0 < args.minutes <= 60 * 24 * 30):  # NaN fails too
        raise UsageError(f"--minutes must be more than 0 and at most 43200 (30 days), got {args.minutes:g}")
    # A student lives beside (inside) its teacher: the CPU tier as TEACHER/cpu, a lighter rung as TEACHER/light.
    out = args.out or str(Path(args.teacher) / (LIGHT_RUNG if args.preset == "light" else CPU_TIER))
    check_dataset(args.dataset)  # a wrong dataset or --out is named at once, before torch starts
    make_dir(out, error=ModelError, what="the model")
    from training.distill import checkpoint_teacher, distill
    from training.train import resumed_settings, train

    if args.preset == "auto" and not args.resume:  # a resumed run keeps the architecture of its checkpoint
        preset, why = auto_preset(teacher=bool(args.teacher))
        print(f"training the {preset} preset ({why}; --preset full forces the GPU-sized model)" if preset == "cpu"
              else f"training the {preset} preset ({why})")
        cfg = args.settings_for(preset)  # the settings again, with the preset under the --set overrides

    if args.resume:  # the run goes on as it started: its checkpoint's [train], this command's --set train.* on top
        cfg = replace(cfg, train=resumed_settings(out, args.set or []))
    if args.teacher or (args.resume and checkpoint_teacher(out)):  # a distillation resumes as one, with its recorded teacher
        summary = distill(args.dataset, out, teacher=args.teacher, drivers=args.drivers or [], model=cfg.model, cfg=cfg.train,
                          resume=args.resume, progress=not args.quiet, minutes=args.minutes)
    else:
        summary = train(args.dataset, out, model=cfg.model, cfg=cfg.train, resume=args.resume, progress=not args.quiet,
                        minutes=args.minutes, init_from=args.init_from)
    if summary.get("stopped"):
        return EXIT_INTERRUPTED
    if args.minutes is not None:  # a budgeted run ends ready for live
        from training.export import export

        export(out)
        print(f"exported {out}: ready for `reenact live --model {out}`")
    return EXIT_OK


def cmd_train_swap(args: argparse.Namespace, cfg: Config) -> int:
    """``train --swap TARGET_DATASET --user USER_DATASET --out MODEL_DIR``: replacement mode."""
    from models.errors import ModelError
    from models.files import make_dir
    from training.dataset import check_dataset

    if not (args.swap and args.user and args.out):
        raise UsageError("a face swap needs --swap TARGET_DATASET --user USER_DATASET --out MODEL_DIR")
    if args.dataset is not None:
        raise UsageError(f"with --swap the target's dataset goes after --swap, not as DATASET ({args.dataset!r})")
    for flag, value in (("--teacher", args.teacher), ("--init-from", args.init_from), ("--drivers", args.drivers)):
        if value:
            raise UsageError(f"{flag} is for re-enactment models; it does not go with --swap")
    if args.preset != "auto":
        raise UsageError("--preset picks a re-enactment generator; a swap network is set in [swap] (e.g. --set swap.width=128)")
    if args.minutes is not None and not (0 < args.minutes <= 60 * 24 * 30):
        raise UsageError(f"--minutes must be more than 0 and at most 43200 (30 days), got {args.minutes:g}")
    for path in (args.swap, args.user):
        check_dataset(path)  # a wrong dataset is named at once, before torch starts
    make_dir(args.out, error=ModelError, what="the model")
    from training.swap import train_swap

    summary = train_swap(args.swap, args.user, args.out, cfg=cfg.train, swap=cfg.swap, resume=args.resume,
                         minutes=args.minutes, progress=not args.quiet)
    if summary.get("stopped"):
        return EXIT_INTERRUPTED
    if args.minutes is not None:  # a budgeted run ends exported, like a re-enactment one
        from training.export import export

        export(args.out)
        print(f"exported {args.out}: generator_fp32.onnx (CPU) and generator_fp16.onnx (GPU)")
    return EXIT_OK


def auto_preset(*, teacher: bool, gpu: bool | None = None) -> tuple[str, str]:
    """(preset, why) for ``--preset auto``: a distilled student is a CPU tier; otherwise
    the GPU-sized model where PyTorch can use a CUDA GPU, else the CPU preset (the full
    model takes days on a laptop's cores)."""
    if teacher:
        return "cpu", "a distilled student is the CPU tier"
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    return ("full", "a CUDA GPU is present") if gpu else ("cpu", "no CUDA GPU: the model live runs on CPU cores, trainable here in minutes, not days")


def cmd_export(args: argparse.Namespace, cfg: Config) -> int:
    from training.export import export

    root = Path(args.model_dir)
    students = [root / CPU_TIER, root / LIGHT_RUNG, root / CPU_TIER / LIGHT_RUNG]
    for d in [root] + [s for s in students if (s / "model.json").is_file()]:  # the model, its CPU tier and lighter rungs
        export(d)
        print(f"exported {d}: generator_fp16.onnx (GPU) and generator_fp32.onnx (CPU)")
    return EXIT_OK
