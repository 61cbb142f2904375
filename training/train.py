"""``reenact train DATASET --out MODEL_DIR``: the pix2pix training loop.

Read it top to bottom: set up (device, data, networks, optimisers, maybe resume),
then one loop of discriminator step / generator step, with logging, previews,
validation and checkpoints on fixed step counts. The same code runs on CPU and GPU;
on GPU it adds mixed precision and channels_last, and under ``torchrun`` it trains
with DistributedDataParallel (one process per GPU).

Nothing is lost when a run stops: checkpoints are written atomically (temp file,
fsync, rename), Ctrl-C or SIGTERM saves one before exiting, and ``--resume``
continues from it. Every random draw is derived from (seed, step), and the torch RNG
state is in the checkpoint, so on CPU a resumed run matches an uninterrupted one.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.artifact import Contract, write_model_json
from models.files import atomic_path, atomic_write_text, sha256_file
from models.config import ModelConfig, TrainConfig
from models.framing import output_size
from models.patchgan import MultiScaleDiscriminator
from models.sketch import SketchSpec
from models.unet import UNetConfig, UNetGenerator, count_parameters
from training.data import Augment, PairSet, to_images
from training.dataset import DatasetError, load_manifest
from training.metrics import image_metrics, landmark_fidelity
from models.errors import ModelError


class TrainError(ModelError):
    """Training cannot start or continue; the message says what to do."""


# ---------------------------------------------------------------- losses

def gan_loss_d(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]], kind: str) -> torch.Tensor:
    """Discriminator loss summed over scales; inputs are per-scale feature lists."""
    loss = 0.0
    for r, f in zip(real, fake):
        r, f = r[-1].float(), f[-1].float()
        if kind == "hinge":
            loss = loss + F.relu(1 - r).mean() + F.relu(1 + f).mean()
        else:  # LSGAN: real -> 1, fake -> 0
            loss = loss + F.mse_loss(r, torch.ones_like(r)) + F.mse_loss(f, torch.zeros_like(f))
    return 0.5 * loss


def gan_loss_g(fake: list[list[torch.Tensor]], kind: str) -> torch.Tensor:
    loss = 0.0
    for f in fake:
        f = f[-1].float()
        loss = loss + (-f.mean() if kind == "hinge" else F.mse_loss(f, torch.ones_like(f)))
    return loss


def feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator's intermediate features on fake and real pairs
    (pix2pixHD): a perceptual loss that needs no pretrained network."""
    loss, n = 0.0, 0
    for fs, rs in zip(fake, real):
        for f, r in zip(fs[:-1], rs[:-1]):
            loss = loss + F.l1_loss(f.float(), r.detach().float())
            n += 1
    return loss / max(n, 1)


def weighted_l1(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean |fake − real| with per-pixel weights (mouth and eyes count more),
    normalised so that a uniform weight gives plain L1."""
    return ((fake.float() - real).abs() * weight).mean() / weight.mean()


# ---------------------------------------------------------------- set-up helpers

def _distributed() -> tuple[int, int, int]:
    """(rank, local_rank, world_size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise TrainError("train.device = 'cuda' but no CUDA GPU is visible to PyTorch (is the CPU build of torch installed?)")
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _autocast(device: torch.device, amp: str):
    """(context factory, GradScaler) for the chosen precision. fp16 is switched here only."""
    if device.type != "cuda" or amp == "off":
        return nullcontext, torch.amp.GradScaler("cuda", enabled=False)
    dtype = torch.float16 if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()) else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


class _StopRequest:
    """First Ctrl-C / SIGTERM: finish the step, save, exit. Second Ctrl-C: abort now."""

    def __init__(self) -> None:
        self.requested = False
        self._old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. under a test runner's thread)
                pass

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") else m


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: a crash or a full disk mid-write leaves the previous checkpoint intact.
    Only tensors and plain types go in, so it loads with ``weights_only=True``."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


CHECKPOINT_KEYS = ("G", "D", "opt_g", "opt_d", "scaler", "step", "rng_cpu", "generator", "size", "contract", "dataset_key")


def load_checkpoint(path: Path) -> dict:
    """A training checkpoint, loaded with ``weights_only=True``: a checkpoint may come
    from someone else, and unpickling anything but tensors and plain types could run
    code from it. Raises TrainError naming what is wrong."""
    if not path.is_file():
        raise TrainError(f"nothing to resume: {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure (or refusal) means a bad file
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise TrainError(f"{path} is not a readable checkpoint ({type(e).__name__}: {reason})") from None
    if not isinstance(ckpt, dict):
        raise TrainError(f"{path} is not a reenact checkpoint (it holds a {type(ckpt).__name__})")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise TrainError(f"{path} is damaged: it lacks {', '.join(map(repr, missing))}; start a new run with another --out")
    return ckpt


def model_spec(manifest: dict, model: ModelConfig, depth: int) -> SketchSpec:
    """The sketch spec at the model's resolution: the dataset's spec, resized."""
    try:
        ds = SketchSpec.from_dict(manifest["sketch_spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"the dataset's sketch spec is unusable ({e}); rebuild the dataset with this version of reenact") from None
    w, h = output_size(model.size, ds.width / ds.height, 2**depth)
    return SketchSpec(w, h, ds.line_width, ds.fill_mouth)


# ---------------------------------------------------------------- the step

def train_step(G: nn.Module, D: nn.Module, opt_g, opt_d, scaler, autocast, cfg: TrainConfig,
               sketch: torch.Tensor, real: torch.Tensor, weight: torch.Tensor,
               taught: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """One discriminator and one generator update. ``taught`` = (sketch, teacher photo,
    weight) when distilling: the generator also matches the teacher there (L1 only;
    the discriminator keeps judging against real photos, never the teacher's)."""
    # Discriminator: real pairs up, generated pairs down. One forward over both halves
    # keeps DistributedDataParallel to one forward per backward.
    with autocast():
        fake = G(sketch)
        both = D(torch.cat([torch.cat([sketch, real], 1), torch.cat([sketch, fake.detach()], 1)], 0))
        d_real = [[t[: len(real)] for t in scale] for scale in both]
        d_fake = [[t[len(real):] for t in scale] for scale in both]
        loss_d = gan_loss_d(d_real, d_fake, cfg.gan_loss)
    opt_d.zero_grad(set_to_none=True)
    scaler.scale(loss_d).backward()
    scaler.step(opt_d)

    # Generator: fool D, match D's features on real pairs, and stay close in L1.
    with autocast():
        g_fake = D(torch.cat([sketch, fake], 1))
        loss_gan = gan_loss_g(g_fake, cfg.gan_loss)
        loss_fm = feature_matching(g_fake, d_real)
        loss_l1 = weighted_l1(fake, real, weight)
        loss_g = cfg.lambda_gan * loss_gan + cfg.lambda_fm * loss_fm + cfg.lambda_l1 * loss_l1
        if taught is not None:
            loss_t = weighted_l1(G(taught[0]), taught[1], taught[2])
            loss_g = loss_g + cfg.teacher_l1 * loss_t
    opt_g.zero_grad(set_to_none=True)
    scaler.scale(loss_g).backward()
    scaler.step(opt_g)
    scaler.update()
    losses = {"d": loss_d.item(), "g_gan": loss_gan.item(), "g_fm": loss_fm.item(), "g_l1": loss_l1.item()}
    if taught is not None:
        losses["g_teacher"] = loss_t.item()
    return losses


# ---------------------------------------------------------------- validation & previews

@torch.no_grad()
def generate(G: nn.Module, sketches: torch.Tensor, device: torch.device, batch: int = 8) -> torch.Tensor:
    was_training = G.training
    G.eval()
    out = torch.cat([G(sketches[i : i + batch].to(device)).float().cpu() for i in range(0, len(sketches), batch)])
    G.train(was_training)
    return out


def validate(G: nn.Module, valset: PairSet, device: torch.device, detector) -> dict[str, float]:
    sketches, reals, _ = valset.fixed(list(range(len(valset))))
    fake = to_images(generate(G, sketches, device))
    real = to_images(reals)
    points = np.stack([valset.framing.apply(p) for p in valset.source_px])
    return {**image_metrics(fake, real), **landmark_fidelity(fake, points, detector)}


def preview(G: nn.Module, valset: PairSet, device: torch.device, n: int = 4) -> np.ndarray:
    """A grid, one row per validation frame: sketch | generated | real (BGR uint8)."""
    idx = list(np.linspace(0, len(valset) - 1, min(n, len(valset))).astype(int))
    sketches, reals, _ = valset.fixed(idx)
    fake = to_images(generate(G, sketches, device))
    rows = [np.hstack([s, f, r]) for s, f, r in zip(to_images(sketches), fake, to_images(reals))]
    return np.vstack(rows)


# ---------------------------------------------------------------- the run

def train(dataset_dir: str | Path, out_dir: str | Path, *, model: ModelConfig, cfg: TrainConfig, resume: bool = False,
          progress: bool = True, log: Callable[[str], None] = print, detector_factory=None,
          teacher: str | Path | None = None, drivers: list[str] = ()) -> dict:
    """Train (or continue training) a model of the dataset's target. Returns a summary.

    With ``teacher`` (a trained model directory) this distils: see training/distill.py.
    The student takes the teacher's contract and ``model``'s architecture."""
    from tqdm import tqdm

    rank, local_rank, world = _distributed()
    main_process = rank == 0
    device = _device(cfg.device, local_rank)
    out = Path(out_dir)
    ckpt_path = out / "checkpoint.pt"
    manifest = load_manifest(dataset_dir)

    if rank == 0:
        try:
            out.mkdir(parents=True, exist_ok=True)  # before any slow work: an unwritable --out fails at once
        except OSError as e:
            raise TrainError(f"cannot write the model to {str(out)!r}: {e.strerror} ({e.filename})") from None
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["dataset_key"] != manifest["build_key"]:
            raise TrainError(f"{ckpt_path} was trained on another dataset (key {ckpt['dataset_key']}, this one {manifest['build_key']})")
        try:
            ucfg = UNetConfig(**ckpt["generator"])  # the checkpoint carries its own architecture
        except (TypeError, ValueError) as e:
            raise TrainError(f"{ckpt_path} is damaged: its generator settings are invalid ({e})") from None
        if ckpt.get("teacher") and teacher is None:  # a distillation resumes with its own teacher
            teacher, drivers = ckpt["teacher"]["path"], ckpt["teacher"]["drivers"]
    else:
        if ckpt_path.exists():
            raise TrainError(f"{out} already holds a training run; continue it with --resume, or choose another --out")
        ucfg = UNetConfig(model.ngf, model.depth, model.dropout, model.upsample)
    teacher_dir = None
    if teacher is not None:
        from training.distill import load_teacher

        teacher_dir = load_teacher(teacher)
        if ckpt is not None and ckpt.get("teacher") and ckpt["teacher"]["model_id"] != teacher_dir.meta.get("model_id"):
            raise TrainError(f"{ckpt_path} was distilled from teacher {ckpt['teacher']['model_id']}, but {teacher} is "
                             f"{teacher_dir.meta.get('model_id')}; resume with the same teacher")
        size = teacher_dir.contract.sketch.height  # the student keeps the teacher's input contract
        if size % 2**ucfg.depth or teacher_dir.contract.sketch.width % 2**ucfg.depth:
            raise TrainError(f"the teacher's {teacher_dir.contract.sketch.width}x{size} sketch is not a multiple of "
                             f"2**model.depth = {2**ucfg.depth}; lower model.depth")
        model = ModelConfig(size=size, depth=ucfg.depth)
    spec = model_spec(manifest, model if ckpt is None else ModelConfig(size=ckpt["size"], depth=ucfg.depth), ucfg.depth)

    augment = Augment() if cfg.augment else None
    trainset = PairSet(dataset_dir, "train", spec, seed=cfg.seed, augment=augment,
                       mouth_weight=cfg.mouth_weight, eye_weight=cfg.eye_weight)
    has_val = manifest["split"]["val"] > 0
    valset = PairSet(dataset_dir, "val" if has_val else "train", spec, seed=cfg.seed, augment=None, limit=cfg.val_frames)
    contract = Contract(trainset.framing, spec, np.asarray(manifest["neutral_px"], np.float32))
    if ckpt is not None:
        contract.require_same(Contract.from_dict(ckpt["contract"]), "checkpoint")
    taughtset, teacher_info = None, None
    if teacher_dir is not None:
        from training.distill import PUPPET, teacher_pairs

        teacher_dir.contract.require_same(contract, f"dataset {dataset_dir} (at the teacher's size)")
        teacher_info = {"path": str(Path(teacher).resolve()), "model_id": teacher_dir.meta.get("model_id"),
                        "drivers": [d if d == PUPPET else str(Path(d).resolve()) for d in drivers]}
        if world > 1:
            raise TrainError("distillation runs in one process; start it without torchrun")
        taughtset = teacher_pairs(teacher_dir, trainset, manifest["build_key"], drivers=teacher_info["drivers"], out=out,
                                  device=device, augment=augment, seed=cfg.seed, progress=progress, log=log)

    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only
    G = UNetGenerator(ucfg).to(device)
    D = MultiScaleDiscriminator(6, cfg.ndf, 3, cfg.d_scales).to(device)
    if device.type == "cuda":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    autocast, scaler = _autocast(device, cfg.amp)
    step, history = 0, []
    if ckpt is not None:
        try:
            G.load_state_dict(ckpt["G"])
            D.load_state_dict(ckpt["D"])
            opt_g.load_state_dict(ckpt["opt_g"])
            opt_d.load_state_dict(ckpt["opt_d"])
            scaler.load_state_dict(ckpt["scaler"])
            torch.set_rng_state(ckpt["rng_cpu"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise TrainError(f"{ckpt_path} does not fit this run ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                             "was it made with other settings (e.g. train.ndf)?") from None
        step, history = int(ckpt["step"]), list(ckpt.get("history", []))
        if device.type == "cuda" and ckpt.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng_cuda"])
        if step >= cfg.steps:
            log(f"{out}: already trained for {step} steps (train.steps = {cfg.steps}); raise train.steps to continue")
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if device.type == "cuda":
            G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
        ids = [device.index] if device.type == "cuda" else None
        G, D = DDP(G, device_ids=ids), DDP(D, device_ids=ids)

    writer = None
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "previews").mkdir(exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "logs"), purge_step=step or None)
        log(f"training {count_parameters(_unwrap(G)) / 1e6:.1f} M-parameter generator at {spec.width}x{spec.height} on {device}"
            f"{f' x{world}' if world > 1 else ''}: {len(trainset)} train / {len(valset)} validation frames, steps {step} -> {cfg.steps}")
        if taughtset is not None:
            log(f"distilling from teacher {teacher_info['model_id']}: {len(taughtset)} teacher pairs, weight train.teacher_l1 = {cfg.teacher_l1:g}")

    detector = None

    def run_validation() -> dict:
        nonlocal detector
        if detector is None:
            from models.landmarks import FaceMeshDetector

            detector = detector_factory() if detector_factory else FaceMeshDetector(tracking=False)
        return validate(_unwrap(G), valset, device, detector)

    def save(final: bool = False) -> None:
        if not main_process:
            return
        state = {
            "G": _unwrap(G).state_dict(), "D": _unwrap(D).state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "scaler": scaler.state_dict(), "step": step, "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
            "generator": ucfg.to_dict(), "size": spec.height, "train": asdict(cfg), "contract": contract.to_dict(),
            "dataset_key": manifest["build_key"], "history": history, "teacher": teacher_info,
        }
        save_checkpoint(ckpt_path, state)
        write_model(out, _unwrap(G), ucfg, contract, manifest, dataset_dir, step, history, final=final, teacher=teacher_info)

    stop = _StopRequest()
    t0, start_step = time.monotonic(), step
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", disable=not (progress and main_process), dynamic_ncols=True)
    try:
        G.train()
        D.train()
        while step < cfg.steps:
            sketch, real, weight = (t.to(device, non_blocking=True) for t in trainset.batch(step, rank, cfg.batch_size))
            if device.type == "cuda":
                sketch, real = sketch.contiguous(memory_format=torch.channels_last), real.contiguous(memory_format=torch.channels_last)
            taught = None
            if taughtset is not None:
                taught = tuple(t.to(device, non_blocking=True) for t in taughtset.batch(step, rank, cfg.batch_size))
            losses = train_step(G, D, opt_g, opt_d, scaler, autocast, cfg, sketch, real, weight, taught)
            step += 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
            if writer and step % cfg.log_every == 0:
                for k, v in losses.items():
                    writer.add_scalar(f"loss/{k}", v, step)
                history.append({"step": step, **losses})
            if main_process and step % cfg.preview_every == 0:
                grid = preview(_unwrap(G), valset, device)
                cv2.imwrite(str(out / "previews" / f"step_{step:07d}.png"), grid)
                writer.add_image("preview", grid[:, :, ::-1].copy(), step, dataformats="HWC")
            if main_process and step % cfg.val_every == 0:
                metrics = run_validation()
                for k, v in metrics.items():
                    writer.add_scalar(f"val/{k}", v, step)
                history.append({"step": step, "val": metrics})
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                save()
            if step < cfg.steps and _stop_everywhere(stop.requested, world, device):  # a finished last step is completed below
                save()
                bar.close()
                log(f"stopped at step {step}; checkpoint saved in {ckpt_path}; continue with --resume")
                return {"step": step, "stopped": True}
        bar.close()
        if step > start_step or not _marked_complete(out):  # also a run stopped after its last step, when resumed
            metrics = run_validation() if main_process else {}
            history.append({"step": step, "val": metrics})
            save(final=True)
    finally:
        bar.close()
        stop.restore()
        if writer:
            writer.close()
        if detector is not None:
            detector.close()
        if world > 1:
            _shutdown_distributed()
    elapsed = time.monotonic() - t0
    rate = (step - start_step) / elapsed if elapsed > 0 else 0.0
    if main_process:
        log(f"done: {step} steps, {rate:.2f} it/s; model in {out}")
    return {"step": step, "stopped": False, "it_per_s": rate, "history": history}


def _marked_complete(out: Path) -> bool:
    """Whether MODEL_DIR/model.json records a finished run."""
    try:
        return bool(json.loads((out / "model.json").read_text())["provenance"]["complete"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _shutdown_distributed() -> None:
    """Leave the process group in step with the other ranks; exiting without this can
    abort the process in gloo's/NCCL's destructors."""
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def _stop_everywhere(local: bool, world: int, device: torch.device) -> bool:
    """All ranks stop at the same step if any rank was asked to."""
    if world == 1:
        return local
    import torch.distributed as dist

    flag = torch.tensor([1.0 if local else 0.0], device=device)
    dist.all_reduce(flag)
    return bool(flag.item() > 0)


def write_model(out: Path, G: nn.Module, ucfg: UNetConfig, contract: Contract, manifest: dict, dataset_dir,
                step: int, history: list, *, final: bool, teacher: dict | None = None) -> None:
    """Write the live-usable part of MODEL_DIR: weights, plate, card, model.json last."""
    with atomic_path(out / "generator.pt") as tmp:
        torch.save({k: v.detach().cpu() for k, v in G.state_dict().items()}, tmp)
    plate = Path(dataset_dir) / "plate.png"
    if plate.is_file():
        shutil.copyfile(plate, out / "plate.png")
    vals = [h["val"] for h in history if "val" in h]
    meta = {
        "generator": ucfg.to_dict(),
        "contract": contract.to_dict(),
        "provenance": {
            "dataset": str(Path(dataset_dir).resolve()), "dataset_key": manifest["build_key"],
            "sources": [{"path": s["path"], "sha256": s["sha256"]} for s in manifest["sources"]],
            "consent": manifest.get("consent"),
            "steps": step, "complete": final, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "torch": torch.__version__, "teacher": teacher,
        },
        "metrics": vals[-1] if vals else {},
        "parameters": count_parameters(G),
    }
    files = ["generator.pt"] + (["plate.png"] if (out / "plate.png").is_file() else [])
    meta["model_id"] = sha256_file(out / "generator.pt")[:8]  # names these weights in reports and logs
    for name in ("generator_fp16.onnx", "generator_fp32.onnx"):
        (out / name).unlink(missing_ok=True)  # stale exports of older weights; re-run `reenact export`
    atomic_write_text(out / "model_card.md", model_card(meta))  # after model_id is known
    write_model_json(out, meta, files + ["model_card.md"])


def model_card(meta: dict) -> str:
    c, p, m = meta["contract"], meta["provenance"], meta["metrics"]
    lines = [
        "# reenact model card", "",
        f"- Generator: pix2pix U-Net, {meta['parameters'] / 1e6:.1f} M parameters, {json.dumps(meta['generator'])}",
        f"- Input: sketch {c['sketch_spec']['width']}x{c['sketch_spec']['height']}, spec hash `{c['sketch_hash']}`",
        f"- Framing: crop {[round(v, 1) for v in c['framing']['crop']]} of a {c['framing']['source_size'][0]}x{c['framing']['source_size'][1]} source",
        f"- Target: {(p.get('consent') or {}).get('target', 'not recorded')}; consent attested by "
        f"{(p.get('consent') or {}).get('recorded_by', '?')} on {(p.get('consent') or {}).get('recorded_at', '?')}",
        f"- Model ID (in the invisible watermark of every output frame; `reenact verify` reads it): `{meta.get('model_id', '?')}`",
        f"- Trained for {p['steps']} steps{'' if p['complete'] else ' (interrupted; resume to finish)'} on dataset `{p['dataset_key']}`",
        f"- Target video(s): " + ", ".join(f"`{Path(s['path']).name}` (sha256 {s['sha256'][:12]}…)" for s in p["sources"]),
    ]
    if p.get("teacher"):
        lines.append(f"- Distilled from model `{p['teacher']['model_id']}` ({p['teacher']['path']})")
    if m:
        lines.append("- Validation: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
    lines += ["", "Use only with the consent of the person shown in the target video."]
    return "\n".join(lines) + "\n"
