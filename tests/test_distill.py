"""Distillation (`reenact train --teacher`), the model presets, and which model tier
live loads: the student keeps the teacher's contract, learns towards the teacher, also
sees driven expressions the dataset lacks, resumes with its cached teacher pairs, and a
CPU-only machine picks the CPU tier."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from live.engines import choose_model_dir
from models.artifact import ArtifactError, load_generator, load_model_dir
from models.config import PRESETS, ConfigError, ModelConfig, TrainConfig, load_config
from models.geometry import expression
from training.distill import CACHE, DistillError, distill, puppet_faces, render_with, retarget_onto
from training.train import load_checkpoint

STUDENT = ModelConfig(size=64, depth=6, ngf=4, upsample="resize")


def tiny(**kw) -> TrainConfig:
    base = dict(steps=4, batch_size=2, ndf=8, checkpoint_every=1000, preview_every=1000, val_every=1000, val_frames=4, log_every=1)
    return TrainConfig(**(base | kw))


def distil(ds, out, teacher, cfg, **kw):
    logs: list[str] = []
    summary = distill(ds, out, teacher=teacher, drivers=kw.pop("drivers", []), model=STUDENT, cfg=cfg, progress=False,
                      log=logs.append, **kw)
    return summary, logs


def test_student_keeps_the_teacher_contract_and_records_it(puppet_dataset, tiny_model, tmp_path):
    distil(puppet_dataset, tmp_path / "s", tiny_model, tiny())
    teacher, student = load_model_dir(tiny_model), load_model_dir(tmp_path / "s")
    teacher.contract.require_same(student.contract)  # raises on any difference
    assert student.contract.sketch.hash == teacher.contract.sketch.hash
    assert student.generator_config["ngf"] == 4 and student.generator_config["upsample"] == "resize"
    assert teacher.generator_config["ngf"] != 4
    prov = student.meta["provenance"]["teacher"]
    assert prov["model_id"] == teacher.meta["model_id"] and prov["drivers"] == []
    assert teacher.meta["model_id"] in (tmp_path / "s" / "model_card.md").read_text()


def test_teacher_pairs_are_the_teachers_renderings_of_dataset_and_driven_faces(puppet_dataset, tiny_model, tmp_path):
    distil(puppet_dataset, tmp_path / "s", tiny_model, tiny(steps=1))
    with np.load(tmp_path / "s" / CACHE) as z:
        px, photos = z["source_px"], z["photos"]
    teacher = load_model_dir(tiny_model)
    n_driven = len(puppet_faces())
    assert len(px) > n_driven > 0
    # The cached photos are exactly what the teacher draws for those faces.
    pick = np.array([0, len(px) - n_driven - 1, len(px) - 1])
    again = render_with(load_generator(teacher), px[pick], teacher.contract.framing, teacher.contract.sketch, torch.device("cpu"))
    assert np.abs(again.astype(int) - photos[pick]).max() <= 1
    # The driven faces reach expressions the dataset's own faces do not.
    dataset_px, driven_px = px[:-n_driven], px[-n_driven:]
    jaw = lambda faces: max(expression(f).mouth_open for f in faces)  # noqa: E731
    assert jaw(driven_px) > 1.1 * jaw(dataset_px)


def test_driven_faces_follow_the_driver_on_the_target(tiny_model):
    """Retargeting for teacher pairs is live's: a driver's open jaw opens the target's."""
    faces = puppet_faces(seconds=8.0)
    target = load_model_dir(tiny_model).contract.neutral_px
    driven = retarget_onto(faces, target)
    d_open = np.array([expression(f).mouth_open for f in faces])
    t_open = np.array([expression(f).mouth_open for f in driven])
    assert np.corrcoef(d_open, t_open)[0, 1] > 0.95


def test_driver_videos_are_read_with_face_mesh(tmp_path):
    """A driver clip's faces are found on every 2nd frame and follow the driver."""
    from live.sources import DRIVER_SHAPE, PuppetSource
    from models.video import write_video
    from training.distill import video_faces

    src = PuppetSource(seed=5, shape=DRIVER_SHAPE, size=(256, 256), frames=90)
    clip = tmp_path / "driver.mp4"
    write_video(clip, (f.image for f in src), 30.0)
    faces = video_faces(clip)
    assert faces.shape == (45, 478, 3) and faces.dtype == np.float32
    truth = np.stack([src.points(i) for i in range(0, 90, 2)])
    seen = np.array([expression(f).mouth_open for f in faces])
    real = np.array([expression(f).mouth_open for f in truth])
    assert np.corrcoef(seen, real)[0, 1] > 0.9


def test_student_learns_towards_the_teacher(puppet_dataset, tiny_model, tmp_path):
    """With only the teacher loss on, the student's output moves to the teacher's."""
    cfg = dict(lambda_gan=0.0, lambda_fm=0.0, lambda_l1=0.0, teacher_l1=100.0, augment=False, lr=2e-3)
    distil(puppet_dataset, tmp_path / "early", tiny_model, tiny(steps=1, **cfg))
    distil(puppet_dataset, tmp_path / "late", tiny_model, tiny(steps=150, **cfg))
    teacher = load_model_dir(tiny_model)
    with np.load(tmp_path / "late" / CACHE) as z:
        px = z["source_px"][::40]
    args = (teacher.contract.framing, teacher.contract.sketch, torch.device("cpu"))
    target = render_with(load_generator(teacher), px, *args).astype(float)
    gap = {name: np.abs(render_with(load_generator(load_model_dir(tmp_path / name)), px, *args) - target).mean()
           for name in ("early", "late")}
    assert gap["late"] < 0.7 * gap["early"], gap


def test_resume_reuses_the_cached_pairs_and_the_checkpoints_teacher(puppet_dataset, tiny_model, tmp_path):
    distil(puppet_dataset, tmp_path / "s", tiny_model, tiny(steps=2))
    summary, logs = distil(puppet_dataset, tmp_path / "s", None, tiny(steps=4), resume=True)
    assert summary["step"] == 4
    assert any("teacher pairs:" in line and CACHE in line for line in logs), logs
    assert load_checkpoint(tmp_path / "s" / "checkpoint.pt")["teacher"]["model_id"] == load_model_dir(tiny_model).meta["model_id"]


def test_a_teacher_with_another_contract_is_refused(puppet_dataset, tiny_model, tmp_path):
    import json
    import shutil

    other = tmp_path / "other_ds"
    shutil.copytree(puppet_dataset, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["neutral_px"] = (np.asarray(manifest["neutral_px"]) + 7.0).tolist()  # another target's rest face
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="neutral"):
        distil(other, tmp_path / "s", tiny_model, tiny())


def test_unusable_teachers_and_drivers_are_named(puppet_dataset, tiny_model, tmp_path):
    with pytest.raises(DistillError, match="teacher"):
        distil(puppet_dataset, tmp_path / "a", tmp_path / "nowhere", tiny())
    blank = tmp_path / "blank.mp4"
    from models.video import write_video

    write_video(blank, (np.full((96, 96, 3), 80, np.uint8) for _ in range(30)), 30.0)
    with pytest.raises(DistillError, match="blank.mp4"):
        distil(puppet_dataset, tmp_path / "b", tiny_model, tiny(), drivers=[str(blank)])


def test_cli_puts_the_student_beside_its_teacher(puppet_dataset, tiny_model, tmp_path):
    import shutil

    from reenact.cli import main

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_model, teacher)
    args = ["train", str(puppet_dataset), "--teacher", str(teacher), "--quiet", "--preset", "cpu",
            "--set", "model.depth=6", "--set", "model.ngf=4", "--set", "train.steps=2", "--set", "train.batch_size=2",
            "--set", "train.ndf=8", "--set", "train.val_frames=2"]
    assert main(args) == 0
    student = load_model_dir(teacher / "cpu")
    assert student.generator_config == {**student.generator_config, "ngf": 4, "upsample": "resize"}
    assert main(["export", str(teacher), "--quiet"]) == 0  # exports the model and its CPU tier
    assert "generator_fp32.onnx" in load_model_dir(teacher / "cpu").meta["files"]
    assert main(["train", str(puppet_dataset), "--quiet"]) == 2  # neither --out nor --teacher


def test_a_lighter_rung_is_distilled_beside_its_model_exported_and_loaded_by_live(puppet_dataset, tiny_model, tmp_path):
    import shutil

    from live.session import light_rung
    from reenact.cli import main

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    assert main(["train", str(puppet_dataset), "--teacher", str(model), "--preset", "light", "--quiet", "--set", "model.depth=6",
                 "--set", "train.steps=2", "--set", "train.batch_size=2", "--set", "train.ndf=8", "--set", "train.val_frames=2"]) == 0
    assert main(["export", str(model), "--quiet"]) == 0
    light = light_rung(load_model_dir(model))  # keeps the model's contract, or live would refuse it
    assert light is not None and light.generator_config["upsample"] == "icnr" and light.generator_config["ngf"] == 8
    assert "generator_fp32.onnx" in light.meta["files"]


def test_demo_trains_the_cpu_preset_without_a_gpu():
    from reenact.demo import demo_preset

    assert demo_preset(None, gpu=False)[0] == "cpu" and demo_preset(None, gpu=True)[0] == "full"
    assert demo_preset("full", gpu=False)[0] == "full"
    cpu = ModelConfig(**PRESETS["cpu"])
    assert cpu.size >= 256 and cpu.ngf < ModelConfig(**PRESETS["full"]).ngf  # issue 10: at least 256x256 on the CPU


def test_presets_apply_over_the_file_and_under_set(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[model]\nngf = 48\nsize = 512\n")
    assert load_config(f, preset="cpu").model == ModelConfig(**PRESETS["cpu"])
    assert load_config(f, ["model.ngf=20"], preset="cpu").model.ngf == 20
    assert load_config(f).model.ngf == 48
    with pytest.raises(ConfigError, match="'gpu'"):
        load_config(f, preset="gpu")


def make_tiers(tmp_path: Path, *, cpu: bool) -> Path:
    full = tmp_path / "m"
    full.mkdir()
    (full / "model.json").write_text("{}")
    if cpu:
        (full / "cpu").mkdir()
        (full / "cpu" / "model.json").write_text("{}")
    return full


@pytest.mark.parametrize("engine,tier,gpu,expected", [
    ("auto", "auto", False, "cpu"),
    ("auto", "auto", True, "full"),
    ("ort-cpu", "auto", True, "cpu"),
    ("ort-cuda", "auto", False, "full"),
    ("torch-cuda", "auto", True, "full"),
    ("auto", "full", False, "full"),
    ("auto", "cpu", True, "cpu"),
])
def test_live_loads_the_tier_that_fits_the_machine(tmp_path, engine, tier, gpu, expected):
    full = make_tiers(tmp_path, cpu=True)
    chosen, why = choose_model_dir(full, engine=engine, tier=tier, gpu=gpu)
    assert chosen == (full / "cpu" if expected == "cpu" else full)
    assert why


def test_a_model_without_a_cpu_tier_says_how_to_make_one(tmp_path):
    full = make_tiers(tmp_path, cpu=False)
    (full / "model.json").write_text('{"parameters": 54400000}')
    chosen, why = choose_model_dir(full, engine="auto", tier="auto", gpu=False)
    assert chosen == full and "--teacher" in why
    with pytest.raises(ArtifactError, match="--teacher"):
        choose_model_dir(full, engine="auto", tier="cpu", gpu=False)


def test_a_small_model_needs_no_cpu_tier(tmp_path):
    small = make_tiers(tmp_path, cpu=False)
    (small / "model.json").write_text('{"parameters": 2450000}')
    chosen, why = choose_model_dir(small, engine="auto", tier="auto", gpu=False)
    assert chosen == small and "--teacher" not in why and "small enough" in why
