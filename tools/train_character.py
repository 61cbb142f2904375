"""Make the built-in character (models/data/character): the recipe, end to end.

    .venv/bin/python tools/train_character.py --work runs/character --minutes 45 --light-minutes 12
    .venv/bin/python tools/train_character.py --work runs/character --minutes 40 --extend-minutes 30 --light-minutes 12

1. render a synthetic target clip of ``CHARACTER_SHAPE`` (models/puppet.py): a made-up
   face with coloured irises, teeth and hair, looking around, talking and turning;
2. build its dataset (consent: synthetic, no real person);
3. train the CPU preset for ``--minutes`` of wall time (``train(minutes=...)``);
4. distil its lighter rung (MODEL/light) for ``--light-minutes``;
5. export both, then pack what live needs on CPU cores into ``--pack`` (default
   models/data/character): the fp32 ONNX generators, plates, model.json (re-sealed for
   exactly those files), the model cards, and the main generator's weights in fp16 (a
   prior for ``train --init-from``). No real person's data is involved anywhere.

Every step resumes: run it again with the same --work and finished steps are skipped.
``--reexport`` only re-exports the packed ONNX generator (a faster exporter, same weights).
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.artifact import LIGHT_RUNG, load_model_dir  # noqa: E402
from models.config import PRESET_TRAINING, PRESETS, ModelConfig, load_config  # noqa: E402
from models.puppet import CHARACTER_SHAPE, write_puppet_clip  # noqa: E402

CARD = """# The built-in character

A made-up face, not a person: reenact renders it (`CHARACTER_SHAPE` in models/puppet.py)
and trains this model on those renderings with `tools/train_character.py`. No photo or
video of a real person was used. Use it to try reenact before you train your own target.

- generator: {generator}
- trained: {steps} steps, {minutes:.0f} min on {machine}
- validation: PSNR {psnr} dB, SSIM {ssim}, landmark error {lmk} IOD
- lighter rung (light/): {light}
- shipped for CPU cores: generator_fp32.onnx (a GPU runs it through ONNX Runtime too), and
  the weights in fp16 (generator_fp16.pt) to start training a new target from
  (`reenact train --init-from character`)
- model ID: {model_id}
"""
LIGHT_CARD = """# The built-in character: its lighter rung

What live switches to when the main model does not fit the frame budget: a smaller
generator distilled from the character (model {teacher}), same contract, no real person.

- generator: {generator}
- distilled: {steps} steps, {minutes:.0f} min
- validation: PSNR {psnr} dB, SSIM {ssim}
- model ID: {model_id}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="runs/character", help="clip, dataset and full model directories")
    ap.add_argument("--minutes", type=float, default=45.0, help="training budget of the main model")
    ap.add_argument("--light-minutes", type=float, default=12.0, help="training budget of the lighter rung")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the rendered target clip")
    ap.add_argument("--extend-minutes", type=float, default=0.0,
                    help="once trained, resume the main model for this much more wall time (a new budget, its rate "
                         "decaying again), then distil a new lighter rung from it")
    ap.add_argument("--pack", default=str(Path(__file__).resolve().parents[1] / "models" / "data" / "character"))
    ap.add_argument("--reexport", action="store_true",
                    help="only re-export the packed character's ONNX generator from the fp16 weights it ships, "
                         "with this version's exporter (no training)")
    args = ap.parse_args()

    if args.reexport:
        from training.export import reexport_packed

        reexport_packed(args.pack)
        return 0

    from training.dataset import SYNTHETIC_CONSENT, build_dataset
    from training.distill import distill
    from training.export import export, pack_for_cpu
    from training.train import train

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(None, [])
    clip = work / "character.mp4"
    if not clip.is_file():
        print(f"[1/5] rendering {args.seconds:.0f} s of the character")
        # A smaller head than the stock puppet's, so hair and neck stay inside the frame whatever the head does.
        write_puppet_clip(clip, seconds=args.seconds, seed=7, shape=CHARACTER_SHAPE, size=480, gaze=1.0, iod=0.2)
    model_cfg = ModelConfig(**PRESETS["cpu"])
    print("[2/5] building its dataset")
    build_dataset([clip], work / "dataset", consent=SYNTHETIC_CONSENT,
                  dataset=cfg.dataset, landmarks=cfg.landmarks, sketch=cfg.sketch, model=model_cfg)
    model_dir = work / "model"
    train_cfg = dataclasses.replace(cfg.train, steps=10**6, **PRESET_TRAINING["cpu"])
    trained = work / "model.trained"  # written once the budget is spent; an interrupted run resumes instead
    if not trained.is_file():
        print(f"[3/5] training the cpu preset for {args.minutes:.0f} min")
        if train(work / "dataset", model_dir, model=model_cfg, cfg=train_cfg, resume=(model_dir / "checkpoint.pt").is_file(),
                 minutes=args.minutes).get("stopped"):
            return _interrupted()
        export(model_dir)
        trained.write_text("done\n")
    light = model_dir / LIGHT_RUNG
    extended = work / f"model.extended-{args.extend_minutes:g}"
    if args.extend_minutes > 0 and not extended.is_file():
        print(f"[3/5] training the cpu preset for {args.extend_minutes:.0f} more min")
        if train(work / "dataset", model_dir, model=model_cfg, cfg=train_cfg, resume=True, minutes=args.extend_minutes).get("stopped"):
            return _interrupted()
        export(model_dir)
        if light.is_dir():  # distilled from the weights before: distil again from these
            shutil.rmtree(light)
        extended.write_text("done\n")
    if args.light_minutes > 0 and not (light / "generator_fp32.onnx").is_file():
        print(f"[4/5] distilling the lighter rung for {args.light_minutes:.0f} min")
        if distill(work / "dataset", light, teacher=model_dir, drivers=[], model=ModelConfig(**PRESETS["light"]),
                   cfg=dataclasses.replace(cfg.train, steps=10**6, **PRESET_TRAINING["light"]), resume=(light / "checkpoint.pt").is_file(),
                   minutes=args.light_minutes).get("stopped"):
            return _interrupted()
        export(light)
    print(f"[5/5] packing into {args.pack}")
    model = load_model_dir(model_dir)
    light_meta = load_model_dir(light).meta if (light / "model.json").is_file() else None
    m = model.meta.get("metrics", {})
    card = CARD.format(generator=model.generator_config, steps=model.meta.get("provenance", {}).get("steps", "?"),
                       minutes=args.minutes + args.extend_minutes, machine=f"{platform.processor() or platform.machine()}, {_cpu_name()}",
                       psnr=_r(m.get("psnr"), 2), ssim=_r(m.get("ssim"), 3), lmk=_r(m.get("landmark_error_iod"), 4),
                       light=f"{light_meta['generator']}, validation PSNR {_r(light_meta.get('metrics', {}).get('psnr'), 2)} dB"
                       if light_meta else "none", model_id=model.model_id)
    light_card = None
    if light_meta:
        lm = light_meta.get("metrics", {})
        light_card = LIGHT_CARD.format(generator=light_meta["generator"], steps=light_meta["provenance"].get("steps", "?"),
                                       minutes=args.light_minutes, psnr=_r(lm.get("psnr"), 2), ssim=_r(lm.get("ssim"), 3),
                                       teacher=model.model_id, model_id=load_model_dir(light).model_id)
    pack_for_cpu(model_dir, Path(args.pack), card=card, light_card=light_card, weights_fp16=True)
    print((Path(args.pack) / "model_card.md").read_text())
    return 0


def _interrupted() -> int:
    """Ctrl-C or SIGTERM: the trainer saved a checkpoint; nothing is marked done or packed."""
    print("interrupted: run the same command again to continue from the checkpoint")
    return 130


def _r(value, digits: int) -> str:
    return "?" if value is None else f"{value:.{digits}f}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
