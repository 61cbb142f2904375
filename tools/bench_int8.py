"""Is an int8 CPU artifact worth it? Static int8 quantisation (ONNX Runtime, QDQ and
QOperator formats, per-channel weights, calibrated on 32 of the dataset's sketches) of a
fp32 generator, timed against the fp32 ONNX on the CPU provider (2 threads, 150 runs
after warm-up), with the mean error in uint8 levels.

    .venv/bin/python tools/bench_int8.py MODEL_DIR/generator_fp32.onnx DATASET
"""
from __future__ import annotations

import glob
import sys
import tempfile
import time

import cv2
import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static


def timed(path: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for _ in range(10):
        s.run(None, {"sketch": x})
    t = []
    for _ in range(150):
        a = time.perf_counter()
        y = s.run(None, {"sketch": x})[0]
        t.append(time.perf_counter() - a)
    return np.percentile(t, [50, 99]) * 1000, y


def main() -> None:
    src, dataset = sys.argv[1], sys.argv[2]
    out = tempfile.mkdtemp()
    files = sorted(glob.glob(f"{dataset}/sketches/*.png"))[:32]
    data = [(cv2.imread(f)[None].transpose(0, 3, 1, 2).astype(np.float32) / 127.5) - 1 for f in files]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"sketch": d} for d in data])

        def get_next(self):
            return next(self.it, None)

    quant_pre_process(src, f"{out}/pre.onnx")
    ref_t, ref = timed(src, data[0])
    print(f"fp32: p50 {ref_t[0]:.2f} ms, p99 {ref_t[1]:.2f} ms")
    for fmt, name in ((QuantFormat.QDQ, "qdq"), (QuantFormat.QOperator, "qoperator")):
        quantize_static(f"{out}/pre.onnx", f"{out}/{name}.onnx", Reader(), quant_format=fmt, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        t, y = timed(f"{out}/{name}.onnx", data[0])
        print(f"int8 {name}: p50 {t[0]:.2f} ms, p99 {t[1]:.2f} ms, mean |err| {np.abs(y - ref).mean() * 127.5:.2f} uint8 levels")


if __name__ == "__main__":
    main()
