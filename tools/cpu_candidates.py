"""Issue 10's candidate study: small generators for the CPU tier, trained the same
number of steps on the same dataset, then measured side by side: GFLOP, parameters,
ONNX Runtime CPU latency (fp32, 2 threads, batch 1), validation metrics.

    .venv/bin/python tools/cpu_candidates.py DATASET OUT_DIR [--steps 1500]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live.engines import OrtEngine  # noqa: E402
from live.stats import summarize_ms  # noqa: E402
from models.artifact import load_model_dir  # noqa: E402
from models.config import ModelConfig, TrainConfig  # noqa: E402
from models.unet import UNetGenerator, architecture, count_parameters  # noqa: E402
from training.export import export  # noqa: E402
from training.train import train  # noqa: E402

CANDIDATES = {  # name -> (size, ngf, depth, upsample)
    "256-ngf16-transpose": (256, 16, 8, "transpose"),
    "256-ngf16-resize": (256, 16, 8, "resize"),
    "256-ngf24-resize": (256, 24, 8, "resize"),
    "128-ngf32-resize (upscaled)": (128, 32, 7, "resize"),
}


def gflop(cfg: ModelConfig, size: int) -> float:
    """Multiply-adds x 2 of one forward pass, from the conv layers."""
    g = UNetGenerator(cfg).eval()
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            total[0] += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.ConvTranspose2d):
            total[0] += inp[0].numel() * m.out_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]

    for m in g.modules():
        m.register_forward_hook(hook)
    with torch.no_grad():
        g(torch.zeros(1, 3, size, size))
    return 2 * total[0] / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=1500)
    args = ap.parse_args()
    rows = []
    previous = Path(args.out) / "candidates.json"  # re-timing trained candidates keeps their training time
    earlier = {r["name"]: r for r in json.loads(previous.read_text())} if previous.is_file() else {}
    for name, (size, ngf, depth, up) in CANDIDATES.items():
        out = Path(args.out) / name.split(" ")[0]
        cfg = TrainConfig(steps=args.steps, batch_size=4, val_every=args.steps, preview_every=args.steps,
                          checkpoint_every=args.steps, val_frames=64)
        t0 = time.monotonic()
        if not (out / "model.json").exists():
            train(args.dataset, out, model=ModelConfig(size=size, depth=depth, ngf=ngf, upsample=up), cfg=cfg, progress=False)
        minutes = (time.monotonic() - t0) / 60
        if minutes < 0.5 and name in earlier:
            minutes = earlier[name]["train_minutes"]
        export(out, log=lambda s: None)
        model = load_model_dir(out)
        eng = OrtEngine(model, provider="cpu")
        eng.warmup()
        sketch = np.zeros((size, size, 3), np.uint8)
        times = []
        for _ in range(200):
            t = time.perf_counter()
            eng.infer(sketch)
            times.append(time.perf_counter() - t)
        ucfg = ModelConfig(ngf=ngf, depth=depth, dropout=0.5, upsample=up)
        row = {"name": name, "size": size, "params_M": round(count_parameters(UNetGenerator(ucfg)) / 1e6, 2),
               "gflop": round(gflop(ucfg, size), 2), "ort_cpu_ms": summarize_ms(times), "train_minutes": round(minutes, 1),
               "steps": args.steps, **{k: round(v, 4) for k, v in model.meta["metrics"].items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    (Path(args.out) / "candidates.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
