"""The trainer: it learns, it resumes exactly, it never corrupts a checkpoint, it stops
cleanly on SIGTERM, and its model directory and exports verify."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.artifact import ArtifactError, load_model_dir
from models.config import ModelConfig, TrainConfig
from training import export as export_mod
from training import train as train_mod
from training.data import Augment, PairSet
from training.export import ExportError, export
from training.train import TrainError, load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ModelConfig(size=64, depth=6, ngf=8)


def tiny(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=2, ndf=8, checkpoint_every=1000, preview_every=1000, val_every=1000, val_frames=4, log_every=1)
    return TrainConfig(**(base | kw))


def run(ds, out, cfg, **kw):
    return train(ds, out, model=TINY_MODEL, cfg=cfg, progress=False, log=lambda s: None, **kw)


def test_resume_continues_exactly(puppet_dataset, tmp_path):
    run(puppet_dataset, tmp_path / "straight", tiny(steps=8))
    run(puppet_dataset, tmp_path / "split", tiny(steps=4))
    summary = run(puppet_dataset, tmp_path / "split", tiny(steps=8), resume=True)
    assert summary["step"] == 8
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for part in ("G", "D"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    la = [h["g_l1"] for h in a["history"] if "g_l1" in h]
    lb = [h["g_l1"] for h in b["history"] if "g_l1" in h]
    assert la == lb


def test_interrupted_save_keeps_the_previous_checkpoint(puppet_dataset, tmp_path, monkeypatch):
    out = tmp_path / "m"
    run(puppet_dataset, out, tiny(steps=2))
    good = load_checkpoint(out / "checkpoint.pt")
    real_save = torch.save

    def disk_full(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_mod.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        run(puppet_dataset, out, tiny(steps=4), resume=True)
    monkeypatch.setattr(train_mod.torch, "save", real_save)
    again = load_checkpoint(out / "checkpoint.pt")
    assert again["step"] == good["step"] == 2
    assert not list(out.glob(".*.tmp"))


def test_refuses_to_overwrite_or_mix_runs(puppet_dataset, tmp_path):
    with pytest.raises(TrainError, match="nothing to resume"):
        run(puppet_dataset, tmp_path / "none", tiny(), resume=True)
    run(puppet_dataset, tmp_path / "m", tiny(steps=1))
    with pytest.raises(TrainError, match="already holds a training run"):
        run(puppet_dataset, tmp_path / "m", tiny(steps=2))
    ckpt = load_checkpoint(tmp_path / "m" / "checkpoint.pt")
    ckpt["dataset_key"] = "someotherdata"
    torch.save(ckpt, tmp_path / "m" / "checkpoint.pt")
    with pytest.raises(TrainError, match="another dataset"):
        run(puppet_dataset, tmp_path / "m", tiny(steps=2), resume=True)
    (tmp_path / "m" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="not a readable checkpoint"):
        run(puppet_dataset, tmp_path / "m", tiny(steps=2), resume=True)


def test_model_directory_previews_and_metrics(puppet_dataset, tmp_path):
    out = tmp_path / "m"
    summary = run(puppet_dataset, out, tiny(steps=4, preview_every=2, val_every=4))
    model = load_model_dir(out)
    assert model.meta["provenance"]["steps"] == 4 and model.meta["provenance"]["complete"]
    assert set(model.meta["metrics"]) == {"l1", "psnr", "ssim", "landmark_error_iod", "detection_rate"}
    assert (out / "plate.png").is_file() and "model_card.md" in model.meta["files"]
    previews = sorted((out / "previews").glob("*.png"))
    assert [p.name for p in previews] == ["step_0000002.png", "step_0000004.png"]
    import cv2

    grid = cv2.imread(str(previews[-1]))
    assert grid.shape[1] == 3 * 64  # sketch | generated | real
    assert any(p.name.startswith("events") for p in (out / "logs").iterdir())
    assert any("val" in h for h in summary["history"])


@pytest.mark.parametrize("warp", [0.0, 0.015])
def test_augmentation_keeps_sketch_and_photo_aligned(puppet_dataset, warp):
    from live.sources import TARGET_SHAPE
    from models.sketch import SketchSpec

    spec = SketchSpec(64, 64)
    aug = PairSet(puppet_dataset, "train", spec, seed=0, augment=Augment(scale=0.1, shift=0.1, rotate=10, probability=1.0, warp=warp))
    plain = PairSet(puppet_dataset, "train", spec, seed=0, augment=None, mouth_weight=4, eye_weight=2)
    for i in range(5):
        sketch, photo, weight, _ = aug.sample(i, np.random.default_rng(i))
        psketch = plain.sample(i)[0]
        assert not np.array_equal(sketch, psketch)  # really transformed
        ink = sketch.any(axis=2)
        face = np.abs(photo.astype(int) - np.array(TARGET_SHAPE.background)).sum(axis=2) > 40
        assert (ink & face).sum() > 0.6 * ink.sum()
    _, _, w, _ = plain.sample(0)
    assert w.max() == 4.0 and w.min() == 1.0 and (w == 2.0).any()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), warp=st.floats(0.002, 0.015))
def test_a_bend_moves_each_point_with_the_photo(seed, warp):
    """train.warp bends photo and landmarks by one smooth field: a dot drawn at a point
    of the photo lands where the point's bent position says, to half a pixel, for
    every bend Augment draws up to the setting's maximum."""
    from models.sketch import SketchSpec
    from training.data import bend

    h = w = 256  # the models' size
    pairs = PairSet.__new__(PairSet)
    pairs.spec, pairs.augment = SketchSpec(w, h), Augment(warp=warp, probability=1.0)
    field = pairs._bend(np.random.default_rng(seed))
    pts = np.array([[x, y, 5.0] for x in (80.0, 128.3, 176.0) for y in (80.0, 127.7, 176.0)], np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    moved = bend(np.zeros((h, w, 3), np.uint8), pts, field)[1]
    assert np.array_equal(moved[:, 2], pts[:, 2])
    for p, q in zip(pts, moved):
        dot = np.exp(-((xs - p[0]) ** 2 + (ys - p[1]) ** 2) / (2 * 1.5**2))  # a soft dot at the point
        img = np.repeat((dot * 255)[..., None], 3, axis=2).astype(np.uint8)
        out = bend(img, pts, field)[0][..., 0].astype(np.float64)
        cx, cy = (out * xs).sum() / out.sum(), (out * ys).sum() / out.sum()
        assert np.hypot(cx - q[0], cy - q[1]) < 0.5, (p, q, (cx, cy))


@pytest.mark.clips
def test_losses_fall_on_real_frames(real_dataset, tmp_path):
    """The CI bar: a tiny CPU run on real frames of the target, losses going down."""
    cfg = tiny(steps=60, batch_size=4, val_frames=8, val_every=60)
    summary = train(real_dataset, tmp_path / "m", model=ModelConfig(size=64, depth=6, ngf=16), cfg=cfg, progress=False, log=lambda s: None)
    l1 = [h["g_l1"] for h in summary["history"] if "g_l1" in h]
    fm = [h["g_fm"] for h in summary["history"] if "g_fm" in h]
    assert np.mean(l1[-10:]) < 0.75 * np.mean(l1[:10])
    assert np.mean(fm[-10:]) < np.mean(fm[:10])


def test_sigterm_saves_and_resume_finishes(puppet_dataset, tmp_path):
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "reenact", "train", str(puppet_dataset), "--out", str(out), "--quiet",
           "--set", "model.size=64", "--set", "model.depth=6", "--set", "model.ngf=8", "--set", "train.steps=100000",
           "--set", "train.batch_size=1", "--set", "train.ndf=8", "--set", "train.val_frames=2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "logs").exists():
        time.sleep(0.2)
    time.sleep(2.0)  # some steps in
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "checkpoint saved" in stdout
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    assert step > 0
    model = load_model_dir(out)
    assert model.meta["provenance"]["steps"] == step and not model.meta["provenance"]["complete"]
    summary = run(puppet_dataset, out, tiny(steps=step + 2, batch_size=1), resume=True)
    assert summary["step"] == step + 2


def test_export_parity_metadata_and_verification(puppet_dataset, tmp_path):
    out = tmp_path / "m"
    run(puppet_dataset, out, tiny(steps=2))
    lines = []
    report = export(out, log=lines.append)
    assert report["fp32"]["max_abs_err"] < 1e-3 and report["fp16"]["mean_abs_err"] < 1e-2
    model = load_model_dir(out)
    # Two steps draw no face Face Mesh can read: no gaze response is recorded, and the log says so.
    assert "gaze_response" not in model.meta and any("live takes the sketch's irises as drawn" in s for s in lines)
    assert {"generator_fp16.onnx", "generator_fp32.onnx"} <= set(model.meta["files"])
    assert model.meta["export"]["parity"]["fp16"]["max_abs_err"] == report["fp16"]["max_abs_err"]
    import onnx

    m16 = onnx.load(str(out / "generator_fp16.onnx"))
    props = {p.key: p.value for p in m16.metadata_props}
    assert props["reenact.sketch_hash"] == model.contract.sketch.hash
    assert json.loads(props["reenact.framing"]) == model.contract.framing.to_dict()
    assert m16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    from models.artifact import check_onnx_metadata

    check_onnx_metadata(out / "generator_fp32.onnx", model)


def test_export_refuses_a_model_that_fails_parity(puppet_dataset, tmp_path, monkeypatch):
    out = tmp_path / "m"
    run(puppet_dataset, out, tiny(steps=1))
    monkeypatch.setitem(export_mod.TOLERANCE, "fp16", (1e-9, 1e-9))
    with pytest.raises(ExportError, match="fails parity"):
        export(out, log=lambda s: None)
    assert not (out / "generator_fp16.onnx").exists() and not list(out.glob(".*.tmp"))
    load_model_dir(out)  # still a valid (un-exported) model


def test_damaged_model_directories_are_refused_by_name(puppet_dataset, tmp_path):
    out = tmp_path / "m"
    run(puppet_dataset, out, tiny(steps=1))
    export(out, log=lambda s: None)

    def fresh():
        import shutil

        d = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(out, d)
        return d

    with pytest.raises(ArtifactError, match="does not exist"):
        load_model_dir(tmp_path / "nope")
    d = fresh()
    (d / "generator_fp32.onnx").write_bytes((d / "generator_fp32.onnx").read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="generator_fp32.onnx is truncated"):
        load_model_dir(d)
    d = fresh()
    (d / "generator.pt").unlink()
    with pytest.raises(ArtifactError, match="generator.pt is missing"):
        load_model_dir(d)
    d = fresh()
    data = bytearray((d / "generator.pt").read_bytes())
    data[-100] ^= 0xFF
    (d / "generator.pt").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="generator.pt is corrupt"):
        load_model_dir(d)
    for edit, message in (
        (lambda m: m["contract"].__setitem__("sketch_hash", "0" * 16), "sketch hash mismatch"),
        (lambda m: m["contract"]["sketch_spec"].__setitem__("version", 99), "version 99"),
        (lambda m: m.__setitem__("version", 7), "format version 7"),
        (lambda m: m["contract"]["framing"].__setitem__("out_size", [32, 32]), "differs from the framing"),
    ):
        d = fresh()
        meta = json.loads((d / "model.json").read_text())
        edit(meta)
        (d / "model.json").write_text(json.dumps(meta))
        with pytest.raises(ArtifactError, match=message):
            load_model_dir(d)


def test_a_model_from_another_framing_is_refused(puppet_dataset, tmp_path):
    from models.framing import Framing
    from models.artifact import Contract

    out = tmp_path / "m"
    run(puppet_dataset, out, tiny(steps=1))
    c = load_model_dir(out).contract
    moved = Contract(Framing(c.framing.source_size, (c.framing.crop[0] + 10, *c.framing.crop[1:]), c.framing.out_size), c.sketch, c.neutral_px)
    with pytest.raises(ArtifactError, match="framing crop"):
        c.require_same(moved)


@pytest.mark.slow
def test_torchrun_trains_with_ddp(puppet_dataset, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "reenact", "train",
           str(puppet_dataset), "--out", str(out), "--quiet", "--set", "model.size=64", "--set", "model.depth=6",
           "--set", "model.ngf=8", "--set", "train.steps=3", "--set", "train.batch_size=1", "--set", "train.ndf=8",
           "--set", "train.val_frames=2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "x2" in res.stdout  # the run reported two processes
    assert load_model_dir(out).meta["provenance"]["steps"] == 3


@settings(max_examples=30, deadline=None)
@given(st.floats(0.4, 2.0), st.floats(-0.1, 0.1))
def test_the_gaze_response_fit_recovers_how_a_generator_draws_irises(gain, offset):
    from models.retarget import EYES
    from training.export import fit_gaze_response

    asked = {eye: list(np.linspace(-0.1, 0.1, 21)) for eye in EYES}
    drawn = {eye: [gain * x + offset + 0.002 * (-1) ** i for i, x in enumerate(asked[eye])] for eye in EYES}  # a little read noise
    response, line = fit_gaze_response(asked, drawn)
    for eye in EYES:
        assert response.gain[eye] == pytest.approx(gain, abs=0.05) and response.offset[eye] == pytest.approx(offset, abs=0.01)
        assert response.sketch_x(eye, gain * 0.05 + offset) == pytest.approx(0.05, abs=0.01)


def test_a_generator_that_ignores_the_sketchs_irises_gets_no_gaze_response():
    from models.retarget import EYES
    from training.export import fit_gaze_response

    rng = np.random.default_rng(0)
    asked = {eye: list(np.linspace(-0.1, 0.1, 21)) for eye in EYES}
    response, line = fit_gaze_response(asked, {eye: list(rng.normal(0.03, 0.02, 21)) for eye in EYES})
    assert response is None and "does not follow its sketch" in line
    response, line = fit_gaze_response({eye: [0.0, 0.1] for eye in EYES}, {eye: [0.0, 0.1] for eye in EYES})
    assert response is None and "only 2" in line


def test_a_model_with_a_bad_gaze_response_is_refused_by_name(puppet_dataset, tmp_path):
    out = tmp_path / "m"
    run(puppet_dataset, out, tiny(steps=1))
    meta = json.loads((out / "model.json").read_text())
    meta["gaze_response"] = {"right": {"gain": 1.0, "offset": 0.0}, "left": {"gain": "NaN", "offset": 0.0}}
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="model.json: gaze response of the left eye"):
        load_model_dir(out)


def test_without_a_gpu_train_picks_the_cpu_preset_says_so_and_predicts_its_wall_time(puppet_dataset, tmp_path, monkeypatch, capsys):
    from models.config import PRESET_TRAINING, PRESETS
    from reenact.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "m"
    code = main(["train", str(puppet_dataset), "--out", str(out), "--quiet", "--set", "model.size=64", "--set", "model.depth=6",
                 "--set", "train.steps=60", "--set", "train.batch_size=2", "--set", "train.val_frames=2"])
    said = capsys.readouterr().out
    assert code == 0
    assert "training the cpu preset (no CUDA GPU" in said and "--preset full forces" in said
    # The preset's first three quarters are on L1 alone (train.gan_start): each phase is timed on its own steps.
    assert "it/s on this machine: the remaining 32 steps on L1 alone take about" in said
    assert "step 45: the discriminator joins" in said and "the pairs are bent from here, train.warp = 0.01" in said
    assert "it/s on this machine: the remaining 2 steps take about" in said
    generator = load_model_dir(out).meta["generator"]
    assert generator["ngf"] == PRESETS["cpu"]["ngf"] and generator["upsample"] == PRESETS["cpu"]["upsample"]
    recorded = load_checkpoint(out / "checkpoint.pt")["train"]
    assert recorded["ndf"] == PRESET_TRAINING["cpu"]["ndf"] and recorded["warp"] == PRESET_TRAINING["cpu"]["warp"] > 0


def test_the_gaze_sweep_spans_what_either_eye_covers():
    """The response is measured over the iris positions live asks of each eye (its own
    covered range), not only the part both eyes share: a generator follows small iris
    moves less than large ones, so a narrow sweep under-reads its gain."""
    from types import SimpleNamespace

    from models.puppet import PuppetPose, place, puppet_points
    from models.retarget import EYES, Coverage, iris_position
    from training.export import gaze_sweep

    neutral = place(puppet_points(PuppetPose()), iod_px=90, center=(200.0, 200.0))
    cover = Coverage({"right": ((-0.06, 0.15), (-0.1, 0.05)), "left": ((-0.15, 0.03), (-0.1, 0.05))}, {})
    pairs = gaze_sweep(SimpleNamespace(neutral_px=neutral, coverage=cover))
    for eye in EYES:
        asked = [a[eye] for a, _ in pairs]
        drawn = [iris_position(pts, eye)[0] for _, pts in pairs]
        assert np.allclose(asked, drawn, atol=2e-3)  # the irises really are where the sweep says
        (lo, hi), _ = cover.gaze[eye]
        reach = (lo - 0.1, hi + 0.1)  # what live may ask of this eye (SKETCH_MARGIN past its range)
        assert min(asked) <= max(-0.15, reach[0]) + 1e-9 and max(asked) >= min(0.15, reach[1]) - 1e-9
        assert reach[0] - 1e-9 <= min(asked) and max(asked) <= reach[1] + 1e-9


def test_auto_preset_is_full_with_a_gpu_and_cpu_for_a_student():
    from training.commands import auto_preset

    assert auto_preset(teacher=False, gpu=True)[0] == "full"
    assert auto_preset(teacher=False, gpu=False)[0] == "cpu"
    assert auto_preset(teacher=True, gpu=True)[0] == "cpu"


def test_a_time_budget_holds_the_rate_then_decays_it_to_zero_at_its_end():
    from training.train import TimeBudget

    now = [100.0]
    budget = TimeBudget(2.0, start_step=40, clock=lambda: now[0])  # 120 s
    assert budget.lr_scale() == 1.0 and not budget.up()
    now[0] += 30  # a quarter: still the full rate
    assert budget.lr_scale() == 1.0 and budget.expected_steps(70) == 70 + 90  # 1 step/s so far, 90 s left
    now[0] += 60  # three quarters: half the rate
    assert budget.lr_scale() == pytest.approx(0.5)
    now[0] += 30
    assert budget.up() and budget.lr_scale() == 0.0
    with pytest.raises(TrainError, match="positive"):
        TimeBudget(float("nan"), 0)


def test_train_for_minutes_ends_on_time_complete_and_exported_and_resume_adds_minutes(puppet_dataset, tmp_path, capsys):
    from reenact.cli import main

    out = tmp_path / "m"
    args = ["train", str(puppet_dataset), "--out", str(out), "--quiet", "--preset", "full", "--set", "model.size=64",
            "--set", "model.depth=6", "--set", "model.ngf=8", "--set", "train.ndf=8", "--set", "train.batch_size=2",
            "--set", "train.val_frames=2"]
    t0 = time.monotonic()
    assert main(args + ["--minutes", "0.1"]) == 0
    assert time.monotonic() - t0 < 6 + 30  # 6 s of training, then validation and export
    said = capsys.readouterr().out
    assert "training for 0.1 min of wall time" in said and "ready for `reenact live" in said
    model = load_model_dir(out)
    first = model.meta["provenance"]["steps"]
    assert model.meta["provenance"]["complete"] and first >= 1
    assert {"generator_fp32.onnx", "generator_fp16.onnx"} <= set(model.meta["files"])
    assert main(args + ["--minutes", "0.05", "--resume"]) == 0
    assert load_model_dir(out).meta["provenance"]["steps"] > first


def test_resume_goes_on_with_the_settings_the_run_started_with(puppet_dataset, tmp_path):
    """`reenact train --resume` without the first command's --set: the discriminator's
    width and the rest of [train] come from the checkpoint (a `cpu` run resumed without
    --preset cpu used to build a discriminator of the default width, which its weights
    do not fit). A --set train.* given now still counts."""
    from reenact.cli import main

    out = tmp_path / "m"
    first = ["train", str(puppet_dataset), "--out", str(out), "--quiet", "--preset", "full", "--set", "model.size=64",
             "--set", "model.depth=6", "--set", "model.ngf=8", "--set", "train.ndf=8", "--set", "train.batch_size=2",
             "--set", "train.val_frames=2", "--set", "train.mouth_weight=6", "--set", "train.steps=2"]
    assert main(first) == 0
    assert main(["train", str(puppet_dataset), "--out", str(out), "--quiet", "--resume", "--set", "train.steps=4"]) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 4
    assert (ckpt["train"]["ndf"], ckpt["train"]["batch_size"], ckpt["train"]["mouth_weight"]) == (8, 2, 6.0)
    assert ckpt["D"]["scales.0.blocks.0.0.weight"].shape[0] == 8  # the first run's discriminator, still


def test_a_warm_start_begins_from_the_priors_generator_and_records_it(puppet_dataset, tiny_model, tmp_path):
    """--init-from: the first step starts from the prior's weights (one Adam step away
    from them, not from a random draw), and the model card's provenance names it, also
    after a resume."""
    from models.artifact import load_generator

    prior = load_generator(load_model_dir(tiny_model)).state_dict()
    # Another seed than the prior's: without the warm start these runs begin elsewhere.
    cfg = TrainConfig(steps=1, batch_size=2, ndf=8, val_frames=2, checkpoint_every=1000, preview_every=1000, val_every=1000, lr=1e-4,
                      seed=5)
    arch = ModelConfig(size=64, depth=6, ngf=8)
    train(puppet_dataset, tmp_path / "warm", model=arch, cfg=cfg, progress=False, log=lambda s: None, init_from=tiny_model)
    train(puppet_dataset, tmp_path / "cold", model=arch, cfg=cfg, progress=False, log=lambda s: None)
    warm = load_generator(load_model_dir(tmp_path / "warm")).state_dict()
    cold = load_generator(load_model_dir(tmp_path / "cold")).state_dict()
    convs = [k for k in prior if k.endswith("weight") and prior[k].dim() == 4]
    assert max(float((warm[k] - prior[k]).abs().max()) for k in convs) <= 2.5e-4  # one step of lr 1e-4 (Adam: ~lr per weight)
    assert min(float((cold[k] - prior[k]).abs().max()) for k in convs) > 1e-2
    prior_id = load_model_dir(tiny_model).model_id
    assert load_model_dir(tmp_path / "warm").meta["provenance"]["init_from"]["model_id"] == prior_id
    train(puppet_dataset, tmp_path / "warm", model=arch, cfg=TrainConfig(**{**cfg.__dict__, "steps": 2}), resume=True, progress=False,
          log=lambda s: None)
    assert load_model_dir(tmp_path / "warm").meta["provenance"]["init_from"]["model_id"] == prior_id


def test_a_warm_start_from_another_architecture_is_refused_by_name(puppet_dataset, tiny_model, tmp_path):
    cfg = TrainConfig(steps=1, batch_size=2, ndf=8, val_frames=2)
    with pytest.raises(TrainError, match="same --preset"):
        train(puppet_dataset, tmp_path / "m", model=ModelConfig(size=64, depth=6, ngf=16), cfg=cfg, progress=False,
              log=lambda s: None, init_from=tiny_model)


def test_the_generator_update_takes_no_gradient_for_the_discriminator_and_steps_as_before(monkeypatch):
    """Freezing D for the generator's backward is only a saving: one training step
    moves both networks exactly as a step that computes (and then discards) D's
    gradient from the generator's loss, as under DistributedDataParallel; and D is
    trainable again afterwards."""
    import copy

    from torch import nn

    from models.patchgan import MultiScaleDiscriminator
    from models.unet import UNetGenerator

    torch.manual_seed(0)
    G, D = UNetGenerator(ModelConfig(ngf=4, depth=5, upsample="resize")), MultiScaleDiscriminator(6, 8, 3, 1)
    sketch, real = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    weight = torch.ones(2, 1, 32, 32)
    after = {}
    for d_open in (False, True):
        g, d = copy.deepcopy(G), copy.deepcopy(D)
        opt_g, opt_d = torch.optim.Adam(g.parameters(), lr=1e-3), torch.optim.Adam(d.parameters(), lr=1e-3)
        autocast, scaler = train_mod._autocast(torch.device("cpu"), "off")
        with monkeypatch.context() as m:
            if d_open:  # D counted as wrapped by DDP: its weights get the generator loss's gradient too
                m.setattr(nn.parallel, "DistributedDataParallel", type(d))
            torch.manual_seed(1)  # the same dropout masks
            train_mod.train_step(g, d, opt_g, opt_d, scaler, autocast, TrainConfig(), sketch, real, weight)
        assert all(p.requires_grad for p in d.parameters())
        after[d_open] = [p.detach().clone() for p in (*g.parameters(), *d.parameters())]
    assert len(after[False]) == len(after[True])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(after[False], after[True]))
    assert not all(torch.equal(a, b) for a, b in zip(after[False], [p.detach() for p in (*G.parameters(), *D.parameters())]))


def test_gan_start_trains_on_l1_alone_for_its_share_of_the_run_then_with_the_discriminator():
    """``train.gan_start``: the share of the run's steps, or of its time budget (whichever
    ends first), before the discriminator joins; once it has, never back to L1 alone."""
    from training.train import TimeBudget, gan_phase

    cfg = TrainConfig(steps=100, gan_start=0.4)
    assert [gan_phase(cfg, s, None, joined=False) for s in (0, 39, 40, 99)] == [False, False, True, True]
    assert gan_phase(TrainConfig(steps=100), 0, None, joined=False) is True  # 0 = from the start
    # a finished run resumed with more steps: 10000 is below 0.75 of 20000, but D has trained
    more = TrainConfig(steps=20000, gan_start=0.75)
    assert gan_phase(more, 10000, None, joined=True) is True and gan_phase(more, 10000, None, joined=False) is False
    now = [0.0]
    budget = TimeBudget(1.0, 0, clock=lambda: now[0])
    assert gan_phase(cfg, 0, budget, joined=False) is False
    now[0] = 0.41 * 60
    assert gan_phase(cfg, 5, budget, joined=False) is True  # by time
    now[0] = 0.1 * 60
    assert gan_phase(cfg, 40, budget, joined=False) is True  # by the step cap, before its time


def test_a_resumed_run_whose_discriminator_joined_keeps_it(puppet_dataset, tmp_path):
    out = tmp_path / "m"
    run(puppet_dataset, out, tiny(steps=6, gan_start=0.5))
    summary = run(puppet_dataset, out, tiny(steps=20, gan_start=0.5), resume=True)  # step 6 is below 0.5 x 20
    with_d = {h["step"]: "d" in h for h in summary["history"] if "val" not in h}
    assert [with_d[s] for s in range(1, 7)] == [False] * 3 + [True] * 3
    assert all(with_d[s] for s in range(7, 21))
    assert load_checkpoint(out / "checkpoint.pt")["gan_joined"] is True


def test_the_bend_starts_when_the_discriminator_joins(puppet_dataset, tmp_path, monkeypatch):
    """train.warp bends the pairs of the adversarial phase only: the L1 phase trains on
    the very pairs of a run without the bend, and every step after the join on bent ones."""
    seen = []
    real_step = train_mod.train_step
    monkeypatch.setattr(train_mod, "train_step", lambda *a, **kw: seen.append((kw["gan"], a[7].clone())) or real_step(*a, **kw))
    run(puppet_dataset, tmp_path / "m", tiny(steps=8, gan_start=0.5, warp=0.015))
    bent = seen[:]
    seen.clear()
    run(puppet_dataset, tmp_path / "plain", tiny(steps=8, gan_start=0.5, warp=0.0))
    assert [g for g, _ in bent] == [False] * 4 + [True] * 4
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(bent[:4], seen[:4]))
    assert not any(torch.equal(a, b) for (_, a), (_, b) in zip(bent[4:], seen[4:]))


def test_an_l1_step_moves_the_generator_and_leaves_the_discriminator_alone():
    from models.patchgan import MultiScaleDiscriminator
    from models.unet import UNetGenerator

    torch.manual_seed(0)
    G, D = UNetGenerator(ModelConfig(ngf=4, depth=5, upsample="resize")), MultiScaleDiscriminator(6, 8, 3, 1)
    g0, d0 = [p.detach().clone() for p in G.parameters()], [p.detach().clone() for p in D.parameters()]
    d_stats = [b.detach().clone() for b in D.buffers()]
    opt_g, opt_d = torch.optim.Adam(G.parameters(), lr=1e-3), torch.optim.Adam(D.parameters(), lr=1e-3)
    autocast, scaler = train_mod._autocast(torch.device("cpu"), "off")
    sketch, real = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    losses = train_mod.train_step(G, D, opt_g, opt_d, scaler, autocast, TrainConfig(), sketch, real, torch.ones(2, 1, 32, 32), gan=False)
    assert set(losses) == {"g_l1"} and losses["g_l1"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(d0, D.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(d_stats, D.buffers()))  # not even its BatchNorm statistics
    assert all(p.grad is None for p in D.parameters())
