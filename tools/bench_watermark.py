"""Watermark robustness and cost on the real clips.

For each clip: frames letterboxed into 1280x720 the way live composes a square target,
watermarked (and, for the false-positive side, not), encoded with libx264 at three
call-like bitrates and two scales, decoded, and read back: whole clip and 4 s stretches.

    .venv/bin/python tools/bench_watermark.py ../shared/data/faces
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live.pipeline import fit_into  # noqa: E402
from live.stats import summarize_ms  # noqa: E402
from live.trust import Watermarker, read_video  # noqa: E402

ENCODINGS = [(2500, 720), (1000, 720), (500, 720), (1250, 360), (500, 360), (250, 360)]
MODEL_ID = "5eed1e55"


def encode(frames, path, kbps, height):
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "1280x720",
           "-r", "30", "-i", "-", "-vf", f"scale=-2:{height}", "-c:v", "libx264", "-preset", "veryfast", "-b:v", f"{kbps}k",
           "-pix_fmt", "yuv420p", str(path)]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for f in frames:
        p.stdin.write(f.tobytes())
    p.stdin.close()
    p.wait()


def main(folder: str) -> None:
    rows, costs = [], []
    tmp = Path(tempfile.mkdtemp())
    wm = Watermarker(MODEL_ID, (1280, 720))
    for clip in sorted(Path(folder).glob("*.mp4")):
        cap = cv2.VideoCapture(str(clip))
        frames = []
        while (r := cap.read())[0]:
            frames.append(fit_into(r[1], (1280, 720)))
        marked = []
        for i, f in enumerate(frames):
            g = f.copy()
            t0 = time.perf_counter()
            wm.apply(g, i)
            costs.append(time.perf_counter() - t0)
            marked.append(g)
        for kbps, h in ENCODINGS:
            encode(marked, tmp / "m.mp4", kbps, h)
            encode(frames, tmp / "c.mp4", kbps, h)
            got, gw = read_video(str(tmp / "m.mp4"), window=120)
            clean, cw = read_video(str(tmp / "c.mp4"), window=120)
            rows.append({"clip": clip.name, "kbps": kbps, "height": h, "frames": len(frames),
                         "whole_found": got.present and got.model_id == MODEL_ID, "whole_z": round(got.confidence, 1),
                         "whole_margin": round(got.bit_margin, 2),
                         "windows_found": sum(w.present and w.model_id == MODEL_ID for w in gw), "windows": len(gw),
                         "clean_whole_present": clean.present, "clean_z": round(clean.confidence, 2),
                         "clean_windows_present": sum(w.present for w in cw), "clean_windows": len(cw)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"embed_ms_720p": summarize_ms(costs)}))


if __name__ == "__main__":
    main(sys.argv[1])
