"""Issue 10's side-by-side figures: `reenact bench` on a model directory's full-size
model and its CPU tier (MODEL_DIR/cpu), on every driver clip, at real-time pacing and
flat out, in one run (interleaved: each clip and pacing runs both tiers back to back).

    .venv/bin/python tools/bench_tiers.py MODEL_DIR OUT.json [--clips DIR] [--fidelity-every 1]

Prints a Markdown table for docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(model: str, tier: str, video: Path, flat_out: bool, fidelity_every: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "reenact", "bench", "--model", model, "--source", str(video), "--json", str(out),
               "--fidelity-every", str(fidelity_every), "--quiet", "--set", f"live.model_tier={tier}"]
        if flat_out:
            cmd.append("--flat-out")
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--clips", default=str(ROOT.parent / "shared" / "data" / "faces"))
    ap.add_argument("--fidelity-every", type=int, default=1)
    args = ap.parse_args()
    rows = []
    for clip in sorted(Path(args.clips).glob("driver_*.mp4")):
        for pacing in ("real-time", "flat-out"):
            for tier in ("cpu", "full"):
                rep = bench(args.model, tier, clip, pacing == "flat-out", args.fidelity_every)
                rep.update(tier=tier, clip=clip.stem.replace("driver_liveportrait_", ""))
                rows.append(rep)
                print(f"{rep['clip']} {pacing} {tier}: {rep['fps']} fps, e2e p50 {rep['e2e_ms']['p50']} p99 {rep['e2e_ms']['p99']} ms, "
                      f"dropped {rep['frames_dropped']}, repeated {rep['frames_repeated']}", file=sys.stderr, flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print("| driver | pacing | model | frames out / captured | fps | dropped | repeated | e2e p50 / p95 / p99 ms | "
          "landmarks p50 | generator p50 | fidelity (IOD) | face found |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        e, st, fi = r["e2e_ms"], r["stages_ms"], r.get("fidelity", {})
        name = f"{'CPU tier' if r['tier'] == 'cpu' else 'full-size'} ({Path(r['model']).name})"
        found = f"{100 * fi['detection_rate']:.1f} % of {fi['frames']}" if fi else "–"
        print(f"| {r['clip']} | {r['pacing']} | {name} | {r['frames_out']} / {r['frames_captured']} | {r['fps']} | {r['frames_dropped']} | "
              f"{r['frames_repeated']} | {e['p50']} / {e['p95']} / {e['p99']} | {st['landmarks']['p50']} | {st['inference']['p50']} | "
              f"{fi.get('landmark_error_iod', float('nan')):.4f} | {found} |")


if __name__ == "__main__":
    main()
