"""``reenact eval --model M``: what a viewer sees, measured end to end.

Two parts, both through the live pipeline (smoothing, retargeting, the sketch, the
generator, composition at the live output size), every frame in order and stamped
with its media time, so two runs give the same numbers:

* **Self-reenactment.** The model is driven by its own dataset's validation blocks,
  with the driver's neutral taken to be the target's own, so a perfect system
  reproduces the real frames. PSNR and SSIM (scikit-image) against the real frames
  placed as the compositor places the plate, over the whole source region and over
  the head region (the model's framing crop in the output frame).
* **Cross-identity transfer**, per driver clip (``--drivers``), driven as live drives
  (neutral from the first ``live.neutral_seconds``). Face Mesh on driver and output
  frames gives what a viewer reads: mouth, eyes, brows, yaw and gaze (Pearson r of
  output against driver), the vergence error, the face shape against the target's,
  jitter against the driver's own, each signal's lag, the detection rate, and a
  picture of the worst frames per signal.
"""
from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from models.config import Config, LiveConfig, LandmarksConfig
from models.errors import EXIT_OK, DatasetError, UsageError

SIGNALS = ("mouth", "eyes", "brows", "yaw", "gaze")
MAX_LAG = 5  # frames searched either way for a signal's lag


def register(sub, common: argparse.ArgumentParser) -> None:
    ev = sub.add_parser("eval", parents=[common], help="measure a model end to end: self-reenactment and transfer from driver clips")
    ev.add_argument("--model", required=True, metavar="MODEL_DIR", help="the model directory to measure (as given: no tier is picked)")
    ev.add_argument("--dataset", metavar="DATASET", help="for self-reenactment (default: the dataset the model was trained on)")
    ev.add_argument("--drivers", nargs="*", default=[], metavar="VIDEO", help="driver clips for cross-identity transfer")
    ev.add_argument("--json", metavar="OUT", help="write every figure (default: MODEL_DIR/eval.json)")
    ev.add_argument("--grid", metavar="DIR", help="write a picture of the worst frames per signal and driver (default: beside --json)")
    ev.add_argument("--max-frames", type=int, metavar="N", help="at most N frames of each driver clip")
    ev.set_defaults(func=cmd_eval)


@dataclass(frozen=True)
class Setup:
    """What every evaluated run shares: the model and how live would drive it."""

    model: object  # ModelDir
    live: LiveConfig
    landmarks: LandmarksConfig
    out_size: tuple[int, int]
    log: Callable[[str], None]


def cmd_eval(args: argparse.Namespace, cfg: Config) -> int:
    from models.artifact import check_model_path, load_model_dir, model_kind, read_model_json

    if model_kind(read_model_json(check_model_path(args.model))) == "swap":
        return eval_swap(args, cfg)
    model = load_model_dir(args.model)
    setup = Setup(model, cfg.live, cfg.landmarks, (cfg.output.width, cfg.output.height), print)
    out = Path(args.json) if args.json else model.path / "eval.json"
    grid_dir = Path(args.grid) if args.grid else out.parent / f"{out.stem}_worst"
    report: dict = {"model": str(model.path), "model_id": model.model_id, "output_size": list(setup.out_size)}
    dataset = dataset_for(model, args.dataset)
    renderer = PipelineRenderer(setup)
    try:
        if dataset is not None:
            report["self"] = self_reenactment(setup, dataset, renderer)
        elif args.dataset is None:
            print("self-reenactment skipped: the model's dataset is not here (give --dataset)")
        report["drivers"] = {Path(d).stem: transfer(setup, d, renderer, grid_dir, args.max_frames) for d in args.drivers}
    finally:
        renderer.close()
    return _write_report(out, report)


def _write_report(out: Path, report: dict) -> int:
    """Save every figure as JSON and print the summary."""
    from models.files import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=1))
    print(summary(report))
    print(f"eval: {out}")
    return EXIT_OK


def dataset_for(model, given: str | None) -> Path | None:
    """The dataset to self-reenact on: ``--dataset``, else the model's own when it is
    still where it was built (and is the same build)."""
    from training.dataset import load_manifest

    prov = model.meta.get("provenance", {})
    path = Path(given) if given else Path(prov.get("dataset", ""))
    if not given and not (path / "manifest.json").is_file():
        return None
    manifest = load_manifest(path)
    if manifest["build_key"] != prov.get("dataset_key"):
        raise DatasetError(f"{path} is not the dataset model {model.model_id} was trained on (build key {manifest['build_key']}, "
                           f"the model's {prov.get('dataset_key')})")
    return path


# ---------------------------------------------------------------- driving the pipeline offline

class PipelineRenderer:
    """Makes the output frames by running the live pipeline offline: every frame in
    order, stamped with its media time, so smoothing and calibration behave as at
    real-time pace and two runs give the same frames. (A tool can measure another
    version of reenact by passing a renderer that reads that version's frames.)"""

    def __init__(self, setup: Setup) -> None:
        from live.session import open_pipeline

        self._stack = contextlib.ExitStack()
        # The model itself, not its lighter rung: eval measures the directory it is given.
        self.pipeline = open_pipeline(self._stack, setup.model, setup.live, setup.landmarks, setup.out_size, lambda s: None, rungs=False)
        self.compositor = self.pipeline.compositor
        self.source_region = self.compositor.source_region  # the target's scene in the output frame

    def render(self, images, fps: float, *, start: int = 0, neutral: np.ndarray | None = None):
        """Composed output frames for ``images`` (a new stretch of video); ``neutral``:
        take it as the driver's neutral instead of calibrating on the first frames."""
        from live.sources import Frame

        self.pipeline.reset()
        if neutral is not None:
            self.pipeline.calibrate(neutral)
        else:
            self.pipeline.recalibrate()
        for i, image in enumerate(images):
            index = start + i
            yield self.pipeline.process(Frame(image, index / fps, index, index / fps)).image

    def close(self) -> None:
        self._stack.close()


# ---------------------------------------------------------------- self-reenactment

def val_blocks(manifest: dict) -> list[tuple[int, list[int]]]:
    """(video, frame numbers) of each contiguous run of validation frames."""
    blocks: list[tuple[int, list[int]]] = []
    for s in manifest["samples"]:
        if s["split"] != "val":
            continue
        if blocks and blocks[-1][0] == s["video"] and s["frame"] - blocks[-1][1][-1] <= 3:
            blocks[-1][1].append(s["frame"])
        else:
            blocks.append((s["video"], [s["frame"]]))
    return blocks


def self_reenactment(setup: Setup, dataset: Path, renderer) -> dict:
    """The model driven by its own validation blocks, against the real frames."""
    from training.dataset import load_manifest

    manifest = load_manifest(dataset)
    blocks = val_blocks(manifest)
    if not blocks:
        raise DatasetError(f"{dataset} has no validation frames to self-reenact")
    comp = renderer.compositor
    if comp.crop_only:
        raise UsageError("self-reenactment compares against the real scene: this model has no plate.png")
    scores: dict[str, list[float]] = {"psnr_frame": [], "ssim_frame": [], "psnr_head": [], "ssim_head": []}
    for video, numbers in blocks:
        source = manifest["sources"][video]
        real = list(_frames_between(Path(source["path"]), numbers[0], numbers[-1]))
        # The target drives itself from its own neutral, so a perfect system gives back the real frames.
        outputs = renderer.render(real, source["fps"], start=numbers[0], neutral=setup.model.contract.neutral_px)
        for number, image, output in zip(range(numbers[0], numbers[-1] + 1), real, outputs):
            if number in set(numbers):
                _score(scores, _placed(image, comp), output, comp)
    result = {k: round(float(np.mean(v)), 4) for k, v in scores.items()}
    result.update(frames=len(scores["psnr_head"]), blocks=len(blocks))
    return result


def _frames_between(path: Path, first: int, last: int):
    from models.video import frames

    for i, image in enumerate(frames(path, error=DatasetError)):
        if i > last:
            return
        if i >= first:
            yield image


def _placed(image: np.ndarray, comp) -> np.ndarray:
    """A source frame placed in the output frame exactly as the compositor places the plate."""
    h, w = comp.base.shape[:2]
    return cv2.warpAffine(image, comp.source_to_output, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def _score(scores: dict, real: np.ndarray, output: np.ndarray, comp) -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    x, y, w, h = comp.source_region
    for name, (ys, xs) in (("frame", (slice(y, y + h), slice(x, x + w))),
                           ("head", (slice(comp.cy0, comp.cy1), slice(comp.cx0, comp.cx1)))):
        a, b = real[ys, xs], output[ys, xs]
        mse = float(np.mean((a.astype(np.float64) - b) ** 2))
        scores[f"psnr_{name}"].append(100.0 if mse == 0 else float(peak_signal_noise_ratio(a, b, data_range=255)))  # identical: 100 dB, not inf
        scores[f"ssim_{name}"].append(float(structural_similarity(a, b, channel_axis=2, data_range=255)))


# ---------------------------------------------------------------- cross-identity transfer

def transfer(setup: Setup, driver: str | Path, renderer, grid_dir: Path, max_frames: int | None = None) -> dict:
    """Drive the model with a clip, then compare what a viewer reads off both faces."""
    from itertools import islice, tee

    from models.video import frames, open_video

    cap, info = open_video(driver)
    cap.release()
    images, fed = tee(islice(frames(driver), max_frames))  # one decode; the renderer runs one frame behind at most
    return _transfer_frames(setup, images, fed, info.fps, renderer, grid_dir / f"{Path(driver).stem}.png",
                            setup.model.contract.neutral_px)


def _transfer_frames(setup: Setup, images, fed, fps: float, renderer, grid: Path, target_neutral: np.ndarray) -> dict:
    """``transfer`` on frames: ``images`` and ``fed`` are two iterators over the same driver frames."""
    from models.landmarks import FaceMeshDetector

    drv_pts, out_pts, pictures = [], [], []
    x, y, w, h = renderer.source_region  # the scene in the output frame
    with FaceMeshDetector(tracking=True) as d_det, FaceMeshDetector(tracking=True) as o_det:
        for image, output in zip(images, renderer.render(fed, fps)):
            drv_pts.append(_points(d_det, image))
            out_pts.append(_points(o_det, output))
            pictures.append((_tile(image), _tile(output[y : y + h, x : x + w])))
    result = compare(drv_pts, out_pts, target_neutral, fps)
    result["grid"] = str(worst_frames_grid(drv_pts, out_pts, pictures, grid))
    return result


def _tile(image: np.ndarray, height: int = 160) -> np.ndarray:
    """A small picture for the grid, ``height`` tall, its aspect kept."""
    return cv2.resize(image, (max(1, round(image.shape[1] * height / image.shape[0])), height), interpolation=cv2.INTER_AREA)


def _points(detector, image: np.ndarray) -> np.ndarray | None:
    lm = detector.detect(image)
    return None if lm is None else lm.pixels().astype(np.float64)


def compare(drv_pts: list, out_pts: list, target_neutral: np.ndarray, fps: float) -> dict:
    """The transfer figures from per-frame landmarks (None where no face was found)."""
    from models.geometry import viewer_signals

    both = [i for i, (d, o) in enumerate(zip(drv_pts, out_pts)) if d is not None and o is not None]
    if len(both) < 10:
        return {"frames": len(drv_pts), "detection_rate": round(sum(o is not None for o in out_pts) / max(len(out_pts), 1), 4),
                "error": "too few frames with a face in both driver and output"}
    d, o = np.stack([drv_pts[i] for i in both]), np.stack([out_pts[i] for i in both])
    sd, so = viewer_signals(d), viewer_signals(o)
    result = {"frames": len(drv_pts), "detection_rate": round(sum(p is not None for p in out_pts) / len(out_pts), 4)}
    for name in SIGNALS:
        result[f"{name}_r"] = round(_pearson(sd[name], so[name]), 4)
        result[f"{name}_lag_frames"] = _lag(sd[name], so[name], np.asarray(both))
        result[f"{name}_std_driver"] = round(float(np.std(sd[name])), 4)  # how much the driver moves it: r means little near 0
    result["vergence_error"] = round(float(np.mean(np.abs(so["vergence"] - sd["vergence"]))), 4)
    result["vergence_median_output"] = round(float(np.median(so["vergence"])), 4)
    result["vergence_median_driver"] = round(float(np.median(sd["vergence"])), 4)
    result["shape_output"] = round(float(np.median(so["shape"])), 4)
    result["shape_target"] = (None if target_neutral is None  # a face swap keeps the user's face shape: nothing to compare
                              else round(float(viewer_signals(np.asarray(target_neutral, np.float64)[None])["shape"][0]), 4))
    result["jitter_output"], result["jitter_driver"] = round(_jitter(o), 5), round(_jitter(d), 5)
    result["jitter_ratio"] = round(result["jitter_output"] / max(result["jitter_driver"], 1e-9), 3)
    return result


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _lag(driver: np.ndarray, output: np.ndarray, frames: np.ndarray | None = None) -> int:
    """Frames by which ``output`` trails ``driver``: the shift in ±MAX_LAG at which their
    frame-to-frame *changes* correlate best (Pearson r over the overlapping frames).
    ``frames``: each value's frame number, where frames without a face were left out;
    a change is only taken between neighbouring frames, and shifts are in frames.

    Changes, not levels: a signal that drifts slowly (a head that turns once over the
    clip) correlates almost as well at every shift, so the peak of its levels lands
    anywhere in the window. s20's yaw read 0.960 at no shift and 0.963 at 8 frames
    *ahead* of the driver, which no live pipeline can be. Its changes peak where the
    motion lines up, and a real delay (smoothing, a late frame) moves that peak by as
    many frames as it moves the levels."""
    frames = np.arange(len(driver)) if frames is None else np.asarray(frames)
    levels = np.full((2, int(frames[-1]) + 1 if len(frames) else 0), np.nan)
    levels[:, frames] = driver, output
    driver, output = np.diff(levels, axis=1)  # NaN where a frame is missing
    n = len(driver)
    if n <= 2 * MAX_LAG + 10:
        return 0
    core = slice(MAX_LAG, n - MAX_LAG)
    corr = []
    for k in range(-MAX_LAG, MAX_LAG + 1):
        a, b = driver[core], output[MAX_LAG + k : n - MAX_LAG + k]
        ok = np.isfinite(a) & np.isfinite(b)
        corr.append(_pearson(a[ok], b[ok]) if ok.sum() >= 10 else float("nan"))
    return int(np.nanargmax(corr)) - MAX_LAG if not np.all(np.isnan(corr)) else 0


def _jitter(faces: np.ndarray) -> float:
    """Mean absolute second difference of the landmarks over time, in inter-ocular distances."""
    from models.geometry import interocular

    if len(faces) < 3:
        return float("nan")
    iod = np.array([interocular(f) for f in faces])[1:-1, None]
    second = np.linalg.norm(faces[2:, :, :2] - 2 * faces[1:-1, :, :2] + faces[:-2, :, :2], axis=2)
    return float(np.mean(second / iod))


def worst_frames_grid(drv_pts: list, out_pts: list, pictures: list, path: Path, per_signal: int = 3) -> Path:
    """One row per signal: its ``per_signal`` worst frames, driver | output side by side."""
    from models.geometry import viewer_signals

    both = [i for i, (d, o) in enumerate(zip(drv_pts, out_pts)) if d is not None and o is not None]
    rows = []
    if len(both) >= 10:
        sd = viewer_signals(np.stack([drv_pts[i] for i in both]))
        so = viewer_signals(np.stack([out_pts[i] for i in both]))
        for name in SIGNALS:
            z = lambda v: (v - v.mean()) / (v.std() + 1e-9)  # noqa: E731 - each face in its own units
            worst = np.argsort(-np.abs(z(so[name]) - z(sd[name])))[:per_signal]
            tiles = [np.hstack(pictures[both[k]]) for k in worst]
            row = np.hstack(tiles)
            cv2.putText(row, name, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2, cv2.LINE_AA)
            rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(rows) if rows else np.zeros((16, 16, 3), np.uint8))
    return path


# ---------------------------------------------------------------- a replacement (face swap) model

class SwapRenderer(PipelineRenderer):
    """``PipelineRenderer`` for a replacement model: the user's frames through the live
    swap pipeline (it has no neutral to calibrate: ``render`` runs it as it is)."""

    def __init__(self, setup: Setup) -> None:  # noqa: D107 - the parent's, with the swap pipeline
        from live.session import open_swap_pipeline

        self._stack = contextlib.ExitStack()
        self.pipeline = open_swap_pipeline(self._stack, setup.model, setup.live, setup.landmarks, setup.out_size, lambda s: None)
        self.source_region = (0, 0, *setup.out_size)  # the user's whole frame


def eval_swap(args: argparse.Namespace, cfg: Config) -> int:
    """A replacement model: the target's decoder on the target's held-out faces (PSNR
    inside the face mask), and transfer: the user's own held-out time blocks (or
    ``--drivers``) through the live swap pipeline, Face Mesh on input and output."""
    from models.artifact import load_swap_model
    from training.dataset import load_manifest

    model = load_swap_model(args.model)
    setup = Setup(model, cfg.live, cfg.landmarks, (cfg.output.width, cfg.output.height), print)
    out = Path(args.json) if args.json else model.path / "eval.json"
    grid_dir = Path(args.grid) if args.grid else out.parent / f"{out.stem}_worst"
    prov = model.meta.get("provenance", {})
    report: dict = {"model": str(model.path), "model_id": model.model_id, "kind": "swap", "output_size": list(setup.out_size),
                    "trained": model.meta.get("metrics", {})}
    target = Path(prov.get("target", {}).get("dataset", ""))
    if (target / "manifest.json").is_file():
        report["reconstruction"] = {"psnr_target": swap_reconstruction(model, target)}
    user = Path(args.dataset) if args.dataset else Path(prov.get("user", {}).get("dataset", ""))
    renderer = SwapRenderer(setup)
    try:
        report["drivers"] = {}
        if (user / "manifest.json").is_file():
            manifest = load_manifest(user)
            for k, (video, numbers) in enumerate(val_blocks(manifest)):
                source = manifest["sources"][video]
                block = list(_frames_between(Path(source["path"]), numbers[0], numbers[-1]))
                report["drivers"][f"user_val_{k}"] = _transfer_frames(setup, iter(block), iter(block), source["fps"], renderer,
                                                                      grid_dir / f"user_val_{k}.png", None)
        for d in args.drivers:
            report["drivers"][Path(d).stem] = transfer_swap(setup, d, renderer, grid_dir, args.max_frames)
    finally:
        renderer.close()
    return _write_report(out, report)


def transfer_swap(setup: Setup, driver: str | Path, renderer, grid_dir: Path, max_frames: int | None) -> dict:
    from itertools import islice, tee

    from models.video import frames, open_video

    cap, info = open_video(driver)
    cap.release()
    images, fed = tee(islice(frames(driver), max_frames))
    return _transfer_frames(setup, images, fed, info.fps, renderer, grid_dir / f"{Path(driver).stem}.png", None)


def swap_reconstruction(model, target_dataset: Path) -> float:
    """Mean PSNR (dB) inside the face mask of the target's decoder on the target's
    held-out faces: the model's own network (generator.pt), not the trainer's record.
    A guided network draws each face from its own landmarks' sketch."""
    import torch

    from models.artifact import load_generator
    from models.pixels import images_to_tensor, tensor_to_images
    from training.dataset import load_manifest
    from training.swap import FaceSet, masked_psnr

    split = "val" if load_manifest(target_dataset)["split"]["val"] > 0 else "train"
    faces = FaceSet(target_dataset, split, model.template, guide=model.guide is not None)
    g = load_generator(model)
    scores = []
    with torch.no_grad():
        for i in range(0, len(faces), 16):
            crops = faces.crops[i : i + 16]
            # a guided network takes each face with the sketch of its own landmarks beside it
            x = crops if faces.sketches is None else np.concatenate([crops, faces.sketches[i : i + 16]], axis=2)
            fake = tensor_to_images(g(images_to_tensor(x))[:, :3])
            scores += [masked_psnr(f, r, m) for f, r, m in zip(fake, crops, faces.masks[i : i + 16])]
    return round(float(np.mean(scores)), 3)


def summary(report: dict) -> str:
    parts = []
    if "reconstruction" in report:
        parts.append(f"swap: the target's decoder on the target's held-out faces: {report['reconstruction']['psnr_target']:.2f} dB "
                     "inside the face mask")
    if "self" in report:
        s = report["self"]
        parts.append(f"self-reenactment: head PSNR {s['psnr_head']:.2f} dB, SSIM {s['ssim_head']:.3f} (frame {s['psnr_frame']:.2f} dB)")
    for name, r in report["drivers"].items():
        if "error" in r:
            parts.append(f"{name}: {r['error']}")
            continue
        rs = ", ".join(f"{k} {r[f'{k}_r']:.2f}" for k in SIGNALS)
        shape = f"{r['shape_output']:.3f}" + (f"/{r['shape_target']:.3f}" if r["shape_target"] is not None else "")
        parts.append(f"{name}: r {rs}; vergence error {r['vergence_error']:.3f}; shape {shape}; "
                     f"jitter x{r['jitter_ratio']:.2f}; faces {100 * r['detection_rate']:.0f} %")
    return "\n".join(parts) or "nothing to evaluate: give --drivers or a dataset"
