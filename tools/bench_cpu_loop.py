"""Issue 10's loop tuning, side by side in one run: `reenact bench` on one model and
driver clip under several [live] settings (sequential vs pipelined loop, OpenCV and
ONNX Runtime thread counts), at real-time pacing and flat out, interleaved over
``--rounds`` so that drift on a noisy machine hits every variant alike.

    .venv/bin/python tools/bench_cpu_loop.py MODEL_DIR VIDEO OUT.json [--rounds 2]

Prints a Markdown table (medians over rounds of each run's p50/p95/p99) for
docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {  # name -> --set overrides
    "sequential, OpenCV default threads, ORT 2": ["live.pipelined=false", "live.opencv_threads=0", "live.cpu_threads=2"],
    "sequential, OpenCV 1 thread, ORT 2": ["live.pipelined=false", "live.opencv_threads=1", "live.cpu_threads=2"],
    "pipelined, OpenCV 1 thread, ORT 2": ["live.pipelined=true", "live.opencv_threads=1", "live.cpu_threads=2"],
    "pipelined, OpenCV 1 thread, ORT 1": ["live.pipelined=true", "live.opencv_threads=1", "live.cpu_threads=1"],
}


def bench(model: str, video: str, sets: list[str], flat_out: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "reenact", "bench", "--model", model, "--source", video, "--json", str(out),
               "--fidelity-every", "0", "--quiet"] + [a for s in sets for a in ("--set", s)]
        if flat_out:
            cmd.append("--flat-out")
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("video")
    ap.add_argument("out")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", nargs="*", help="subset of the variant names (default: all)")
    args = ap.parse_args()
    names = args.variants or list(VARIANTS)
    runs: dict[str, list[dict]] = {f"{n} | {p}": [] for n in names for p in ("real-time", "flat-out")}
    for r in range(args.rounds):
        for name in names:
            for pacing in ("real-time", "flat-out"):
                rep = bench(args.model, args.video, VARIANTS[name], pacing == "flat-out")
                runs[f"{name} | {pacing}"].append(rep)
                print(f"round {r + 1}: {name} | {pacing}: {rep['fps']} fps, e2e p50 {rep['e2e_ms']['p50']} p99 "
                      f"{rep['e2e_ms']['p99']} ms, dropped {rep['frames_dropped']}, repeated {rep['frames_repeated']}", file=sys.stderr, flush=True)
    Path(args.out).write_text(json.dumps(runs, indent=1))
    med = lambda xs: round(statistics.median(xs), 2)  # noqa: E731
    print("| variant | pacing | fps | e2e p50 / p95 / p99 ms | landmarks p50 | generator p50 | dropped / repeated / captured |")
    print("|---|---|---|---|---|---|---|")
    for key, reps in runs.items():
        name, pacing = key.split(" | ")
        e = [r["e2e_ms"] for r in reps]
        st = [r["stages_ms"] for r in reps]
        print(f"| {name} | {pacing} | {med([r['fps'] for r in reps])} | {med([x['p50'] for x in e])} / {med([x['p95'] for x in e])} / "
              f"{med([x['p99'] for x in e])} | {med([s['landmarks']['p50'] for s in st])} | {med([s['inference']['p50'] for s in st])} | "
              f"{sum(r['frames_dropped'] for r in reps)} / {sum(r['frames_repeated'] for r in reps)} / "
              f"{sum(r['frames_captured'] for r in reps)} |")


if __name__ == "__main__":
    main()
