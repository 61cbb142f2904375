"""Distillation: derive a small (CPU-tier) generator from a trained full-size one.

``reenact train DATASET --teacher MODEL_DIR`` trains a *student* with the ``[model]``
architecture (``--preset cpu`` picks the measured CPU preset) on two kinds of pairs:

* the dataset's own pairs, exactly as plain training does (real photos; GAN, feature
  matching and L1), so the student still learns from the target's real frames;
* *teacher pairs*: a sketch and the teacher's rendering of it, learnt with weighted L1
  (``train.teacher_l1``). The sketches are the dataset's training frames plus driver
  faces retargeted onto the target: expressions and head poses that the target's own
  clip may lack. The driver ``puppet`` (the default) is the embedded puppet driver's
  scripted expressions: jaw, smile, blink, brows, head turns.

The student keeps the teacher's contract (sketch spec, framing, neutral): the teacher
pairs are drawn with it, and training refuses a dataset whose contract differs.

The teacher's renderings are made once and cached in the student's directory
(``teacher_pairs.npz``, keyed by teacher, dataset and drivers), so ``--resume`` does
not redo them and sees exactly the same pairs.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from models.artifact import ArtifactError, ModelDir, load_generator, load_model_dir
from models.files import atomic_path
from models.framing import Framing
from models.retarget import Retargeter, estimate_neutral
from models.sketch import SketchSpec, render_sketch
from training.data import Augment, PairSet, to_images, to_tensor
from models.errors import ModelError

DRIVER_STRIDE = 2  # every 2nd driver frame: neighbours at 30 fps add little
PUPPET_SECONDS = 40.0  # the default driver: this much of the puppet's script at 15 fps
CACHE = "teacher_pairs.npz"
PUPPET = "puppet"  # as a driver name: the embedded puppet driver's script


class DistillError(ModelError):
    """Distillation cannot start; the message says what to do."""


def load_teacher(path: str | Path) -> ModelDir:
    try:
        teacher = load_model_dir(path)
    except ArtifactError as e:
        raise DistillError(f"--teacher {path}: {e}") from None
    if not teacher.meta.get("provenance", {}).get("complete", True):
        raise DistillError(f"--teacher {path}: its training was interrupted; finish it with `reenact train --resume` first")
    return teacher


def video_faces(path: str | Path, *, stride: int = DRIVER_STRIDE, detector=None) -> np.ndarray:
    """Face Mesh landmarks of every ``stride``-th frame with a face: (F, 478, 3) pixels."""
    import cv2

    from models.landmarks import FaceMeshDetector

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DistillError(f"--drivers: cannot open {str(path)!r} as a video")
    own = detector is None
    detector = detector or FaceMeshDetector(tracking=True)
    faces, n = [], 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if n % stride == 0:
                lm = detector.detect(frame)
                if lm is not None:
                    faces.append(lm.pixels())
            n += 1
    finally:
        cap.release()
        if own:
            detector.close()
    if len(faces) < 10:
        raise DistillError(f"--drivers: {path} has {len(faces)} frames with a face (of {n}); a driver clip needs a visible face")
    return np.stack(faces).astype(np.float32)


def puppet_faces(seconds: float = PUPPET_SECONDS, fps: float = 15.0, seed: int = 101) -> np.ndarray:
    """The embedded driver puppet's exact landmarks over its script: (F, 478, 3) pixels."""
    from live.sources import DRIVER_SHAPE, PuppetSource

    src = PuppetSource(seed=seed, shape=DRIVER_SHAPE, size=(512, 512), fps=fps)
    return np.stack([src.points(i) for i in range(int(seconds * fps))]).astype(np.float32)


def retarget_onto(faces: np.ndarray, target_neutral: np.ndarray) -> np.ndarray:
    """A driver clip's faces (F, 478, 3) moved onto the target, as live would with the
    clip's own neutral: (F, 478, 3) float32 target source-video pixels."""
    r = Retargeter(target_neutral, estimate_neutral(faces))
    return np.stack([r.retarget(f) for f in faces]).astype(np.float32)


def render_with(G: torch.nn.Module, source_px: np.ndarray, framing: Framing, spec: SketchSpec, device: torch.device,
                *, batch: int = 8, progress: bool = False) -> np.ndarray:
    """The generator's photos for faces (N, 478, 3) source px: (N, H, W, 3) uint8 BGR."""
    from tqdm import tqdm

    from training.train import generate

    out = np.empty((len(source_px), spec.height, spec.width, 3), np.uint8)
    for i in tqdm(range(0, len(source_px), batch), desc="teacher", unit="batch", disable=not progress, dynamic_ncols=True):
        sketches = np.stack([render_sketch(framing.apply(p), spec) for p in source_px[i : i + batch]])
        out[i : i + batch] = to_images(generate(G, to_tensor(sketches), device, batch))
    return out


def _cache_key(teacher: ModelDir, dataset_key: str, drivers: list[str]) -> str:
    blob = json.dumps({"teacher": teacher.meta.get("model_id"), "dataset": dataset_key, "drivers": drivers,
                       "stride": DRIVER_STRIDE, "puppet": PUPPET_SECONDS})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def teacher_pairs(teacher: ModelDir, trainset: PairSet, dataset_key: str, *, drivers: list[str], out: Path,
                  device: torch.device, augment: Augment | None, seed: int, progress: bool = True,
                  log: Callable[[str], None] = print) -> PairSet:
    """The teacher's renderings of the dataset's training faces and of the driver clips
    retargeted onto the target, as a PairSet with the student's augmentation.
    ``drivers``: video paths and/or "puppet" (the embedded puppet driver); [] = ["puppet"]."""
    key = _cache_key(teacher, dataset_key, drivers)
    cache = out / CACHE
    if cache.is_file():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                log(f"teacher pairs: {len(z['photos'])} from {cache}")
                return _pairs(z["source_px"], z["photos"], teacher, trainset, augment, seed)
        log(f"{cache} was made for another teacher, dataset or driver list; rendering again")
    neutral = teacher.contract.neutral_px
    clips = [(PUPPET, puppet_faces()) if d == PUPPET else (Path(d).name, video_faces(d)) for d in drivers or [PUPPET]]
    driven = [retarget_onto(faces, neutral) for _, faces in clips]
    for (name, faces), _ in zip(clips, driven):
        log(f"teacher pairs: {len(faces)} faces retargeted from {name}")
    source_px = np.concatenate([trainset.source_px, *driven])
    log(f"teacher pairs: rendering {len(source_px)} sketches with the teacher ({len(trainset)} dataset, {len(source_px) - len(trainset)} driven)")
    G = load_generator(teacher, device)
    photos = render_with(G, source_px, teacher.contract.framing, teacher.contract.sketch, device, progress=progress)
    del G
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache, suffix=".tmp.npz") as tmp:
        np.savez(tmp, key=np.array(key), source_px=source_px, photos=photos)
    return _pairs(source_px, photos, teacher, trainset, augment, seed)


def _pairs(source_px, photos, teacher: ModelDir, trainset: PairSet, augment, seed: int) -> PairSet:
    return PairSet.from_arrays(source_px, photos, teacher.contract.framing, teacher.contract.sketch, seed=seed + 1,
                               augment=augment, mouth_weight=trainset.mouth_weight, eye_weight=trainset.eye_weight)
