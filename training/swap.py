"""``reenact train --swap TARGET_DATASET --user USER_DATASET --out MODEL_DIR``:
replacement (face swap) training.

Read it top to bottom: the aligned faces of both people (``FaceSet``, from datasets
that ``reenact dataset`` built), the losses, one step, then the loop. The loop keeps
what the pix2pix trainer gives (training/train.py, shared, not copied): ``--minutes``
with its learning-rate decay (``TimeBudget``), Ctrl-C saving a checkpoint
(``_StopRequest``), atomic checkpoints that carry their settings, ``--resume``, the
expected time, previews, TensorBoard, validation on held-out time blocks, and a model
card naming both people's consent records.

The recipe is the classic deepfakes one (models/swap.py): one shared encoder, one
decoder per person, each decoder reconstructing its own person's faces from a randomly
*warped* copy of them, so the encoder must learn pose and expression, not pixels.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn

from models import topology as T
from models.artifact import model_id_of, write_model_json
from models.config import SwapConfig, TrainConfig
from models.errors import DatasetError
from models.files import atomic_path, atomic_write_text, make_dir, sha256_file
from models.geometry import interocular
from models.pixels import images_to_tensor, tensor_to_images
from models.retarget import estimate_neutral
from models.swap import (IDENTITIES, SwapArchitecture, SwapGuide, SwapTemplate, align, alignment, face_mask, make_template,
                         neutral_in_crop, transform_points)
from models.swapnet import SwapAutoencoder, SwapDiscriminator, SwapGenerator
from models.unet import count_parameters
from training.data import split_samples
from training.dataset import load_manifest
from training.train import PhaseTimer, TimeBudget, TrainError, _on_schedule, _StopRequest, expected_time, save_checkpoint

KIND = "swap"  # model.json's "kind" for a replacement model


# ---------------------------------------------------------------- the faces

class FaceSet:
    """One person's aligned faces, one split of a dataset: ``crops`` (N, S, S, 3) uint8
    BGR, ``masks`` (N, S, S) float32 face masks, ``weights`` (N, S, S) float32 loss
    weights (1, more on the eyes and lips), ``sketches`` (N, S, S, 3) uint8, the guide
    sketch of each face's own landmarks (``guide``; else None), ``points`` (N, 478, 2)
    those landmarks in the crop, and ``neutral`` (478, 2), the person's neutral face in the
    crop (worked out when first asked for). Aligned once, here; a batch then only augments
    in the crop."""

    def __init__(self, root: str | Path, split: str, template: SwapTemplate, *, eye_weight: float = 1.0,
                 mouth_weight: float = 1.0, limit: int | None = None, guide: bool = False) -> None:
        root = Path(root)
        manifest, framing, picks, source_px = split_samples(root, split, limit)
        size = template.size
        drawer = SwapGuide(size, np.zeros((T.NUM_LANDMARKS, 2))) if guide else None
        crops, masks, weights, sketches, faces, points = [], [], [], [], [], []
        for n in picks:
            sid = manifest["samples"][n]["id"]
            img = cv2.imread(str(root / "frames" / f"{sid}.png"))
            if img is None:
                raise DatasetError(f"{root / 'frames' / (sid + '.png')} is missing or unreadable; rebuild the dataset")
            pts = framing.apply(source_px[n])  # the dataset's frames are framed crops of the source
            if img.shape[:2] != tuple(framing.out_size[::-1]):
                raise DatasetError(f"{root / 'frames' / (sid + '.png')} is {img.shape[1]}x{img.shape[0]}, the manifest says "
                                   f"{framing.out_size[0]}x{framing.out_size[1]}; rebuild the dataset")
            m = alignment(pts, template)
            in_crop = transform_points(pts, m)
            crops.append(align(img, m, size))
            masks.append(face_mask(in_crop, size))
            weights.append(feature_weights(in_crop, size, eye_weight=eye_weight, mouth_weight=mouth_weight))
            if drawer is not None:
                sketches.append(drawer.draw(in_crop))
            faces.append(pts)
            points.append(in_crop)
        self.crops, self.masks, self.weights = np.stack(crops), np.stack(masks), np.stack(weights)
        self.sketches = np.stack(sketches) if drawer is not None else None
        self.points, self._faces, self._template = np.stack(points), np.stack(faces), template
        self.root, self.key, self.manifest = root, manifest["build_key"], manifest

    def __len__(self) -> int:
        return len(self.crops)

    @cached_property
    def neutral(self) -> np.ndarray:
        return neutral_in_crop(estimate_neutral(self._faces), self._template)

    def _sketch(self, i: int) -> np.ndarray | None:
        return None if self.sketches is None else self.sketches[i]

    def batch(self, rng: np.random.Generator, n: int, warp: float) -> tuple[torch.Tensor | None, ...]:
        """(warped input, face, mask, weight, sketch): (n, 3, S, S) in [-1, 1] twice, then
        (n, 1, S, S) twice, then the sketches (n, 3, S, S) in [-1, 1] or None unguided."""
        items = [augment(self.crops[i], self.masks[i], self.weights[i], rng, warp, sketch=self._sketch(i))
                 for i in rng.integers(0, len(self), n)]
        return _collate(items)

    def fixed(self, indices) -> tuple[torch.Tensor | None, ...]:
        """Un-augmented (validation, previews): (face, face, mask, weight, sketch)."""
        return _collate([(self.crops[i], self.crops[i], self.masks[i], self.weights[i], self._sketch(i)) for i in indices])


def feature_weights(crop_px: np.ndarray, size: int, *, eye_weight: float, mouth_weight: float) -> np.ndarray:
    """(size, size) float32: 1, ``eye_weight`` on the eyes and ``mouth_weight`` on the lips
    (each grown by 0.15 IOD): what a viewer reads an expression from gets more of the loss."""
    w = np.ones((size, size), np.float32)
    grow = max(1, int(round(0.15 * interocular(np.column_stack([crop_px[:, :2], np.zeros(len(crop_px))])))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    for loops, weight in ((("outer_lips",), mouth_weight), (("left_eye", "right_eye"), eye_weight)):
        if weight == 1:
            continue
        m = np.zeros((size, size), np.uint8)
        for name in loops:
            cv2.fillPoly(m, [np.round(crop_px[T.loop(name), :2]).astype(np.int32)], 1)
        m = cv2.dilate(m, kernel) > 0
        w[m] = np.maximum(w[m], weight)
    return w


# Augmentation ranges of the classic recipe: small similarity jitter of the aligned
# crop (face, mask and weights together), and a horizontal flip.
ROTATE, SCALE, SHIFT, FLIP = 10.0, 0.05, 0.05, 0.5


def augment(crop: np.ndarray, mask: np.ndarray, weight: np.ndarray, rng: np.random.Generator, warp: float, *,
            sketch: np.ndarray | None = None):
    """(warped input, face, mask, weight, sketch) of one crop. The input alone is randomly
    warped (a coarse 5x5 grid of displacements, ``warp`` x size standard deviation,
    smoothly interpolated): the decoder must draw the true face from a distorted one,
    and a guided decoder learns to take the geometry from the (unwarped) sketch."""
    size = crop.shape[0]
    m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-ROTATE, ROTATE), 1 + rng.uniform(-SCALE, SCALE))
    m[:, 2] += rng.uniform(-SHIFT, SHIFT, 2) * size
    face = cv2.warpAffine(crop, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR)
    weight = cv2.warpAffine(weight, m, (size, size), flags=cv2.INTER_NEAREST, borderValue=1.0)
    if sketch is not None:
        sketch = cv2.warpAffine(sketch, m, (size, size), flags=cv2.INTER_LINEAR)
    if rng.uniform() < FLIP:
        face, mask, weight = face[:, ::-1], mask[:, ::-1], weight[:, ::-1]
        sketch = None if sketch is None else sketch[:, ::-1]
    return random_warp(face, rng, warp), face, mask, weight, sketch


def random_warp(image: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """``image`` (S, S, C) through a smooth random displacement field (its border stays put)."""
    size = image.shape[0]
    if amount <= 0:
        return np.ascontiguousarray(image)
    d = rng.normal(0, amount * size, (2, 5, 5)).astype(np.float32)
    d[:, [0, -1], :] = 0
    d[:, :, [0, -1]] = 0
    # Upsample the coarse displacements (not the coordinates: resize would clamp those
    # at the border cells) and add them to the identity map.
    d = [cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC) for c in d]
    gx, gy = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    mx, my = gx + d[0], gy + d[1]
    return cv2.remap(np.ascontiguousarray(image), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _collate(items) -> tuple[torch.Tensor, ...]:
    x = images_to_tensor(np.stack([np.ascontiguousarray(it[0]) for it in items]))
    y = images_to_tensor(np.stack([np.ascontiguousarray(it[1]) for it in items]))
    mask = torch.from_numpy(np.stack([np.ascontiguousarray(it[2]) for it in items]))[:, None]
    weight = torch.from_numpy(np.stack([np.ascontiguousarray(it[3]) for it in items]))[:, None]
    sketch = None if items[0][4] is None else images_to_tensor(np.stack([np.ascontiguousarray(it[4]) for it in items]))
    return x, y, mask, weight, sketch


# ---------------------------------------------------------------- the losses

def swap_losses(face: torch.Tensor, mask_pred: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                cfg: SwapConfig) -> dict[str, torch.Tensor]:
    """The classic recipe's losses for one person's batch, each inside the face mask:
    weighted L1, structural dissimilarity (SSIM from pytorch-msssim), and the mask's own
    L1. ``total`` is their weighted sum."""
    from pytorch_msssim import ssim

    inside = mask.sum().clamp_min(1.0) * 3
    l1 = (weight * mask * (face - real).abs()).sum() / inside
    # SSIM on [0, 1] images with the background zeroed, so only the face is compared.
    s = ssim((face + 1) / 2 * mask, (real + 1) / 2 * mask, data_range=1.0, size_average=True, win_size=7)
    dssim = (1 - s) / 2
    mask_l1 = (mask_pred - mask).abs().mean()
    total = cfg.lambda_l1 * l1 + cfg.lambda_ssim * dssim + cfg.lambda_mask * mask_l1
    return {"total": total, "l1": l1, "dssim": dssim, "mask": mask_l1}


def masked_psnr(fake: np.ndarray, real: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) over the pixels where ``mask`` > 0.5: fake, real (H, W, 3) uint8, mask (H, W)."""
    inside = mask > 0.5
    if not inside.any():
        return float("nan")
    mse = float(((fake.astype(np.float64) - real.astype(np.float64)) ** 2)[inside].mean())
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


# ---------------------------------------------------------------- the run

class SwapRun:
    """What a replacement training run holds: both people's faces, the network, its
    optimiser and the step reached."""

    main = True  # one process: it writes the logs, previews and checkpoints (the shared schedule asks)

    def __init__(self, out: Path, target_dir: Path, user_dir: Path, cfg: TrainConfig, swap: SwapConfig,
                 arch: SwapArchitecture, template: SwapTemplate) -> None:
        self.out, self.cfg, self.swap, self.arch, self.template = out, cfg, swap, arch, template
        weights = {"eye_weight": cfg.eye_weight, "mouth_weight": cfg.mouth_weight, "guide": arch.guide}
        self.train = {"target": FaceSet(target_dir, "train", template, **weights), "user": FaceSet(user_dir, "train", template, **weights)}
        self.val = {who: FaceSet(d, _val_split(d), template, limit=cfg.val_frames, **weights)
                    for who, d in (("target", target_dir), ("user", user_dir))}
        # Live moves the user's landmarks onto the target's face shape before drawing the sketch.
        offset = self.train["target"].neutral - self.train["user"].neutral
        self.guide = SwapGuide(template.size, offset) if arch.guide else None
        torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only
        self.net = SwapAutoencoder(arch)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=swap.lr, betas=(cfg.beta1, 0.999))
        # The optional GAN: one PatchGAN per person, judging the faces inside the mask.
        self.disc = nn.ModuleDict({who: SwapDiscriminator() for who in IDENTITIES}) if swap.lambda_gan > 0 else None
        self.opt_d = None if self.disc is None else torch.optim.Adam(self.disc.parameters(), lr=swap.lr, betas=(cfg.beta1, 0.999))
        self.step, self.history, self.writer = 0, [], None

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.pt"

    @property
    def dataset_keys(self) -> dict:
        return {who: s.key for who, s in self.train.items()}

    def one_step(self) -> dict[str, float]:
        """Both people's batches through their own decoders, one Adam update of all."""
        self.net.train()
        total, logged = 0.0, {}
        for k, who in enumerate(IDENTITIES):
            rng = np.random.default_rng([self.cfg.seed, self.step, k])  # (seed, step): a resumed run sees the same batches
            x, real, mask, weight, sketch = self.train[who].batch(rng, self.swap.batch_size, self.swap.warp)
            face, mask_pred = self.net(x, who, sketch)
            losses = swap_losses(face, mask_pred, real, mask, weight, self.swap)
            if self.disc is not None:
                losses["gan"] = self._adversarial(who, face, real, mask)
                losses["total"] = losses["total"] + self.swap.lambda_gan * losses["gan"]
            total = total + losses["total"]
            logged.update({f"{who}_{k}": v.item() for k, v in losses.items() if k != "total"})
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        self.step += 1
        return {"loss": total.item(), **logged}

    def _adversarial(self, who: str, face: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """LSGAN: one update of ``who``'s discriminator on this batch, then the decoder's
        loss for being told apart (the faces inside the mask only)."""
        d = self.disc[who]
        fake_in, real_in = face * mask, real * mask
        d_loss = ((d(real_in) - 1) ** 2).mean() + (d(fake_in.detach()) ** 2).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        return ((d(fake_in) - 1) ** 2).mean()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Masked PSNR of each decoder on its own person's held-out faces."""
        self.net.eval()
        out = {}
        for who, faces in self.val.items():
            _, real, mask, _, sketch = faces.fixed(range(len(faces)))
            face, _ = self.net(real, who, sketch)
            fakes, reals = tensor_to_images(face), tensor_to_images(real)
            out[f"psnr_{who}"] = float(np.mean([masked_psnr(f, r, m) for f, r, m in zip(fakes, reals, faces.masks)]))
        return out

    @torch.no_grad()
    def preview(self, n: int = 4) -> np.ndarray:
        """Rows of (user face | its reconstruction | swapped: the target's decoder) and
        (target face | its reconstruction | the user's decoder), BGR uint8. A guided
        swap draws the sketch moved onto the other face's shape, as live does."""
        self.net.eval()
        rows = []
        for who, other in (("user", "target"), ("target", "user")):
            faces = self.val[who]
            picks = np.linspace(0, len(faces) - 1, n).astype(int)
            _, real, _, _, sketch = faces.fixed(picks)
            own, swapped = self.net(real, who, sketch)[0], self.net(real, other, self._moved_sketches(faces, picks, who))[0]
            for r, o, s in zip(tensor_to_images(real), tensor_to_images(own), tensor_to_images(swapped)):
                rows.append(np.hstack([r, o, s]))
        return np.vstack(rows)

    def _moved_sketches(self, faces: FaceSet, picks, who: str) -> torch.Tensor | None:
        """The sketches of ``faces`` moved onto the other person's face shape (None unguided)."""
        if self.guide is None:
            return None
        guide = SwapGuide(self.guide.size, self.guide.offset if who == "user" else -self.guide.offset)
        return images_to_tensor(np.stack([guide.draw(faces.points[i]) for i in picks]))

    def save(self, *, final: bool = False) -> None:
        """Checkpoint (for --resume), then the model directory."""
        state = {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "step": self.step, "rng_cpu": torch.get_rng_state(),
                 "kind": KIND, "swap_network": self.arch.to_dict(), "template": self.template.to_dict(),
                 "dataset_keys": self.dataset_keys, "train": asdict(self.cfg), "swap": asdict(self.swap), "history": self.history}
        if self.disc is not None:
            state |= {"disc": self.disc.state_dict(), "opt_d": self.opt_d.state_dict()}
        save_checkpoint(self.checkpoint, state)
        write_swap_model(self, final=final)


def _val_split(root: Path) -> str:
    return "val" if load_manifest(root)["split"]["val"] > 0 else "train"


SWAP_CHECKPOINT_KEYS = ("net", "opt", "step", "rng_cpu", "kind", "swap_network", "template", "dataset_keys")


def _load_swap_checkpoint(path: Path) -> dict:
    from training.train import load_checkpoint

    ckpt = load_checkpoint(path, keys=SWAP_CHECKPOINT_KEYS)
    if ckpt["kind"] != KIND:
        raise TrainError(f"{path} is not a replacement (swap) checkpoint; resume it without --swap")
    return ckpt


# ---------------------------------------------------------------- the loop

def train_swap(target_dir: str | Path, user_dir: str | Path, out_dir: str | Path, *, cfg: TrainConfig, swap: SwapConfig,
               resume: bool = False, minutes: float | None = None, progress: bool = True,
               log: Callable[[str], None] = print) -> dict:
    """Train (or continue) a replacement model: the target's face for the user's. Returns a summary."""
    from tqdm import tqdm

    # -- set up: the run, fresh or from its checkpoint
    run = _start(Path(target_dir), Path(user_dir), Path(out_dir), cfg, swap, resume, log)
    stop, start_step, t0 = _StopRequest(), run.step, time.monotonic()
    budget = TimeBudget(minutes, run.step) if minutes else None
    if budget is not None:
        log(f"training for {minutes:g} min of wall time (at most {cfg.steps} steps); the learning rate decays over the second half")
    bar = tqdm(total=cfg.steps, initial=run.step, desc="train --swap", unit="step", disable=not progress, dynamic_ncols=True)
    try:
        # -- the loop: one update of the shared encoder and both decoders per step
        eta = PhaseTimer(start_step)
        while run.step < cfg.steps:
            for group in run.opt.param_groups:
                group["lr"] = swap.lr * (budget.lr_scale() if budget is not None else 1.0)
            losses = run.one_step()
            rate = eta.rate_after(run.step)
            if rate is not None and budget is None:
                bar.write(expected_time(rate, cfg.steps - run.step))
            if budget is not None:
                bar.total = min(cfg.steps, budget.expected_steps(run.step))
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items() if k in ("loss", "target_l1", "user_l1")}, refresh=False)
            _on_schedule(run, losses, bar)
            if budget is not None and budget.up():
                break
            if run.step < cfg.steps and stop.requested:
                run.save()
                log(f"stopped at step {run.step}; checkpoint saved in {run.checkpoint}; continue with --resume")
                return {"step": run.step, "stopped": True}
        # -- finish: validate and mark the model complete
        run.history.append({"step": run.step, "val": run.validate()})
        run.save(final=True)
    finally:
        bar.close()
        stop.restore()
        if run.writer is not None:
            run.writer.close()
    rate = (run.step - start_step) / max(time.monotonic() - t0, 1e-9)
    val = run.history[-1]["val"]
    log(f"done: {run.step} steps, {rate:.2f} it/s; held-out PSNR inside the face mask: target {val['psnr_target']:.2f} dB, "
        f"user {val['psnr_user']:.2f} dB; model in {run.out}")
    return {"step": run.step, "stopped": False, "it_per_s": rate, "history": run.history}


def _start(target_dir: Path, user_dir: Path, out: Path, cfg: TrainConfig, swap: SwapConfig, resume: bool,
           log: Callable[[str], None]) -> SwapRun:
    """Everything before the first step; on ``resume``, the checkpoint's own settings
    (architecture, template) and state, checked against these datasets."""
    make_dir(out, error=TrainError, what="the model")
    ckpt = None
    if resume:
        ckpt = _load_swap_checkpoint(out / "checkpoint.pt")
    elif (out / "checkpoint.pt").exists():
        raise TrainError(f"{out} already holds a training run; continue it with --resume, or choose another --out")
    try:
        arch = SwapArchitecture(swap.size, swap.width, swap.latent, swap.guide, swap.attention).check() if ckpt is None else SwapArchitecture.from_dict(ckpt["swap_network"])
        template = make_template(arch.size) if ckpt is None else SwapTemplate.from_dict(ckpt["template"])
    except ValueError as e:
        raise TrainError(f"{out / 'checkpoint.pt'} is damaged: {e}") from None
    log(f"aligning the faces of both datasets to {arch.size}x{arch.size} crops")
    run = SwapRun(out, target_dir, user_dir, cfg, swap, arch, template)
    if ckpt is not None:
        if ckpt["dataset_keys"] != run.dataset_keys:
            raise TrainError(f"{run.checkpoint} was trained on other datasets ({ckpt['dataset_keys']}, these are {run.dataset_keys})")
        try:
            run.net.load_state_dict(ckpt["net"])
            run.opt.load_state_dict(ckpt["opt"])
            if run.disc is not None and "disc" in ckpt:  # a GAN turned on at resume starts its discriminators fresh
                run.disc.load_state_dict(ckpt["disc"])
                run.opt_d.load_state_dict(ckpt["opt_d"])
            torch.set_rng_state(ckpt["rng_cpu"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise TrainError(f"{run.checkpoint} does not fit this run ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        run.step, run.history = int(ckpt["step"]), list(ckpt.get("history", []))
        if run.step >= cfg.steps:
            log(f"{out}: already trained for {run.step} steps (train.steps = {cfg.steps}); raise train.steps to continue")
    (out / "previews").mkdir(exist_ok=True)
    from torch.utils.tensorboard import SummaryWriter

    run.writer = SummaryWriter(str(out / "logs"), purge_step=run.step or None)
    log(f"training a {count_parameters(run.net) / 1e6:.1f} M-parameter swap network at {arch.size}x{arch.size} on cpu: "
        f"target {len(run.train['target'])} / user {len(run.train['user'])} training faces, "
        f"{len(run.val['target'])} / {len(run.val['user'])} held out; steps {run.step} -> {cfg.steps}")
    return run


# ---------------------------------------------------------------- the model directory

def write_swap_model(run: SwapRun, *, final: bool) -> None:
    """What live needs, model.json last: the run-time network (the shared encoder and
    the target's decoder) as generator.pt, its alignment contract and card."""
    out = run.out
    g = SwapGenerator(run.net, "target")
    with atomic_path(out / "generator.pt") as tmp:
        torch.save({k: v.detach().cpu() for k, v in g.state_dict().items()}, tmp)
    vals = [h["val"] for h in run.history if "val" in h]
    people = {who: s.manifest for who, s in run.train.items()}
    meta = {
        "kind": KIND,
        "generator": run.arch.to_dict(),
        "contract": {"template": run.template.to_dict(), "template_hash": run.template.hash}
                    | ({"guide": run.guide.to_dict()} if run.guide is not None else {}),
        "provenance": {
            who: {"dataset": str(s.root.resolve()), "dataset_key": s.key,
                  "sources": [{"path": v["path"], "sha256": v["sha256"]} for v in people[who]["sources"]],
                  "consent": people[who].get("consent")}
            for who, s in run.train.items()
        } | {"steps": run.step, "complete": final, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__},
        "metrics": vals[-1] if vals else {},
        "parameters": count_parameters(g),
    }
    for name in ("generator_fp16.onnx", "generator_fp32.onnx"):
        (out / name).unlink(missing_ok=True)  # stale exports of older weights
    meta["model_id"] = model_id_of(sha256_file(out / "generator.pt"))
    atomic_write_text(out / "model_card.md", swap_model_card(meta))
    write_model_json(out, meta, ["generator.pt", "model_card.md"])


def swap_model_card(meta: dict) -> str:
    p, m = meta["provenance"], meta["metrics"]

    def who(k: str) -> str:
        c = p[k].get("consent") or {}
        return f"{c.get('target', 'not recorded')} (consent attested by {c.get('recorded_by', '?')} on {c.get('recorded_at', '?')})"

    lines = [
        "# reenact model card: replacement (face swap)", "",
        f"- Network: shared encoder + the target's decoder, {meta['parameters'] / 1e6:.1f} M parameters, {meta['generator']}",
        f"- Input: the user's face aligned to template `{meta['contract']['template_hash']}`, "
        f"{meta['generator']['size']}x{meta['generator']['size']}; output: the target's face and its mask",
        f"- Target (whose face is drawn): {who('target')}",
        f"- User (whose head and scene are kept): {who('user')}",
        f"- Model ID (in the invisible watermark of every output frame): `{meta.get('model_id', '?')}`",
        f"- Trained for {p['steps']} steps{'' if p['complete'] else ' (interrupted; resume to finish)'}",
    ]
    if m:
        lines.append("- Held-out PSNR inside the face mask: " + ", ".join(f"{k} {v:.2f} dB" for k, v in m.items()))
    lines += ["", "Use only with the consent of both people."]
    return "\n".join(lines) + "\n"

