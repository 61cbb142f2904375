"""`reenact bench` of several versions (git worktrees), interleaved, on the same model and
clip: the side-by-side figures of docs/BENCHMARKS.md.

    .venv/bin/python tools/bench_versions.py --model M --source CLIP --rounds 3 --flat-out \\
        --version before=/work/pre15:live.cli --version after=/work/main:reenact [--taskset 0] --json out.json

A version may name its own model directory, ``NAME=TREE:MODULE@MODEL`` (the same weights
exported by each version's own exporter); the others use ``--model``.

Each round runs every version once, in turn, so a change in the machine's load touches
all of them alike; the table gives the median over the rounds. The process's CPU time
per output frame is measured around each run (user + system, every thread: getrusage of
the child), so it is comparable across versions whether or not they report it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def run_once(tree: str, module: str, model: str, args: argparse.Namespace, out: Path, loop_s: float | None = None) -> dict:
    cmd = [sys.executable, "-m", module, "bench", "--model", model, "--source", args.source, "--json", str(out),
           "--fidelity-every", "0", *(["--flat-out"] if args.flat_out else []), *sum((["--set", s] for s in args.set), []),
           *(["--loop", str(loop_s)] if loop_s else [])]
    if args.taskset is not None:
        cmd = ["taskset", "-c", args.taskset, *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=tree, env=dict(os.environ, PYTHONPATH=tree), check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = json.loads(out.read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # the whole process, start-up included
    report["process_cpu_s"] = cpu
    return report


def summary(runs: list[dict]) -> dict:
    med = lambda f: round(float(np.median([f(r) for r in runs])), 2)  # noqa: E731
    stages = sorted(set().union(*(r["stages_ms"] for r in runs)))
    return {
        "rounds": len(runs), "fps": med(lambda r: r["fps"]),
        "e2e_p50": med(lambda r: r["e2e_ms"]["p50"]), "e2e_p95": med(lambda r: r["e2e_ms"]["p95"]), "e2e_p99": med(lambda r: r["e2e_ms"]["p99"]),
        "cpu_ms_per_frame_loop": med(lambda r: r.get("cpu_ms_per_frame", float("nan"))),
        "frames_out": med(lambda r: r["frames_out"]), "dropped": med(lambda r: r["frames_dropped"]), "repeated": med(lambda r: r["frames_repeated"]),
        "stages_p50": {k: med(lambda r: r["stages_ms"].get(k, {}).get("p50", 0.0)) for k in stages},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--version", action="append", required=True, metavar="NAME=TREE:MODULE[@MODEL]")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--flat-out", action="store_true")
    p.add_argument("--taskset", help="run each bench pinned to these cores, e.g. 0")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--cpu-per-frame", type=float, metavar="SECONDS",
                   help="also measure CPU time per frame: two runs looping the clip for SECONDS and twice that; the "
                        "difference cancels start-up, so versions that do not report it compare too")
    p.add_argument("--json", required=True)
    args = p.parse_args()
    args.model, args.source = str(Path(args.model).resolve()), str(Path(args.source).resolve())
    versions = []
    for v in args.version:
        name, rest = v.split("=", 1)
        rest, _, model = rest.partition("@")
        tree, module = rest.rsplit(":", 1)
        versions.append((name, tree, module, str(Path(model).resolve()) if model else args.model))
    runs: dict[str, list[dict]] = {name: [] for name, *_ in versions}
    tmp = Path(tempfile.mkdtemp(prefix="bench_versions_"))
    cpu: dict[str, list[float]] = {name: [] for name, *_ in versions}
    for r in range(args.rounds):
        for name, tree, module, model in versions:
            runs[name].append(run_once(tree, module, model, args, tmp / f"{name}_{r}.json"))
            print(f"round {r + 1} {name}: {runs[name][-1]['fps']} fps, e2e p50 {runs[name][-1]['e2e_ms']['p50']} ms", flush=True)
            if args.cpu_per_frame:
                short = run_once(tree, module, model, args, tmp / f"{name}_{r}_s.json", args.cpu_per_frame)
                long = run_once(tree, module, model, args, tmp / f"{name}_{r}_l.json", 2 * args.cpu_per_frame)
                cpu[name].append(1000 * (long["process_cpu_s"] - short["process_cpu_s"]) / (long["frames_out"] - short["frames_out"]))
                print(f"round {r + 1} {name}: {cpu[name][-1]:.2f} ms CPU per frame", flush=True)
    result = {name: summary(rs) for name, rs in runs.items()}
    for name, values in cpu.items():
        if values:
            result[name]["cpu_ms_per_frame"] = round(float(np.median(values)), 2)
            result[name]["cpu_ms_per_frame_rounds"] = [round(v, 2) for v in values]
    Path(args.json).write_text(json.dumps({"args": vars(args), "versions": result, "runs": runs}, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
