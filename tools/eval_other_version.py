"""Measure another version of reenact (a git worktree, e.g. c93fc15) with this
version's ``reenact eval``, for side-by-side figures in docs/BENCHMARKS.md.

The other version drives its own pipeline over the same driver clips and validation
blocks, every frame in order and stamped with media time (as eval does), and writes
its composed output frames losslessly (FFV1); this version then measures those frames
exactly as ``reenact eval`` measures its own.

    .venv/bin/python tools/eval_other_version.py --tree /work/base --model MODEL_DIR \\
        --drivers ../shared/data/faces/driver_liveportrait_d10.mp4 ... --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Runs inside the other worktree (its own live/models packages). It uses only the API
# that c93fc15 already had: Pipeline(...).process(Frame(image, t, index)).
RENDER = r'''
import json, sys, time
import cv2, numpy as np
from live.engines import create_engine
from live.pipeline import Pipeline
from live.sources import Frame
from models.artifact import load_model_dir
from models.config import LandmarksConfig, LiveConfig
from models.landmarks import FaceMeshDetector

job = json.load(open(sys.argv[1]))
model = load_model_dir(job["model"])
engine = create_engine(model, job["engine"], log=lambda s: None)
size = tuple(job["out_size"])
for item in job["items"]:
    detector = FaceMeshDetector(tracking=True)
    pipe = Pipeline(model, engine, detector, live=LiveConfig(), landmarks=LandmarksConfig(), out_size=size, clock=time.perf_counter)
    if item.get("neutral"):
        pipe.calibration.neutral, pipe.calibration.ready = np.asarray(model.contract.neutral_px, np.float64), True
    writer = cv2.VideoWriter(item["out"], cv2.VideoWriter_fourcc(*"FFV1"), item["fps"], size)
    cap = cv2.VideoCapture(item["path"])
    i = 0
    while i <= item["last"]:
        ok, img = cap.read()
        if not ok:
            break
        if i >= item["first"]:
            writer.write(pipe.process(Frame(img, i / item["fps"], i)).image)
        i += 1
    writer.release()
    detector.close()
    print(item["out"], flush=True)
'''


class RecordedRenderer:
    """Output frames that another version wrote, handed out in the order eval asks."""

    def __init__(self, setup, files: list[Path]) -> None:
        from live.pipeline import Compositor

        self.compositor = Compositor(setup.model, setup.out_size)  # the same plate and framing: the same geometry
        self._files = iter(files)

    def render(self, images, fps, *, start=0, neutral=None):
        cap = cv2.VideoCapture(str(next(self._files)))
        for _ in images:
            ok, frame = cap.read()
            if not ok:
                break
            yield frame
        cap.release()

    def close(self) -> None:
        pass


def main() -> None:
    from models.artifact import load_model_dir
    from models.config import load_config
    from models.video import open_video
    from reenact import eval as ev
    from training.dataset import load_manifest

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", required=True, help="the other version's checkout")
    p.add_argument("--model", required=True)
    p.add_argument("--drivers", nargs="*", default=[])
    p.add_argument("--json", required=True)
    p.add_argument("--engine", default="ort-cpu")
    p.add_argument("--rendered", help="a folder of a previous run's rendered frames: measure them again without rendering")
    args = p.parse_args()

    cfg = load_config(None)
    model = load_model_dir(args.model)
    setup = ev.Setup(model, cfg.live, cfg.landmarks, (cfg.output.width, cfg.output.height), print)
    dataset = ev.dataset_for(model, None)
    tmp = Path(args.rendered) if args.rendered else Path(tempfile.mkdtemp(prefix="eval_other_"))
    items = []
    if dataset is not None:
        manifest = load_manifest(dataset)
        for n, (video, numbers) in enumerate(ev.val_blocks(manifest)):
            src = manifest["sources"][video]
            items.append({"path": src["path"], "first": numbers[0], "last": numbers[-1], "fps": src["fps"], "neutral": True,
                          "out": str(tmp / f"block{n:03d}.mkv")})
    for n, d in enumerate(args.drivers):
        cap, info = open_video(d)
        cap.release()
        items.append({"path": str(Path(d).resolve()), "first": 0, "last": 10**9, "fps": info.fps, "out": str(tmp / f"driver{n}.mkv")})
    job = tmp / "job.json"
    job.write_text(json.dumps({"model": str(Path(args.model).resolve()), "engine": args.engine, "out_size": list(setup.out_size),
                               "items": items}))
    env = dict(os.environ, PYTHONPATH=str(Path(args.tree).resolve()))  # the other version's packages, not this one's
    if not args.rendered:
        subprocess.run([sys.executable, "-c", RENDER, str(job)], cwd=args.tree, check=True, env=env)
    renderer = RecordedRenderer(setup, [Path(i["out"]) for i in items])
    report = {"model": str(model.path), "version": str(args.tree), "output_size": list(setup.out_size)}
    if dataset is not None:
        report["self"] = ev.self_reenactment(setup, dataset, renderer)
    grid = Path(args.json).with_suffix("")
    report["drivers"] = {Path(d).stem: ev.transfer(setup, d, renderer, Path(f"{grid}_worst")) for d in args.drivers}
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(ev.summary(report))


if __name__ == "__main__":
    main()
