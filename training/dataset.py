"""``reenact dataset``: target video(s) -> (sketch, frame) pairs + manifest.

Two passes over the video. Pass 1 finds landmarks on every frame and decides which
frames to keep (no face, low confidence, motion blur and near-duplicates are
dropped and counted). Between the passes the clip-wide decisions are made: the
framing, the target's neutral face and the train/validation split. Pass 2 decodes
again and writes the framed photo and its sketch for each kept frame.

Everything is built in a hidden ``.NAME.partial`` directory beside the output and
moved into place only when complete, ``manifest.json`` last, so an interrupted run
leaves nothing that looks like a dataset; the next run starts again cleanly. A run
whose inputs and settings match an existing dataset does nothing.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from models.config import DatasetConfig, LandmarksConfig, ModelConfig, SketchConfig
from models.framing import Framing, choose_framing
from models.geometry import interocular
from models.landmarks import FaceMeshDetector, LandmarkDetector
from models.retarget import estimate_neutral
from models.sketch import SketchSpec, render_sketch
from training.coverage import coverage_report, save_coverage_png
from models.errors import DatasetError
from models.files import confined, read_record, sha256_file
from models.video import frames, open_video

MANIFEST_VERSION = 1
BUILDER_VERSION = 6  # bump when the builder's output changes, so old datasets are rebuilt (2: plate.png; 3: a neutral that looks ahead; 4: the neutral at the clip's typical head pose; 5: ...with the mouth of its most restful frames; 6: ...closed where the clip shows it closed)
DROP_REASONS = ("no_face", "low_confidence", "blurry", "duplicate")


CONSENT_STATEMENT = ("I am the person shown in these videos, or I have that person's permission (or the rights to "
                     "this character) to make and use a model of their likeness.")


@dataclass(frozen=True)
class Consent:
    """Who the target is, and the user's attestation that they may use that likeness.
    Recorded in the manifest and carried into every model trained from it."""

    target: str
    attested: bool
    recorded_by: str = ""
    recorded_at: str = ""

    def require(self) -> None:
        if not self.target.strip() or not self.attested:
            raise DatasetError(
                "building a dataset needs a consent record: say who the target is and attest that you may use their "
                "likeness. Pass --target-name 'Jane Doe' --consent (meaning: \"" + CONSENT_STATEMENT + "\"), "
                "or set dataset.target_name and dataset.consent = true in config.toml")

    def record(self) -> dict:
        import getpass

        return {"target": self.target.strip(), "attested": True, "statement": CONSENT_STATEMENT,
                "recorded_by": self.recorded_by or getpass.getuser(),
                "recorded_at": self.recorded_at or time.strftime("%Y-%m-%dT%H:%M:%S%z")}


SYNTHETIC_CONSENT = Consent("synthetic puppet (no real person)", True, "reenact")


@dataclass
class _Probe:
    """Pass-1 facts about one frame."""

    video: int
    frame: int
    t: float  # seconds from the start of its video
    px: np.ndarray | None  # (478, 3) float32 pixels
    confidence: float
    sharpness: float
    thumb: np.ndarray | None  # (48, 48) uint8 grey face crop, for duplicate detection


def _face_patch(gray: np.ndarray, px: np.ndarray, size: int) -> np.ndarray:
    """Square grey crop around the landmarks, resized to ``size``: a scale-free view
    of the face for sharpness and duplicate checks."""
    x0, y0 = np.floor(px[:, :2].min(0)).astype(int)
    x1, y1 = np.ceil(px[:, :2].max(0)).astype(int)
    h, w = gray.shape
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return np.zeros((size, size), np.uint8)
    return cv2.resize(gray[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)


def _video_info(path: Path) -> dict:
    cap, info = open_video(path, error=DatasetError)
    cap.release()
    return {"fps": info.fps, "size": list(info.size), "frames_reported": info.frames_reported}


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, dynamic_ncols=True)


def _probe_videos(videos: list[Path], infos: list[dict], detector: LandmarkDetector, progress: bool) -> list[_Probe]:
    probes: list[_Probe] = []
    total = sum(max(i["frames_reported"], 0) for i in infos)
    with _progress(total, "landmarks", progress) as bar:
        for vi, (path, info) in enumerate(zip(videos, infos)):
            detector.reset()  # tracking state must not leak from one clip into the next
            for fi, img in enumerate(frames(path, error=DatasetError)):
                probes.append(_probe(img, detector, vi, fi, fi / info["fps"]))
                bar.update(1)
    return probes


def _probe(img: np.ndarray, detector: LandmarkDetector, video: int, frame: int, t: float) -> _Probe:
    lm = detector.detect(img)
    if lm is None:
        return _Probe(video, frame, t, None, 0.0, 0.0, None)
    px = lm.pixels()
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    sharp = float(cv2.Laplacian(_face_patch(gray, px, 128), cv2.CV_64F).var())
    return _Probe(video, frame, t, px, lm.confidence, sharp, _face_patch(gray, px, 48))


def _select(probes: list[_Probe], cfg: DatasetConfig) -> tuple[list[int], dict[str, int]]:
    """Indices of kept probes, and the count dropped for each reason."""
    drops = dict.fromkeys(DROP_REASONS, 0)
    faces = [p for p in probes if p.px is not None]
    median_sharp = float(np.median([p.sharpness for p in faces])) if faces else 0.0
    kept: list[int] = []
    last: _Probe | None = None
    for i, p in enumerate(probes):
        if p.px is None:
            drops["no_face"] += 1
            continue
        if p.confidence < cfg.min_confidence:
            drops["low_confidence"] += 1
            continue
        if p.sharpness < cfg.blur_ratio * median_sharp:
            drops["blurry"] += 1
            continue
        if last is not None and last.video == p.video:
            motion = float(np.mean(np.linalg.norm(p.px[:, :2] - last.px[:, :2], axis=1))) / max(interocular(p.px), 1e-6)
            pixels = float(np.mean(np.abs(p.thumb.astype(np.int16) - last.thumb.astype(np.int16))))
            if motion < cfg.duplicate_motion and pixels < cfg.duplicate_pixels:
                drops["duplicate"] += 1
                continue
        kept.append(i)
        last = p
    return kept, drops


def _split(probes: list[_Probe], kept: list[int], cfg: DatasetConfig) -> list[str]:
    """'train' or 'val' per kept frame, by contiguous blocks of time: every k-th block
    of ``val_block_seconds`` goes to validation, so no validation frame has a training
    frame from the same moment beside it."""
    if cfg.val_fraction <= 0:
        return ["train"] * len(kept)
    every = max(2, int(round(1 / cfg.val_fraction)))
    blocks = [(probes[i].video, int(probes[i].t // cfg.val_block_seconds)) for i in kept]
    order = {b: n for n, b in enumerate(dict.fromkeys(blocks))}
    return ["val" if order[b] % every == every // 2 else "train" for b in blocks]


def _settings(ds: DatasetConfig, lm: LandmarksConfig, sk: SketchConfig, model: ModelConfig) -> dict:
    return {
        "dataset": asdict(ds),
        "landmarks": {"min_detection_confidence": lm.min_detection_confidence, "min_presence": lm.min_presence},
        "sketch": asdict(sk),
        "model": {"size": model.size, "depth": model.depth},
    }


def build_dataset(videos: list[str | Path], out: str | Path, *, consent: Consent, dataset: DatasetConfig,
                  landmarks: LandmarksConfig, sketch: SketchConfig, model: ModelConfig,
                  detector_factory: Callable[[], LandmarkDetector] | None = None,
                  progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Build (or confirm up to date) the dataset at ``out``; returns its manifest."""
    if not videos:
        raise DatasetError("no target video given")
    paths = [Path(v) for v in videos]
    out = Path(out)
    infos = [_video_info(p) for p in paths]
    consent.require()  # after the inputs are known to be readable, before any work
    consent_record = consent.record()
    sizes = {tuple(i["size"]) for i in infos}
    if len(sizes) > 1:
        raise DatasetError(f"all target videos must have the same resolution (the framing is one crop); got {sorted(sizes)}")

    hashes = [sha256_file(p) for p in paths]
    settings = _settings(dataset, landmarks, sketch, model)
    build_key = hashlib.sha256(json.dumps({"inputs": hashes, "settings": settings, "version": MANIFEST_VERSION, "builder": BUILDER_VERSION,
                                           "target": consent_record["target"]}, sort_keys=True).encode()).hexdigest()[:16]
    existing = out / "manifest.json"
    if existing.is_file():
        try:
            old = json.loads(existing.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("build_key") == build_key:
            log(f"{out}: up to date (same videos and settings), nothing to do")
            return old
    if out.exists() and not existing.is_file() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{str(out)!r} exists and is not a reenact dataset; choose another --out or remove it")

    partial = _start_partial(out)  # before the long landmark pass: an unwritable --out fails now, not after it
    try:
        manifest = _build(paths, infos, partial, dataset=dataset, landmarks=landmarks, sketch=sketch, model=model,
                          detector_factory=detector_factory, progress=progress)
        manifest.update(build_key=build_key, consent=consent_record, settings=settings,
                        sources=[{"path": str(p.resolve()), "sha256": h, **info} for p, h, info in zip(paths, hashes, infos)])
        manifest["samples"] = manifest.pop("samples")  # the long list last, for people reading the file
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _swap_into_place(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # nothing half-built stays behind, whatever stopped the build
        raise
    return manifest


def _build(paths: list[Path], infos: list[dict], root: Path, *, dataset: DatasetConfig, landmarks: LandmarksConfig,
           sketch: SketchConfig, model: ModelConfig, detector_factory, progress: bool) -> dict:
    """Both passes into ``root``: landmarks and selection, the clip-wide decisions, then
    the pairs, landmarks.npz and the coverage report. Returns the manifest's facts."""
    t_start = time.monotonic()
    detector = detector_factory() if detector_factory else FaceMeshDetector(
        tracking=True, min_detection_confidence=landmarks.min_detection_confidence, min_presence=landmarks.min_presence)
    try:
        probes = _probe_videos(paths, infos, detector, progress)
    finally:
        detector.close()
    t_probe = time.monotonic() - t_start
    kept, drops = _select(probes, dataset)
    if not kept:
        faces = sum(p.px is not None for p in probes)
        if faces == 0:
            raise DatasetError(f"no face found in any of the {len(probes)} frames of {', '.join(map(str, paths))}: record the target facing the camera, well lit")
        raise DatasetError(f"all {len(probes)} frames were dropped ({', '.join(f'{k}: {v}' for k, v in drops.items())}); see the [dataset] settings in config.toml")

    faces_px = np.stack([probes[i].px for i in kept]).astype(np.float32)
    framing = choose_framing(faces_px, tuple(infos[0]["size"]), height=model.size, aspect=sketch.aspect,
                             margin=sketch.margin, headroom=sketch.headroom, multiple=2 ** model.depth)
    spec = SketchSpec(framing.out_size[0], framing.out_size[1], sketch.line_width, sketch.fill_mouth)
    neutral = estimate_neutral(faces_px, target=True)  # the middle of what the generator will learn
    splits = _split(probes, kept, dataset)
    _write_pairs(paths, probes, kept, framing, spec, root, progress)
    np.savez_compressed(root / "landmarks.npz", source_px=faces_px, framed_px=np.stack([framing.apply(f) for f in faces_px]),
                        neutral_px=neutral)
    report = coverage_report(faces_px, neutral)
    (root / "coverage.json").write_text(json.dumps(report, indent=1))
    save_coverage_png(report, root / "coverage.png")
    total_s = time.monotonic() - t_start
    return {
        "format": "reenact-dataset", "version": MANIFEST_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "frames_total": len(probes), "frames_kept": len(kept), "dropped": drops,
        "framing": framing.to_dict(), "sketch_spec": spec.to_dict(), "sketch_hash": spec.hash,
        "neutral_px": np.round(neutral, 3).tolist(),
        "split": {"method": "contiguous time blocks", "block_seconds": dataset.val_block_seconds,
                  "train": splits.count("train"), "val": splits.count("val")},
        "coverage_warnings": report["warnings"],
        "timing": {"landmark_pass_s": round(t_probe, 2), "total_s": round(total_s, 2),
                   "landmark_frames_per_s": round(len(probes) / max(t_probe, 1e-9), 2),
                   "frames_per_s": round(len(probes) / max(total_s, 1e-9), 2)},
        "samples": [{"id": f"{n:06d}", "video": probes[i].video, "frame": probes[i].frame, "split": s}
                    for n, (i, s) in enumerate(zip(kept, splits))],
    }


def _start_partial(out: Path) -> Path:
    """The hidden ``.NAME.partial`` directory the dataset is built in, fresh and empty."""
    partial = out.parent / f".{out.name}.partial"
    try:
        if partial.exists():
            shutil.rmtree(partial)  # left by an interrupted run
        (partial / "frames").mkdir(parents=True)
        (partial / "sketches").mkdir()
    except OSError as e:
        raise DatasetError(f"cannot write the dataset to {str(out)!r}: {e.strerror} ({e.filename})") from None
    return partial


PLATE_FRAMES = 31


def _write_pairs(paths: list[Path], probes: list[_Probe], kept: list[int], framing: Framing, spec: SketchSpec,
                 root: Path, progress: bool) -> None:
    """Write frames/ and sketches/ for the kept frames, and plate.png: the per-pixel
    median of frames spread over the clip, i.e. the target's surroundings without the
    moving head, which live composes the generated face into."""
    wanted = {(probes[i].video, probes[i].frame): n for n, i in enumerate(kept)}
    plate_at = {kept[int(k)] for k in np.linspace(0, len(kept) - 1, min(PLATE_FRAMES, len(kept)))}
    plate_at = {(probes[i].video, probes[i].frame) for i in plate_at}
    plate: list[np.ndarray] = []
    with _progress(len(kept), "pairs", progress) as bar:
        for vi, path in enumerate(paths):
            for fi, img in enumerate(frames(path, error=DatasetError)):
                n = wanted.get((vi, fi))
                if n is None:
                    continue
                name = f"{n:06d}.png"
                cv2.imwrite(str(root / "frames" / name), framing.crop_image(img))
                cv2.imwrite(str(root / "sketches" / name), render_sketch(framing.apply(probes[kept[n]].px), spec))
                if (vi, fi) in plate_at:
                    plate.append(img)
                bar.update(1)
    cv2.imwrite(str(root / "plate.png"), np.median(np.stack(plate), axis=0).astype(np.uint8))
    missing = len(kept) - len(list((root / "frames").iterdir()))
    if missing:
        raise DatasetError(f"{missing} frames could not be decoded a second time; is the video file changing?")


def _swap_into_place(partial: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``partial`` directory with renames only."""
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    partial.rename(out)
    if old.exists():
        shutil.rmtree(old)


# Keys every manifest has, with their JSON types: a manifest that parses but lacks one is damaged.
MANIFEST_KEYS = {"build_key": str, "framing": dict, "sketch_spec": dict, "neutral_px": list, "split": dict, "samples": list,
                 "sources": list}


def load_manifest(root: str | Path) -> dict:
    """Read a dataset's manifest, with a clear error when it is not a dataset or is
    damaged. Sample ids become file names, so each must stay inside the dataset."""
    root = Path(root)
    path = root / "manifest.json"
    if root.is_file():
        raise DatasetError(f"dataset {str(root)!r} is a file, not a dataset directory")
    if not root.exists():
        raise DatasetError(f"dataset {str(root)!r} does not exist; build one with `reenact dataset VIDEO --out {root}`")
    if not path.is_file():
        raise DatasetError(f"{str(root)!r} is not a reenact dataset (no manifest.json); build one with `reenact dataset VIDEO --out DIR`")
    manifest = read_record(path, error=DatasetError, kind="reenact-dataset", version=MANIFEST_VERSION, keys=MANIFEST_KEYS,
                           hint="; rebuild the dataset")
    for sample in manifest["samples"]:
        if not isinstance(sample, dict) or not isinstance(sample.get("id"), str) or sample.get("split") not in ("train", "val"):
            raise DatasetError(f"{path} is damaged: a sample record lacks its id or split; rebuild the dataset")
        try:
            confined(root / "frames", sample["id"] + ".png")
        except ValueError as e:
            raise DatasetError(f"{path} names a frame outside the dataset: {e}") from None
    return manifest


def load_landmarks(root: Path, count: int) -> np.ndarray:
    """The (count, 478, 3) source-pixel landmarks of a dataset's kept frames, checked."""
    import zipfile

    path = root / "landmarks.npz"
    if not path.is_file():
        raise DatasetError(f"{path} is missing; rebuild the dataset with `reenact dataset`")
    try:
        with np.load(path) as z:  # allow_pickle stays False: an untrusted file yields arrays or nothing
            source_px = np.asarray(z["source_px"], np.float32)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path} is damaged ({type(e).__name__}: {e}); rebuild the dataset") from None
    if source_px.shape != (count, 478, 3) or not np.isfinite(source_px).all():
        raise DatasetError(f"{path} holds {source_px.shape} landmarks, the manifest lists {count} frames of 478 points; rebuild the dataset")
    return source_px


def check_dataset(root: str | Path) -> dict:
    """Open a dataset as training will (manifest and landmarks) and return its
    manifest: a damaged one is named before the slow imports and set-up of training."""
    manifest = load_manifest(root)
    load_landmarks(Path(root), len(manifest["samples"]))
    return manifest
