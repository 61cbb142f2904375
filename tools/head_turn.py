"""A driver that turns far beyond what the target's clip shows: before (another
version's pipeline, e.g. c93fc15) and after (this one), measured and pictured.

The driver is the synthetic puppet scripted to turn ``--turn`` times its usual range
(yaw up to 18 deg x turn); the target is a model of the puppet (the only safe subject
for a committed picture). For every frame it measures the output's head yaw (Face Mesh
on the composed output, relative to the target's neutral) against min(driver yaw, the
target's limit); the picture shows the frames that turn furthest: driver | before | after.

    .venv/bin/python tools/head_turn.py --model tests/data/puppet_model --before-tree /work/base \\
        --out docs/images/head_turn.png --json head_turn.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from eval_other_version import RENDER  # the other version's renderer: same API since c93fc15

    from models.artifact import load_model_dir
    from models.config import load_config
    from models.geometry import head_pose
    from models.landmarks import FaceMeshDetector
    from models.puppet import DRIVER_SHAPE, PuppetScript
    from models.video import write_video
    from reenact import eval as ev

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--before-tree", required=True)
    p.add_argument("--turn", type=float, default=2.5)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--out", required=True)
    p.add_argument("--json", required=True)
    args = p.parse_args()

    cfg = load_config(None)
    model = load_model_dir(args.model)
    setup = ev.Setup(model, cfg.live, cfg.landmarks, (cfg.output.width, cfg.output.height), print)
    tmp = Path(tempfile.mkdtemp(prefix="head_turn_"))
    script = PuppetScript(seed=5, shape=DRIVER_SHAPE, size=(480, 480), turn=args.turn)
    n = int(args.seconds * script.fps)
    driver = tmp / "driver.mp4"
    write_video(driver, (script.image(i) for i in range(n)), script.fps)
    frames = [script.image(i) for i in range(n)]

    before = tmp / "before.mkv"
    job = tmp / "job.json"
    job.write_text(json.dumps({"model": str(Path(args.model).resolve()), "engine": "ort-cpu", "out_size": list(setup.out_size),
                               "items": [{"path": str(driver), "first": 0, "last": n, "fps": script.fps, "out": str(before)}]}))
    import os
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(Path(args.before_tree).resolve()))
    subprocess.run([sys.executable, "-c", RENDER, str(job)], cwd=args.before_tree, check=True, env=env)
    cap = cv2.VideoCapture(str(before))
    before_frames = [cap.read()[1] for _ in range(n)]
    renderer = ev.PipelineRenderer(setup)
    after_frames = [f.copy() for f in renderer.render(frames, script.fps)]
    renderer.close()

    neutral_t = model.contract.neutral_px.astype(np.float64)
    lo, hi = model.contract.coverage.pose["yaw"]
    rest = script.points(0)
    driver_yaw = np.array([head_pose(script.points(i), rest)[0] for i in range(n)])
    rows, report = [], {"limit_deg": [round(lo, 2), round(hi, 2)], "turn": args.turn}
    for name, outs in (("before", before_frames), ("after", after_frames)):
        with FaceMeshDetector(tracking=True) as det:
            yaws = [np.nan if (lm := det.detect(f)) is None else head_pose(lm.pixels(), neutral_t)[0] for f in outs]
        report[name] = _yaw_report(np.array(yaws), driver_yaw, lo, hi)
    far = np.argsort(-np.abs(driver_yaw))[::12][:4]
    region = renderer.compositor.source_region
    for i in sorted(far):
        x, y, w, h = region
        tiles = [cv2.resize(frames[i], (360, 360))] + [cv2.resize(f[y : y + h, x : x + w], (360, 360)) for f in (before_frames[i], after_frames[i])]
        for tile, label in zip(tiles, (f"driver yaw {driver_yaw[i]:+.0f}", "before (c93fc15)", "after")):
            cv2.putText(tile, label, (8, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        rows.append(np.hstack(tiles))
    cv2.imwrite(args.out, np.vstack(rows))
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


def _yaw_report(out_yaw: np.ndarray, driver_yaw: np.ndarray, lo: float, hi: float) -> dict:
    """How far the output's yaw is from min(driver yaw, the limit), where the driver goes beyond."""
    want = np.clip(driver_yaw, lo, hi)
    beyond = (driver_yaw < lo - 5) | (driver_yaw > hi + 5)
    ok = ~np.isnan(out_yaw)
    err = np.abs(out_yaw - want)
    return {"frames_beyond": int(beyond.sum()), "detection_rate": round(float(ok.mean()), 4),
            "abs_error_beyond_p50": round(float(np.nanmedian(err[beyond])), 2) if beyond.any() else None,
            "abs_error_beyond_p95": round(float(np.nanpercentile(err[beyond], 95)), 2) if beyond.any() else None,
            "max_output_yaw": round(float(np.nanmax(np.abs(out_yaw))), 2)}


if __name__ == "__main__":
    main()
