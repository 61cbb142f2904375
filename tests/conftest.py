"""Shared fixtures: the real shared clips (skip without them, unless CI is set) and
a cached Face Mesh detector."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
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
    import cv2

    from models.landmarks import FaceMeshDetector

    cap = cv2.VideoCapture(str(path))
    out = []
    with FaceMeshDetector(tracking=True) as det:
        i = 0
        while limit is None or len(out) < limit:
            ok, img = cap.read()
            if not ok:
                break
            lm = det.detect(img)
            if i % every == 0:
                out.append(None if lm is None else lm.pixels())
            i += 1
    cap.release()
    return out
