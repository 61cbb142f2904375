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

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from models.artifact import ArtifactError, Contract, ModelDir, load_generator, load_model_dir
from models.config import ModelConfig, TrainConfig
from models.errors import ModelError
from models.files import atomic_path
from models.framing import Framing
from models.pixels import images_to_tensor, tensor_to_images
from models.puppet import DRIVER_SHAPE, PuppetScript
from models.retarget import Retargeter, estimate_neutral
from models.sketch import SketchSpec, render_sketch
from models.video import frames
from training.data import Augment, PairSet
from training.dataset import load_landmarks, load_manifest
from training.train import ExtraPairs, generate, train

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
    from models.landmarks import FaceMeshDetector

    own = detector is None
    detector = detector or FaceMeshDetector(tracking=True)
    faces, n = [], 0
    try:
        for n, frame in enumerate(frames(path, error=DistillError), start=1):
            if (n - 1) % stride == 0 and (lm := detector.detect(frame)) is not None:
                faces.append(lm.pixels())
    finally:
        if own:
            detector.close()
    if len(faces) < 10:
        raise DistillError(f"--drivers: {path} has {len(faces)} frames with a face (of {n}); a driver clip needs a visible face")
    return np.stack(faces).astype(np.float32)


def puppet_faces(seconds: float = PUPPET_SECONDS, fps: float = 15.0, seed: int = 101) -> np.ndarray:
    """The embedded driver puppet's exact landmarks over its script: (F, 478, 3) pixels."""
    script = PuppetScript(seed=seed, shape=DRIVER_SHAPE, size=(512, 512), fps=fps)
    return np.stack([script.points(i) for i in range(int(seconds * fps))]).astype(np.float32)


def retarget_onto(faces: np.ndarray, target_neutral: np.ndarray) -> np.ndarray:
    """A driver clip's faces (F, 478, 3) moved onto the target, as live would with the
    clip's own neutral: (F, 478, 3) float32 target source-video pixels."""
    r = Retargeter(target_neutral, estimate_neutral(faces))
    return np.stack([r.retarget(f) for f in faces]).astype(np.float32)


def render_with(G: torch.nn.Module, source_px: np.ndarray, framing: Framing, spec: SketchSpec, device: torch.device,
                *, batch: int = 8, progress: bool = False) -> np.ndarray:
    """The generator's photos for faces (N, 478, 3) source px: (N, H, W, 3) uint8 BGR."""
    from tqdm import tqdm

    out = np.empty((len(source_px), spec.height, spec.width, 3), np.uint8)
    for i in tqdm(range(0, len(source_px), batch), desc="teacher", unit="batch", disable=not progress, dynamic_ncols=True):
        sketches = np.stack([render_sketch(framing.apply(p), spec) for p in source_px[i : i + batch]])
        out[i : i + batch] = tensor_to_images(generate(G, images_to_tensor(sketches), device, batch))
    return out


def _cache_key(teacher: ModelDir, dataset_key: str, drivers: list[str]) -> str:
    blob = json.dumps({"teacher": teacher.meta.get("model_id"), "dataset": dataset_key, "drivers": drivers,
                       "stride": DRIVER_STRIDE, "puppet": PUPPET_SECONDS})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def teacher_pairs(teacher: ModelDir, dataset_px: np.ndarray, dataset_key: str, *, drivers: list[str], out: Path,
                  device: torch.device, augment: Augment | None, seed: int, weights: tuple[float, float],
                  progress: bool = True, log: Callable[[str], None] = print) -> PairSet:
    """The teacher's renderings of the dataset's training faces (``dataset_px``, (N, 478,
    3) source pixels) and of the driver clips retargeted onto the target, as a PairSet
    with the student's augmentation and (mouth, eye) L1 ``weights``.
    ``drivers``: video paths and/or "puppet" (the embedded puppet driver); [] = ["puppet"]."""
    key = _cache_key(teacher, dataset_key, drivers)
    cached = _read_cache(out / CACHE, key, log)
    if cached is not None:
        source_px, photos = cached
    else:
        neutral = teacher.contract.neutral_px
        clips = [(PUPPET, puppet_faces()) if d == PUPPET else (Path(d).name, video_faces(d)) for d in drivers or [PUPPET]]
        driven = [retarget_onto(faces, neutral) for _, faces in clips]
        for name, faces in clips:
            log(f"teacher pairs: {len(faces)} faces retargeted from {name}")
        source_px = np.concatenate([dataset_px, *driven])
        log(f"teacher pairs: rendering {len(source_px)} sketches with the teacher ({len(dataset_px)} dataset, "
            f"{len(source_px) - len(dataset_px)} driven)")
        photos = render_with(load_generator(teacher, device), source_px, teacher.contract.framing, teacher.contract.sketch, device,
                             progress=progress)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / CACHE, suffix=".tmp.npz") as tmp:
            np.savez(tmp, key=np.array(key), source_px=source_px, photos=photos)
    return PairSet.from_arrays(source_px, photos, teacher.contract.framing, teacher.contract.sketch, seed=seed + 1,
                               augment=augment, mouth_weight=weights[0], eye_weight=weights[1])


def _read_cache(path: Path, key: str, log) -> tuple[np.ndarray, np.ndarray] | None:
    """(source_px, photos) from a cache made for ``key``; None when absent, stale or damaged."""
    import zipfile

    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if str(z["key"]) != key:
                log(f"{path} was made for another teacher, dataset or driver list; rendering again")
                return None
            source_px, photos = z["source_px"], z["photos"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        log(f"{path} is damaged ({type(e).__name__}); rendering again")
        return None
    log(f"teacher pairs: {len(photos)} from {path}")
    return source_px, photos


def checkpoint_teacher(out: str | Path) -> dict | None:
    """The teacher a run in ``out`` was distilled from (its checkpoint's record), or None."""
    from training.train import load_checkpoint

    path = Path(out) / "checkpoint.pt"
    return load_checkpoint(path).get("teacher") if path.is_file() else None


def distill(dataset_dir: str | Path, out_dir: str | Path, *, teacher: str | Path | None, drivers: list[str], model: ModelConfig,
            cfg: TrainConfig, resume: bool = False, progress: bool = True, log: Callable[[str], None] = print,
            detector_factory=None, minutes: float | None = None) -> dict:
    """Train a student with ``model``'s architecture that keeps ``teacher``'s contract,
    on the dataset's real pairs plus the teacher's renderings (``teacher_pairs``). On
    ``resume`` without a teacher, the checkpoint's own teacher and drivers are used."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise DistillError("distillation runs in one process; start it without torchrun")
    if teacher is None:
        recorded = checkpoint_teacher(out_dir) if resume else None
        if recorded is None:
            raise DistillError("distillation needs --teacher MODEL_DIR")
        teacher, drivers = recorded["path"], recorded["drivers"]
    teacher_dir = load_teacher(teacher)
    spec = teacher_dir.contract.sketch  # the student keeps the teacher's input contract
    if spec.height % 2**model.depth or spec.width % 2**model.depth:
        raise DistillError(f"the teacher's {spec.width}x{spec.height} sketch is not a multiple of 2**model.depth = "
                           f"{2**model.depth}; lower model.depth")
    provenance = {"path": str(Path(teacher).resolve()), "model_id": teacher_dir.meta.get("model_id"),
                  "drivers": [d if d == PUPPET else str(Path(d).resolve()) for d in drivers]}
    manifest = load_manifest(dataset_dir)

    def extra(contract: Contract, device: torch.device) -> ExtraPairs:
        teacher_dir.contract.require_same(contract, f"dataset {dataset_dir} (at the teacher's size)")
        train_rows = [n for n, s in enumerate(manifest["samples"]) if s["split"] == "train"]
        dataset_px = load_landmarks(Path(dataset_dir), len(manifest["samples"]))[train_rows]
        pairs = teacher_pairs(teacher_dir, dataset_px, manifest["build_key"], drivers=provenance["drivers"], out=Path(out_dir),
                              device=device, augment=Augment(warp=cfg.warp) if cfg.augment else None, seed=cfg.seed,
                              weights=(cfg.mouth_weight, cfg.eye_weight), progress=progress, log=log)
        return ExtraPairs(pairs, cfg.teacher_l1, provenance)

    return train(dataset_dir, out_dir, model=dataclasses.replace(model, size=spec.height), cfg=cfg, resume=resume,
                 progress=progress, log=log, detector_factory=detector_factory, extra=extra, minutes=minutes)
