"""Training throughput (generator+discriminator steps per second) at several sizes,
using the trainer's own ``train_step`` on random tensors (data loading excluded; it is
measured separately by a real `reenact train` run).

    .venv/bin/python tools/bench_train.py [--steps 20] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live.stats import summarize_ms  # noqa: E402
from models.config import TrainConfig  # noqa: E402
from models.patchgan import MultiScaleDiscriminator  # noqa: E402
from models.config import ModelConfig  # noqa: E402
from models.unet import UNetGenerator, architecture, count_parameters  # noqa: E402
from training.train import _autocast, train_step  # noqa: E402

CASES = [  # (size, generator config, batch)
    (128, ModelConfig(ngf=32, depth=7, upsample="resize"), 4),
    (256, ModelConfig(ngf=64, depth=8), 4),
    (512, ModelConfig(ngf=64, depth=9), 1),
]


def bench(size: int, ucfg: ModelConfig, batch: int, steps: int, device: torch.device, amp: str) -> dict:
    cfg = TrainConfig(batch_size=batch, amp=amp)
    torch.manual_seed(0)
    G, D = UNetGenerator(ucfg).to(device), MultiScaleDiscriminator(6, cfg.ndf, 3, cfg.d_scales).to(device)
    if device.type == "cuda":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    autocast, scaler = _autocast(device, amp)
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    y = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    w = torch.ones(batch, 1, size, size, device=device)
    times = []
    for i in range(steps + 3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(G, D, opt_g, opt_d, scaler, autocast, cfg, x, y, w)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:  # warm-up
            times.append(time.perf_counter() - t0)
    s = summarize_ms(times)
    return {"size": size, "generator": architecture(ucfg), "params_M": round(count_parameters(G) / 1e6, 1), "batch": batch,
            "it_per_s": round(1000 / s["p50"], 3), "images_per_s": round(batch * 1000 / s["p50"], 2), "step_ms": s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", default="auto")
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = [bench(s, c, b, args.steps, device, args.amp) for s, c, b in CASES]
    print(json.dumps({"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
