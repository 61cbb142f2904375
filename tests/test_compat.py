"""Directories made by an earlier reenact keep working: a dataset and a model directory
made at commit c93fc15 (tests/data/c93fc15) load, run live, and resume training."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from models.artifact import load_model_dir
from models.config import ModelConfig, TrainConfig

OLD = Path(__file__).parent / "data" / "c93fc15"


def test_an_old_model_directory_verifies_and_runs():
    from live.engines import create_engine
    from models.sketch import render_sketch

    model = load_model_dir(OLD / "model")  # every file's size and sha256, the contract, the sketch hash
    c = model.contract
    sketch = render_sketch(c.framing.apply(c.neutral_px), c.sketch)
    a, b = create_engine(model, "ort-cpu").infer(sketch), create_engine(model, "torch-cpu").infer(sketch)
    assert a.shape == (c.sketch.height, c.sketch.width, 3) and np.abs(a.astype(int) - b.astype(int)).mean() < 0.5


def test_an_old_dataset_and_checkpoint_resume(tmp_path):
    from training.train import train

    shutil.copytree(OLD / "dataset", tmp_path / "dataset")
    shutil.copytree(OLD / "model", tmp_path / "model")
    cfg = TrainConfig(steps=3, batch_size=2, ndf=4, val_frames=2, checkpoint_every=1000, preview_every=1000, val_every=1000)
    summary = train(tmp_path / "dataset", tmp_path / "model", model=ModelConfig(size=64, depth=6, ngf=4), cfg=cfg, resume=True,
                    progress=False, log=lambda s: None)
    assert summary["step"] == 3 and not summary["stopped"]
    assert load_model_dir(tmp_path / "model").meta["provenance"]["steps"] == 3
