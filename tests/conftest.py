"""Shared fixtures: the real shared clips (skip without them, unless CI is set) and
a cached Face Mesh detector."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
# A small trained model of the synthetic puppet (tools/make_test_model.py): a face Face
# Mesh reads, fast enough for real time on one slow core.
PUPPET_MODEL = Path(__file__).resolve().parent / "data" / "puppet_model"
TARGET_CLIP = CLIPS / "target_liveportrait_d6.mp4"
DRIVER_CLIPS = [CLIPS / f"driver_liveportrait_{n}.mp4" for n in ("d3", "d10", "d18")]


@pytest.fixture(scope="session")
def clips_dir() -> Path:
    """../shared/data/faces, which CI has and a user's clone does not."""
    if not TARGET_CLIP.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the shared clips are missing: {CLIPS}")
        pytest.skip(f"real clips not present ({CLIPS}); they exist beside the repo in CI only")
    return CLIPS


def read_landmarks(path: Path, *, every: int = 1, limit: int | None = None):
    """Face Mesh (tracking) pixel landmarks of a video's frames: list of (478, 3) or None."""
    from models.landmarks import FaceMeshDetector
    from models.video import frames

    out = []
    with FaceMeshDetector(tracking=True) as det:
        for i, img in enumerate(frames(path)):
            if limit is not None and len(out) >= limit:
                break
            lm = det.detect(img)  # every frame: tracking mode needs them in order
            if i % every == 0:
                out.append(None if lm is None else lm.pixels())
    return out


@pytest.fixture(scope="session")
def puppet_dataset(tmp_path_factory):
    """A small hermetic dataset: 4 s of the synthetic target puppet, 64 px framing."""
    from live.sources import TARGET_SHAPE, PuppetSource
    from models.video import write_video
    from models.config import DatasetConfig, LandmarksConfig, ModelConfig, SketchConfig
    from training.dataset import SYNTHETIC_CONSENT, build_dataset

    root = tmp_path_factory.mktemp("puppet_ds")
    clip = root / "puppet.mp4"
    write_video(clip, (f.image for f in PuppetSource(seed=11, shape=TARGET_SHAPE, size=(192, 192), frames=120)), 30.0)
    out = root / "ds"
    build_dataset([clip], out, consent=SYNTHETIC_CONSENT, dataset=DatasetConfig(val_block_seconds=0.5, val_fraction=0.2), landmarks=LandmarksConfig(),
                  sketch=SketchConfig(), model=ModelConfig(size=64, depth=6), progress=False, log=lambda s: None)
    return out


@pytest.fixture(scope="session")
def real_dataset(clips_dir, tmp_path_factory):
    """`reenact dataset` on the real target clip (d6), built once per test session."""
    from reenact.cli import main

    out = tmp_path_factory.mktemp("real_ds") / "d6"
    assert main(["dataset", str(TARGET_CLIP), "--out", str(out), "--quiet",
                 "--target-name", "LivePortrait sample d6 (test data, see SOURCES.md)", "--consent"]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_model(puppet_dataset, tmp_path_factory):
    """A barely trained 64 px model of the puppet, exported: enough to run live."""
    from models.config import ModelConfig, TrainConfig
    from training.export import export
    from training.train import train

    out = tmp_path_factory.mktemp("tiny_model") / "m"
    cfg = TrainConfig(steps=2, batch_size=2, ndf=8, val_frames=2, checkpoint_every=1000, preview_every=1000, val_every=1000)
    train(puppet_dataset, out, model=ModelConfig(size=64, depth=6, ngf=8), cfg=cfg, progress=False, log=lambda s: None)
    export(out, log=lambda s: None)
    return out


def ctrl_c_as_at_a_terminal() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: SIGINT's default
    disposition, as under a user's terminal. A runner that starts the tests in the
    background without job control hands SIGINT down ignored, and Python then never
    raises KeyboardInterrupt: the test would measure the runner, not reenact."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
