"""Landmark latency per frame (Face Mesh, tracking mode) on a real clip, at the clip's
own size and letterboxed into 1280x720 like a webcam frame: on the whole frame, and
on a face-sized crop as live does (``FaceCropTracker``), interleaved per size.

    .venv/bin/python tools/bench_landmarks.py ../shared/data/faces/target_liveportrait_d6.mp4
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live.stats import summarize_ms  # noqa: E402
from models.landmarks import FaceCropTracker, FaceMeshDetector  # noqa: E402


def to_720p(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = 720 / h
    scaled = cv2.resize(img, (int(round(w * s)), 720), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((720, 1280, 3), np.uint8)
    x = (1280 - scaled.shape[1]) // 2
    out[:, x : x + scaled.shape[1]] = scaled
    return out


def run(frames: list[np.ndarray], warmup: int = 30, crop: bool = False) -> dict:
    times, found = [], 0
    with (FaceCropTracker() if crop else FaceMeshDetector(tracking=True)) as det:
        for i, f in enumerate(frames):
            t0 = time.perf_counter()
            lm = det.detect(f)
            dt = time.perf_counter() - t0
            found += lm is not None
            if i >= warmup:
                times.append(dt)
    return {"size": f"{frames[0].shape[1]}x{frames[0].shape[0]}", "frames": len(frames), "found": found, **summarize_ms(times)}


def main(path: str) -> None:
    cap = cv2.VideoCapture(path)
    frames = []
    while (r := cap.read())[0]:
        frames.append(r[1])
    hd_frames = [to_720p(f) for f in frames]
    report = {"clip": Path(path).name, "machine": f"{platform.machine()} {platform.processor() or ''} cores={__import__('os').cpu_count()}"}
    for name, clip in (("native", frames), ("1280x720", hd_frames)):
        report[name] = run(clip)
        report[f"{name} crop"] = run(clip, crop=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
