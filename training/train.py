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
import math
import os
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.artifact import Contract, model_id_of, write_model_json
from models.config import ModelConfig, TrainConfig, resumed_train_settings
from models.errors import ConfigError, DatasetError, ModelError
from models.fidelity import landmark_fidelity
from models.files import atomic_path, atomic_write_text, make_dir, sha256_file
from models.framing import Framing, output_size
from models.patchgan import MultiScaleDiscriminator
from models.pixels import tensor_to_images
from models.retarget import measure_coverage
from models.sketch import SketchSpec
from models.unet import UNetGenerator, architecture, count_parameters, from_architecture
from training.data import Augment, PairSet
from training.dataset import load_landmarks, load_manifest
from training.metrics import image_metrics


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


def load_checkpoint(path: Path, *, keys: tuple[str, ...] = CHECKPOINT_KEYS) -> dict:
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
    missing = [k for k in keys if k not in ckpt]
    if missing:
        raise TrainError(f"{path} is damaged: it lacks {', '.join(map(repr, missing))}; start a new run with another --out")
    return ckpt


def resumed_settings(out: str | Path, overrides: list[str]) -> TrainConfig:
    """The [train] settings a run in ``out`` resumes with: what its checkpoint recorded,
    ``overrides`` (--set) over them. A checkpoint made before runs recorded their
    settings gives the defaults under the overrides."""
    path = Path(out) / "checkpoint.pt"
    if not path.is_file():
        raise TrainError(f"nothing to resume: {path} does not exist")
    recorded = load_checkpoint(path).get("train") or {}
    try:
        resumed_train_settings(recorded)  # the record alone: if it is bad, the checkpoint is to blame
    except ConfigError as e:
        raise TrainError(f"{path} is damaged: its recorded training settings are unusable ({e})") from None
    return resumed_train_settings(recorded, overrides)  # a bad --set names its own key


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
               taught: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None, taught_weight: float = 0.0,
               *, gan: bool = True) -> dict[str, float]:
    """One discriminator and one generator update. ``taught`` = (sketch, photo, weight)
    of extra pairs (distilling: the teacher's renderings): the generator also matches
    them, L1 only, with ``taught_weight``; the discriminator keeps judging against real
    photos, never the extra ones. ``gan=False`` (``train.gan_start``): the generator's
    L1 terms only, and no discriminator at all."""
    if not gan:
        return _l1_step(G, opt_g, scaler, autocast, cfg, sketch, real, weight, taught, taught_weight)
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
    # D's weights need no gradient from this loss (the next D update starts from zero):
    # frozen, the backward skips a third of D's cost. Under DistributedDataParallel its
    # reducer expects every weight's gradient after each forward, so there D stays open.
    freeze_d = not isinstance(D, nn.parallel.DistributedDataParallel)
    if freeze_d:
        D.requires_grad_(False)
    try:
        with autocast():
            g_fake = D(torch.cat([sketch, fake], 1))
            loss_gan = gan_loss_g(g_fake, cfg.gan_loss)
            loss_fm = feature_matching(g_fake, d_real)
            loss_l1 = weighted_l1(fake, real, weight)
            loss_g = cfg.lambda_gan * loss_gan + cfg.lambda_fm * loss_fm + cfg.lambda_l1 * loss_l1
            if taught is not None:
                loss_t = weighted_l1(G(taught[0]), taught[1], taught[2])
                loss_g = loss_g + taught_weight * loss_t
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(loss_g).backward()
    finally:
        if freeze_d:
            D.requires_grad_(True)
    scaler.step(opt_g)
    scaler.update()
    losses = {"d": loss_d.item(), "g_gan": loss_gan.item(), "g_fm": loss_fm.item(), "g_l1": loss_l1.item()}
    if taught is not None:
        losses["g_teacher"] = loss_t.item()
    return losses


def _l1_step(G, opt_g, scaler, autocast, cfg: TrainConfig, sketch, real, weight, taught, taught_weight) -> dict[str, float]:
    """A generator update on its L1 terms alone: what the start of a run with
    ``train.gan_start`` does. Why: early on the generator is far from any face and the
    discriminator has nothing fine to judge, yet it costs two thirds of a step; the
    wall time it would take buys three times the L1 steps instead."""
    with autocast():
        fake = G(sketch)
        loss_l1 = weighted_l1(fake, real, weight)
        loss_g = cfg.lambda_l1 * loss_l1
        if taught is not None:
            loss_t = weighted_l1(G(taught[0]), taught[1], taught[2])
            loss_g = loss_g + taught_weight * loss_t
    opt_g.zero_grad(set_to_none=True)
    scaler.scale(loss_g).backward()
    scaler.step(opt_g)
    scaler.update()
    losses = {"g_l1": loss_l1.item()}
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
    fake = tensor_to_images(generate(G, sketches, device))
    real = tensor_to_images(reals)
    points = np.stack([valset.framing.apply(p) for p in valset.source_px])
    return {**image_metrics(fake, real), **landmark_fidelity(fake, points, detector)}


def preview(G: nn.Module, valset: PairSet, device: torch.device, n: int = 4) -> np.ndarray:
    """A grid, one row per validation frame: sketch | generated | real (BGR uint8)."""
    idx = list(np.linspace(0, len(valset) - 1, min(n, len(valset))).astype(int))
    sketches, reals, _ = valset.fixed(idx)
    fake = tensor_to_images(generate(G, sketches, device))
    rows = [np.hstack([s, f, r]) for s, f, r in zip(tensor_to_images(sketches), fake, tensor_to_images(reals))]
    return np.vstack(rows)


# ---------------------------------------------------------------- the run

@dataclass
class ExtraPairs:
    """Pairs beside the dataset's own, learnt with weighted L1 only (the discriminator
    keeps judging against real photos): distillation's teacher renderings.
    ``provenance`` is recorded in the checkpoint, model.json and the model card."""

    pairs: PairSet
    weight: float
    provenance: dict


@dataclass
class Run:
    """What a training run holds while it runs: the places, the data, the networks and
    their optimisers, and the step it has reached."""

    out: Path
    dataset_dir: Path
    manifest: dict
    cfg: TrainConfig
    arch: ModelConfig
    contract: Contract
    device: torch.device
    rank: int
    world: int
    trainset: PairSet
    valset: PairSet
    extra: ExtraPairs | None
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: Callable
    step: int = 0
    history: list = field(default_factory=list)
    writer: object = None
    detector: object = None
    init_from: dict | None = None  # the model a warm start began from (provenance)
    detector_factory: Callable | None = None
    gan_joined: bool = False  # the discriminator has trained (train.gan_start): never back to L1 alone

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.pt"

    def batch(self, pairs: PairSet, *, bent: bool) -> tuple[torch.Tensor, ...]:
        tensors = tuple(t.to(self.device, non_blocking=True) for t in pairs.batch(self.step, self.rank, self.cfg.batch_size, bent=bent))
        if self.device.type == "cuda":  # channels_last for the images, not the (B, 1, H, W) weights
            tensors = tuple(t.contiguous(memory_format=torch.channels_last) if t.shape[1] == 3 else t for t in tensors)
        return tensors

    def one_step(self, *, gan: bool = True) -> dict[str, float]:
        # train.warp bends the pairs only once the discriminator has joined. Why: bent from
        # the start, the L1 phase spends its steps on faces the target never made and the
        # validation PSNR falls 0.4 dB; bent in the L1 phase alone, the head-turn gain is lost
        # (docs/BENCHMARKS.md, "Head turns the generator follows").
        sketch, real, weight = self.batch(self.trainset, bent=gan)
        taught = None if self.extra is None else self.batch(self.extra.pairs, bent=gan)
        losses = train_step(self.G, self.D, self.opt_g, self.opt_d, self.scaler, self.autocast, self.cfg, sketch, real, weight,
                            taught, self.extra.weight if self.extra else 0.0, gan=gan)
        self.step += 1
        return losses

    def validate(self) -> dict[str, float]:
        if self.detector is None:  # Face Mesh starts only when first needed
            from models.landmarks import FaceMeshDetector

            self.detector = self.detector_factory() if self.detector_factory else FaceMeshDetector(tracking=False)
        return validate(_unwrap(self.G), self.valset, self.device, self.detector)

    def preview(self) -> np.ndarray:
        return preview(_unwrap(self.G), self.valset, self.device)

    def save(self, *, final: bool = False) -> None:
        """Checkpoint (for --resume), then the live-usable model directory."""
        if not self.main:
            return
        state = {
            "G": _unwrap(self.G).state_dict(), "D": _unwrap(self.D).state_dict(), "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(), "scaler": self.scaler.state_dict(), "step": self.step,
            "rng_cpu": torch.get_rng_state(), "rng_cuda": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            "generator": architecture(self.arch), "size": self.contract.sketch.height, "train": asdict(self.cfg),
            "contract": self.contract.to_dict(), "dataset_key": self.manifest["build_key"], "history": self.history,
            "teacher": self.extra.provenance if self.extra else None, "init_from": self.init_from, "gan_joined": self.gan_joined,
        }
        save_checkpoint(self.checkpoint, state)
        write_model(self, final=final)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.detector is not None:
            self.detector.close()


class TimeBudget:
    """``--minutes``: train for a wall-clock budget instead of a step count.

    The learning rate is held for the budget's first half, then decays linearly to
    zero at its end (pix2pix's schedule, on time rather than steps), so the run ends
    converged whatever the machine's speed; ``expected_steps`` refits the step count to
    the speed measured so far, for the progress bar. A resumed run gets a new budget,
    and its schedule starts again."""

    def __init__(self, minutes: float, start_step: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not (minutes > 0 and math.isfinite(minutes)):
            raise TrainError(f"--minutes must be a positive number, got {minutes}")
        self.seconds, self.start_step, self.clock, self.t0 = minutes * 60.0, start_step, clock, clock()

    def fraction(self) -> float:
        """How much of the budget has passed, 0 to 1."""
        return min(1.0, (self.clock() - self.t0) / self.seconds)

    def up(self) -> bool:
        return self.fraction() >= 1.0

    def lr_scale(self) -> float:
        return min(1.0, 2.0 * (1.0 - self.fraction()))

    def expected_steps(self, step: int) -> int:
        elapsed = self.clock() - self.t0
        done = step - self.start_step
        if done < 1 or elapsed <= 0:
            return step + 1
        return step + int((self.seconds - elapsed) * done / elapsed)


def train(dataset_dir: str | Path, out_dir: str | Path, *, model: ModelConfig, cfg: TrainConfig, resume: bool = False,
          progress: bool = True, log: Callable[[str], None] = print, detector_factory=None,
          extra: Callable[[Contract, torch.device], ExtraPairs] | None = None, minutes: float | None = None,
          init_from: str | Path | None = None) -> dict:
    """Train (or continue training) a model of the dataset's target. Returns a summary.

    ``extra`` builds extra pairs (distillation's, see training/distill.py) once the
    run's contract and device are known. ``minutes``: train for that much wall time
    (at most ``cfg.steps`` steps), with the learning rate decaying to its end.
    ``init_from``: a model directory whose generator (same architecture) a fresh run
    starts from instead of random weights (a warm start; the built-in character)."""
    from tqdm import tqdm

    # -- set up: the run, fresh or from its checkpoint
    run = start_run(dataset_dir, out_dir, model=model, cfg=cfg, resume=resume, extra=extra, detector_factory=detector_factory, log=log,
                    init_from=init_from)
    stop, start_step, t0 = _StopRequest(), run.step, time.monotonic()
    budget = TimeBudget(minutes, run.step) if minutes else None
    if budget is not None and run.main:
        log(f"training for {minutes:g} min of wall time (at most {cfg.steps} steps); the learning rate decays over the second half")
    bar = tqdm(total=cfg.steps, initial=run.step, desc="train", unit="step", disable=not (progress and run.main), dynamic_ncols=True)
    try:
        # -- the loop: one discriminator and one generator update per step (the generator alone before
        #    train.gan_start); the rest on fixed step counts
        _set_lr(run, cfg.lr)  # a checkpoint of a budgeted run holds a decayed rate
        phases = Phases(run, budget, start_step, bar)
        while run.step < cfg.steps:
            if budget is not None:
                _set_lr(run, cfg.lr * budget.lr_scale())
            losses = run.one_step(gan=phases.gan_now())
            phases.after_step()
            if budget is not None:
                bar.total = min(cfg.steps, budget.expected_steps(run.step))
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
            _on_schedule(run, losses, bar)
            if budget is not None and _stop_everywhere(budget.up(), run.world, run.device):
                break  # the budget is spent: finish below, as after the last step
            if run.step < cfg.steps and _stop_everywhere(stop.requested, run.world, run.device):  # a finished last step completes below
                run.save()
                log(f"stopped at step {run.step}; checkpoint saved in {run.checkpoint}; continue with --resume")
                return {"step": run.step, "stopped": True}
        # -- finish: validate and mark the model complete (also a run stopped after its last step, when resumed)
        if run.step > start_step or not _marked_complete(run.out):
            run.history.append({"step": run.step, "val": run.validate() if run.main else {}})
            run.save(final=True)
    finally:
        bar.close()
        stop.restore()
        run.close()
        if run.world > 1:
            _shutdown_distributed()
    rate = (run.step - start_step) / max(time.monotonic() - t0, 1e-9)
    if run.main:
        log(f"done: {run.step} steps, {rate:.2f} it/s; model in {run.out}")
    return {"step": run.step, "stopped": False, "it_per_s": rate, "history": run.history}


def gan_phase(cfg: TrainConfig, step: int, budget: TimeBudget | None, *, joined: bool) -> bool:
    """Whether this step trains with the discriminator: once it has (``joined``, from the
    checkpoint too: never back to L1 alone), and from when ``cfg.gan_start`` of the run has
    passed, of its steps, or of its time budget (a resumed budgeted run gets a new one),
    whichever comes first, so a step cap cannot keep the discriminator out."""
    if cfg.gan_start <= 0 or joined or step >= cfg.gan_start * cfg.steps:
        return True
    return budget is not None and budget.fraction() >= cfg.gan_start


def _set_lr(run: Run, lr: float) -> None:
    for opt in (run.opt_g, run.opt_d):
        for group in opt.param_groups:
            group["lr"] = lr


ETA_WARMUP, ETA_STEPS = 3, 10  # the expected wall time is measured on steps 4 to 13 of a run


class Phases:
    """A run's two phases, L1 alone and then with the discriminator (``gan_phase``): which
    one each step is in, a line when the discriminator joins, and the expected wall time,
    timed on each phase's own steps (a step with the discriminator costs about 3x)."""

    def __init__(self, run: Run, budget: TimeBudget | None, start_step: int, bar) -> None:
        self.run, self.budget, self.bar = run, budget, bar
        self.gan = gan_phase(run.cfg, run.step, budget, joined=run.gan_joined)
        self.timer = PhaseTimer(start_step)

    def gan_now(self) -> bool:
        """Whether the coming step trains with the discriminator. Every rank of a
        distributed run switches at the same step (each reads its own clock)."""
        run = self.run
        gan = gan_phase(run.cfg, run.step, self.budget, joined=run.gan_joined)
        if self.budget is not None and not run.gan_joined:
            gan = _stop_everywhere(gan, run.world, run.device)
        run.gan_joined = run.gan_joined or gan
        if gan and not self.gan:
            self.timer = PhaseTimer(self.run.step)
            if self.run.main:
                bend = f"; the pairs are bent from here, train.warp = {run.cfg.warp:g}" if run.cfg.warp > 0 and run.cfg.augment else ""
                self.bar.write(f"step {self.run.step}: the discriminator joins (train.gan_start = {self.run.cfg.gan_start:g}; "
                               f"L1 alone until now{bend})")
        self.gan = gan
        return gan

    def after_step(self) -> None:
        rate = self.timer.rate_after(self.run.step)
        if rate is None or not self.run.main or self.budget is not None:
            return
        cfg, step = self.run.cfg, self.run.step
        if self.gan:
            self.bar.write(expected_time(rate, cfg.steps - step))
        else:
            self.bar.write(expected_time(rate, math.ceil(cfg.gan_start * cfg.steps) - step, what="steps on L1 alone")
                           + "; the steps with the discriminator are timed once it joins")


class PhaseTimer:
    """The speed of a run's steps from ``start`` on, measured over steps ETA_WARMUP + 1 to
    ETA_WARMUP + ETA_STEPS after it (the first are slower: allocation, caches)."""

    def __init__(self, start: int) -> None:
        self.start, self.t0 = start, None

    def rate_after(self, step: int) -> float | None:
        """Steps per second, once, after the step that ends the window; else None."""
        if step == self.start + ETA_WARMUP:
            self.t0 = time.monotonic()
        elif step == self.start + ETA_WARMUP + ETA_STEPS and self.t0 is not None:
            return ETA_STEPS / max(time.monotonic() - self.t0, 1e-9)
        return None


def expected_time(rate: float, steps_left: int, *, what: str = "steps") -> str:
    """One line: the measured speed and how long the remaining steps take at it."""
    left = steps_left / max(rate, 1e-9)
    h, m = divmod(int(round(left / 60)), 60)
    ends = time.strftime("%H:%M", time.localtime(time.time() + left))
    return (f"{rate:.2f} it/s on this machine: the remaining {steps_left} {what} take about {f'{h} h ' if h else ''}{m} min "
            f"(until about {ends})")


def _on_schedule(run, losses: dict, bar) -> None:
    """Logging, previews, validation and checkpoints, each on its own step count. ``run``:
    a ``Run``, or any run with the same parts (training/swap.py's ``SwapRun``)."""
    cfg, step = run.cfg, run.step
    if run.writer is not None and step % cfg.log_every == 0:
        for k, v in losses.items():
            run.writer.add_scalar(f"loss/{k}", v, step)
        run.history.append({"step": step, **losses})
    if run.main and step % cfg.preview_every == 0:
        grid = run.preview()
        cv2.imwrite(str(run.out / "previews" / f"step_{step:07d}.png"), grid)
        run.writer.add_image("preview", grid[:, :, ::-1].copy(), step, dataformats="HWC")
    if run.main and step % cfg.val_every == 0:
        metrics = run.validate()
        for k, v in metrics.items():
            run.writer.add_scalar(f"val/{k}", v, step)
        run.history.append({"step": step, "val": metrics})
        bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if step % cfg.checkpoint_every == 0 and step < cfg.steps:
        run.save()


def start_run(dataset_dir: str | Path, out_dir: str | Path, *, model: ModelConfig, cfg: TrainConfig, resume: bool,
              extra, detector_factory, log: Callable[[str], None], init_from: str | Path | None = None) -> Run:
    """Everything before the first step: places, data, networks, optimisers, and on
    ``resume`` the state of the checkpoint, checked against this run."""
    rank, local_rank, world = _distributed()
    device = _device(cfg.device, local_rank)
    out = Path(out_dir)
    manifest = load_manifest(dataset_dir)
    if rank == 0:
        make_dir(out, error=TrainError, what="the model")  # before any slow work: an unwritable --out fails at once
    ckpt = _checkpoint_for(out, manifest, resume)
    arch = model if ckpt is None else _checkpoint_arch(ckpt, out)
    contract = dataset_contract(dataset_dir, manifest, ModelConfig(size=model.size if ckpt is None else ckpt["size"], depth=arch.depth))
    if ckpt is not None:
        contract.require_same(Contract.from_dict(ckpt["contract"]), "checkpoint")
    augment = Augment(warp=cfg.warp) if cfg.augment else None
    trainset = PairSet(dataset_dir, "train", contract.sketch, seed=cfg.seed, augment=augment, mouth_weight=cfg.mouth_weight,
                       eye_weight=cfg.eye_weight)
    valset = PairSet(dataset_dir, "val" if manifest["split"]["val"] > 0 else "train", contract.sketch, seed=cfg.seed, augment=None,
                     limit=cfg.val_frames)
    extra_pairs = extra(contract, device) if extra is not None else None
    _check_same_teacher(ckpt, extra_pairs, out)
    run = _networks(out, Path(dataset_dir), manifest, cfg, arch, contract, device, rank, world, trainset, valset, extra_pairs)
    run.detector_factory = detector_factory
    if ckpt is None and init_from is not None:
        run.init_from = _warm_start(run, init_from, log)
    if ckpt is not None:
        _restore(run, ckpt)
        if run.step >= cfg.steps:
            log(f"{out}: already trained for {run.step} steps (train.steps = {cfg.steps}); raise train.steps to continue")
    _open_logs(run, log)
    return run


def dataset_contract(dataset_dir: str | Path, manifest: dict, model: ModelConfig) -> Contract:
    """The contract of a dataset at a model's resolution: its framing and sketch spec
    resized to ``model.size`` (a multiple of 2**depth), its target neutral, and what its
    clip covers (gaze and head pose, measured from its landmarks)."""
    from training.data import model_framing

    spec = model_spec(manifest, model, model.depth)
    try:
        framing = model_framing(Framing.from_dict(manifest["framing"]), (spec.width, spec.height))
        neutral = np.asarray(manifest["neutral_px"], np.float32)
        coverage = measure_coverage(load_landmarks(Path(dataset_dir), len(manifest["samples"])), neutral)
    except ValueError as e:
        raise DatasetError(f"the dataset at {str(dataset_dir)!r} is damaged: {e}") from None
    return Contract(framing, spec, neutral, coverage)


def _checkpoint_for(out: Path, manifest: dict, resume: bool) -> dict | None:
    path = out / "checkpoint.pt"
    if not resume:
        if path.exists():
            raise TrainError(f"{out} already holds a training run; continue it with --resume, or choose another --out")
        return None
    ckpt = load_checkpoint(path)
    if ckpt["dataset_key"] != manifest["build_key"]:
        raise TrainError(f"{path} was trained on another dataset (key {ckpt['dataset_key']}, this one {manifest['build_key']})")
    return ckpt


def _checkpoint_arch(ckpt: dict, out: Path) -> ModelConfig:
    """The architecture the checkpoint was trained with (it carries its own)."""
    try:
        return from_architecture(ckpt["generator"], size=int(ckpt["size"]))
    except (TypeError, ValueError) as e:
        raise TrainError(f"{out / 'checkpoint.pt'} is damaged: its generator settings are invalid ({e})") from None


def _check_same_teacher(ckpt: dict | None, extra: ExtraPairs | None, out: Path) -> None:
    """A resumed run keeps its kind: plain training stays plain, a distillation keeps its teacher."""
    if ckpt is None:
        return
    had = (ckpt.get("teacher") or {}).get("model_id")
    has = extra.provenance.get("model_id") if extra else None
    if had != has:
        raise TrainError(f"{out / 'checkpoint.pt'} was " + (f"distilled from teacher {had}" if had else "trained without a teacher")
                         + (f", but this run distils from {has}" if has else ", but this run has no teacher")
                         + "; resume it the way it started")


def _networks(out, dataset_dir, manifest, cfg, arch, contract, device, rank, world, trainset, valset, extra) -> Run:
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only
    G = UNetGenerator(arch).to(device)
    D = MultiScaleDiscriminator(6, cfg.ndf, 3, cfg.d_scales).to(device)
    if device.type == "cuda":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    autocast, scaler = _autocast(device, cfg.amp)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if device.type == "cuda":
            G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
        ids = [device.index] if device.type == "cuda" else None
        G, D = DDP(G, device_ids=ids), DDP(D, device_ids=ids)
    return Run(out, dataset_dir, manifest, cfg, arch, contract, device, rank, world, trainset, valset, extra, G, D, opt_g, opt_d,
               scaler, autocast)


def _warm_start(run: Run, model_dir: str | Path, log: Callable[[str], None]) -> dict:
    """Start the generator from another model's weights. Only the generator: the
    discriminator and the optimisers start fresh, since they judge and step for this
    target. Returns its provenance (model ID and path) for the model card."""
    from models.artifact import load_generator, load_model_dir

    prior = load_model_dir(model_dir)
    if from_architecture(prior.generator_config) != from_architecture(architecture(run.arch)):
        raise TrainError(f"--init-from {model_dir}: its generator ({prior.generator_config}) is not this run's "
                         f"({architecture(run.arch)}); pick a model of the same --preset")
    _unwrap(run.G).load_state_dict(load_generator(prior).state_dict())
    log(f"generator starts from {prior.path} (model {prior.model_id}), not from random weights")
    return {"model_id": prior.model_id, "path": str(Path(model_dir).resolve())}


def _restore(run: Run, ckpt: dict) -> None:
    try:
        _unwrap(run.G).load_state_dict(ckpt["G"])
        _unwrap(run.D).load_state_dict(ckpt["D"])
        run.opt_g.load_state_dict(ckpt["opt_g"])
        run.opt_d.load_state_dict(ckpt["opt_d"])
        run.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng_cpu"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise TrainError(f"{run.checkpoint} does not fit this run ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                         "was it made with other settings (e.g. train.ndf)?") from None
    run.step, run.history, run.init_from = int(ckpt["step"]), list(ckpt.get("history", [])), ckpt.get("init_from")
    # Checkpoints from before train.gan_start trained the discriminator from their first step.
    run.gan_joined = bool(ckpt.get("gan_joined", run.step > 0))
    if run.device.type == "cuda" and ckpt.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(ckpt["rng_cuda"])


def _open_logs(run: Run, log: Callable[[str], None]) -> None:
    """Previews folder, TensorBoard writer, and the run's first line in the log."""
    if not run.main:
        return
    (run.out / "previews").mkdir(exist_ok=True)
    from torch.utils.tensorboard import SummaryWriter

    run.writer = SummaryWriter(str(run.out / "logs"), purge_step=run.step or None)
    spec = run.contract.sketch
    log(f"training {count_parameters(_unwrap(run.G)) / 1e6:.1f} M-parameter generator at {spec.width}x{spec.height} on {run.device}"
        f"{f' x{run.world}' if run.world > 1 else ''}: {len(run.trainset)} train / {len(run.valset)} validation frames, "
        f"steps {run.step} -> {run.cfg.steps}")
    if run.extra is not None:
        log(f"distilling from teacher {run.extra.provenance.get('model_id')}: {len(run.extra.pairs)} teacher pairs, "
            f"weight train.teacher_l1 = {run.extra.weight:g}")


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


def write_model(run: Run, *, final: bool) -> None:
    """Write the live-usable part of MODEL_DIR: weights, plate, card, model.json last."""
    out, G, manifest = run.out, _unwrap(run.G), run.manifest
    with atomic_path(out / "generator.pt") as tmp:
        torch.save({k: v.detach().cpu() for k, v in G.state_dict().items()}, tmp)
    plate = run.dataset_dir / "plate.png"
    if plate.is_file():
        shutil.copyfile(plate, out / "plate.png")
    vals = [h["val"] for h in run.history if "val" in h]
    meta = {
        "generator": architecture(run.arch),
        "contract": run.contract.to_dict(),
        "provenance": {
            "dataset": str(run.dataset_dir.resolve()), "dataset_key": manifest["build_key"],
            "sources": [{"path": s["path"], "sha256": s["sha256"]} for s in manifest["sources"]],
            "consent": manifest.get("consent"),
            "steps": run.step, "complete": final, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "torch": torch.__version__, "teacher": run.extra.provenance if run.extra else None,
            "init_from": run.init_from,
        },
        "metrics": vals[-1] if vals else {},
        "parameters": count_parameters(G),
    }
    files = ["generator.pt"] + (["plate.png"] if (out / "plate.png").is_file() else [])
    meta["model_id"] = model_id_of(sha256_file(out / "generator.pt"))  # names these weights in reports and logs
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
