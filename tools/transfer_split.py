"""Where does a transfer figure of ``reenact eval`` get lost: in retargeting, or in the
generator? Splits each viewer signal into driver -> sketch -> output.

It drives the model with a clip through the live pipeline offline (media-time stamps,
as ``reenact eval`` does) and keeps three sets of landmarks per frame:

* **driver**: Face Mesh on the driver frame (what ``eval`` reads);
* **sketch**: the retargeted landmarks the sketch was drawn from (what the generator
  was asked for: no Face Mesh involved);
* **output**: Face Mesh on the composed output frame (what ``eval`` reads).

For each signal (``models.geometry.viewer_signals``) it gives Pearson r of
driver -> sketch, sketch -> output and driver -> output, the jitter of each, the
vergence error of each step, and the vergence per bin of the driver's yaw (a turned
head is where Face Mesh and the generator disagree most). It also says how much of the
clip turns beyond the target's yaw coverage (frames the soft limits keep in range) and
the yaw r a perfect generator would reach on the limited sketch.

    .venv/bin/python tools/transfer_split.py --model models/data/character --driver driver_puppet.mp4 --json split.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIGNALS = ("mouth", "eyes", "brows", "yaw", "gaze", "vergence", "shape")


def drive(model, driver: Path, max_frames: int | None) -> dict[str, np.ndarray]:
    """(F, 478, 3) float64 landmarks of driver, sketch and output, for the frames where
    Face Mesh found a face on both driver and output."""
    from itertools import islice

    from live.session import open_pipeline
    from live.sources import Frame
    from models.config import load_config
    from models.landmarks import FaceMeshDetector
    from models.video import frames, open_video

    cfg = load_config(None)
    cap, info = open_video(driver)
    cap.release()
    kept: dict[str, list] = {"driver": [], "sketch": [], "output": []}
    with contextlib.ExitStack() as stack:
        pipe = open_pipeline(stack, model, cfg.live, cfg.landmarks, (cfg.output.width, cfg.output.height), lambda s: None, rungs=False)
        pipe.reset()
        pipe.recalibrate()
        d_det, o_det = (stack.enter_context(FaceMeshDetector(tracking=True)) for _ in range(2))
        for i, image in enumerate(islice(frames(driver), max_frames)):
            result = pipe.process(Frame(image, i / info.fps, i, i / info.fps))
            d, o = d_det.detect(image), o_det.detect(result.image)
            if d is None or o is None or result.target_px is None:
                continue
            kept["driver"].append(d.pixels())
            kept["sketch"].append(np.asarray(result.target_px))
            kept["output"].append(o.pixels())
    return {k: np.asarray(v, np.float64) for k, v in kept.items()}


def _r(a: np.ndarray, b: np.ndarray) -> float:
    from reenact.eval import _pearson  # eval's own r: NaN where a signal does not move

    return _pearson(a, b)


def split(faces: dict[str, np.ndarray], bins: int) -> dict:
    """The figures, from ``drive``'s landmarks."""
    from models.geometry import viewer_signals
    from reenact.eval import _jitter

    sig = {k: viewer_signals(v) for k, v in faces.items()}
    d, s, o = sig["driver"], sig["sketch"], sig["output"]
    out: dict = {"frames": len(faces["driver"]), "r": {}, "median": {}}
    for name in SIGNALS:
        out["r"][name] = {"driver_sketch": round(_r(d[name], s[name]), 3), "sketch_output": round(_r(s[name], o[name]), 3),
                          "driver_output": round(_r(d[name], o[name]), 3)}
        out["median"][name] = {k: round(float(np.median(sig[k][name])), 4) for k in faces}
    out["vergence_error"] = {"driver_sketch": round(float(np.mean(np.abs(s["vergence"] - d["vergence"]))), 4),
                             "sketch_output": round(float(np.mean(np.abs(o["vergence"] - s["vergence"]))), 4),
                             "driver_output": round(float(np.mean(np.abs(o["vergence"] - d["vergence"]))), 4)}
    out["jitter_x_driver"] = {k: round(_jitter(v) / max(_jitter(faces["driver"]), 1e-9), 3) for k, v in faces.items()}
    edges = np.quantile(d["yaw"], np.linspace(0, 1, bins + 1))
    out["vergence_by_driver_yaw"] = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (d["yaw"] >= lo) & (d["yaw"] <= hi)
        out["vergence_by_driver_yaw"].append({"yaw": [round(float(lo), 3), round(float(hi), 3)], "frames": int(m.sum()),
                                              **{k: round(float(np.median(sig[k]["vergence"][m])), 4) for k in faces}})
    return out


def yaw_ceiling(model, driver_faces: np.ndarray, fps: float) -> dict:
    """How much of the clip turns beyond the target's yaw coverage, and the yaw r
    (against the driver's) of the retargeted landmarks with and without the soft
    limits: a generator that drew its sketch perfectly reaches the limited one."""
    from models import topology as T
    from models.geometry import fit_similarity, viewer_signals
    from models.retarget import Retargeter, estimate_neutral, pose_parameters

    c = model.contract
    if c.coverage is None:
        return {}
    neutral = estimate_neutral(driver_faces[: max(1, int(round(fps)))])  # live calibrates on the first second
    limited = Retargeter(c.neutral_px, neutral, coverage=c.coverage)
    free = Retargeter(c.neutral_px, neutral)
    yaw = np.array([pose_parameters(fit_similarity(free.driver.neutral[T.STABLE_POINTS],
                                                   free.driver.to_canonical(f)[T.STABLE_POINTS]))["yaw"] for f in driver_faces])
    lo, hi = c.coverage.pose["yaw"]
    d = viewer_signals(driver_faces)["yaw"]
    return {"coverage_deg": [round(lo, 1), round(hi, 1)], "driver_deg_p5_p50_p95": [round(float(np.percentile(yaw, q)), 1) for q in (5, 50, 95)],
            "beyond_coverage": round(float(np.mean((yaw < lo) | (yaw > hi))), 3),
            "yaw_r_unlimited": round(_r(d, viewer_signals(np.array([free.retarget(f) for f in driver_faces], np.float64))["yaw"]), 3),
            "yaw_r_limited": round(_r(d, viewer_signals(np.array([limited.retarget(f) for f in driver_faces], np.float64))["yaw"]), 3)}


def main() -> None:
    from models.artifact import load_model_dir
    from models.errors import ReenactError
    from models.video import open_video

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--driver", required=True, type=Path)
    p.add_argument("--max-frames", type=int)
    p.add_argument("--bins", type=int, default=5, help="driver-yaw bins for the vergence")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    try:
        model = load_model_dir(args.model)
        open_video(args.driver)[0].release()  # a bad clip is named before the pipeline starts
    except ReenactError as e:
        sys.exit(f"transfer_split: {e}")
    faces = drive(model, args.driver, args.max_frames)
    if len(faces["driver"]) < 10:
        sys.exit(f"transfer_split: too few frames with a face in both driver and output ({len(faces['driver'])})")
    cap, info = open_video(args.driver)
    cap.release()
    report = {"model": str(args.model), "driver": str(args.driver), **split(faces, args.bins),
              "yaw_limits": yaw_ceiling(model, faces["driver"], info.fps)}
    text = json.dumps(report, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
