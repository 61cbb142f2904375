"""The generator alone: ONNX Runtime on the CPU, 1 and 2 intra-op threads, worker
spinning on and off, with a 20 ms pause between inferences (the rest of a live frame,
during which the threads go idle). Prints p50/p95 latency and CPU time per inference.

    .venv/bin/python tools/bench_generator.py MODEL_DIR/generator_fp32.onnx [--runs 100] [--rounds 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def time_session(path: str, threads: int, spin: bool, runs: int) -> tuple[float, float, float]:
    """(p50 ms, p95 ms, CPU ms per inference) of one fresh session."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    x = np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)
    for _ in range(10):  # warm-up
        session.run(None, {inp.name: x})
    times, cpu0 = [], time.process_time()
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, {inp.name: x})
        times.append((time.perf_counter() - t) * 1000)
        time.sleep(0.02)
    cpu_ms = (time.process_time() - cpu0) * 1000 / runs
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), cpu_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2, help="each setting this many times, interleaved; medians")
    args = ap.parse_args()
    results: dict[tuple[int, bool], list] = {}
    for _ in range(args.rounds):
        for threads in (1, 2):
            for spin in (True, False):
                results.setdefault((threads, spin), []).append(time_session(args.onnx, threads, spin, args.runs))
    for (threads, spin), rows in results.items():
        p50, p95, cpu = np.median(np.array(rows), axis=0)
        print(f"threads {threads}, spinning {'on ' if spin else 'off'}: p50 {p50:.2f} ms, p95 {p95:.2f} ms, CPU {cpu:.2f} ms per inference")


if __name__ == "__main__":
    main()
