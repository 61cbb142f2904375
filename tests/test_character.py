"""The built-in character: the puppet's gaze and look it is trained on, packing a model
for CPU cores, and the shipped character itself (it loads, is small, is synthetic, and
drives from the puppet as a viewer would accept: eyes that look where the driver looks,
a mouth that opens with the driver's, a face in every frame)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import topology as T
from models.artifact import ArtifactError, LIGHT_RUNG, builtin_character, load_model_dir
from models.puppet import (CHARACTER_SHAPE, DRIVER_SHAPE, PuppetPose, PuppetScript, place, puppet_points, puppet_pose_at,
                           render_puppet)
from models.retarget import iris_position

ROOT = Path(__file__).resolve().parents[1]
CHARACTER = builtin_character()
IRISES = list(range(468, 478))


# ---------------------------------------------------------------- the puppet's gaze and look

@settings(max_examples=40, deadline=None)
@given(gx=st.floats(-0.3, 0.3), gy=st.floats(-0.4, 0.4), yaw=st.floats(-20, 20))
def test_gaze_moves_only_the_irises_by_eye_widths(gx, gy, yaw):
    rest = puppet_points(PuppetPose(yaw=yaw))
    looking = puppet_points(PuppetPose(yaw=yaw, gaze_x=gx, gaze_y=gy))
    others = np.setdiff1d(np.arange(478), IRISES)
    assert np.allclose(rest[others], looking[others])
    front_rest, front = puppet_points(PuppetPose()), puppet_points(PuppetPose(gaze_x=gx))
    for eye in ("right", "left"):  # facing the camera, the measured iris position moves by gaze_x
        was, now = iris_position(front_rest, eye)[0], iris_position(front, eye)[0]
        assert now - was == pytest.approx(gx, abs=0.02)


def test_a_script_without_gaze_keeps_its_performance():
    for t in (0.5, 2.0, 7.3):
        a, b = puppet_pose_at(t, 5), puppet_pose_at(t, 5, gaze=1.0)
        assert (a.jaw, a.smile, a.blink, a.brow, a.yaw, a.pitch, a.roll) == (b.jaw, b.smile, b.blink, b.brow, b.yaw, b.pitch, b.roll)
        assert a.gaze_x == a.gaze_y == 0.0
    moving = [puppet_pose_at(t, 5, gaze=1.0).gaze_x for t in np.arange(1.5, 12, 0.25)]
    assert np.ptp(moving) > 0.2  # it looks around


def _character_image(pose: PuppetPose) -> tuple[np.ndarray, np.ndarray]:
    pts = place(puppet_points(pose, CHARACTER_SHAPE), iod_px=120, center=(240, 200))
    return pts, render_puppet(pts, (480, 480), CHARACTER_SHAPE)


def test_the_character_look_has_irises_and_an_open_mouth_shows_teeth():
    pts, img = _character_image(PuppetPose())
    iris = img[int(pts[468, 1]) - 2 : int(pts[468, 1]) + 3, int(pts[468, 0]) - 2 : int(pts[468, 0]) + 3]
    assert iris.mean() < 60  # the pupil, dark
    ring = img[int(pts[468, 1]), int(pts[468, 0] + 0.7 * np.linalg.norm(pts[469, :2] - pts[468, :2]))]
    assert ring[0] > ring[2] + 40  # the iris around it, blue (BGR)
    open_pts, open_img = _character_image(PuppetPose(jaw=0.8))
    x, y = int(open_pts[13, 0]), int(open_pts[13, 1] + 3)  # just under the upper inner lip: teeth
    assert open_img[y, x].min() > 180
    _, shut = _character_image(PuppetPose())
    assert shut[y, x].min() < 180  # shut: no teeth there


@pytest.mark.slow
def test_face_mesh_reads_the_characters_gaze():
    from models.landmarks import FaceMeshDetector

    with FaceMeshDetector(tracking=False) as det:
        read = {}
        for gx in (-0.22, 0.0, 0.22):
            lm = det.detect(_character_image(PuppetPose(gaze_x=gx))[1])
            assert lm is not None
            read[gx] = np.mean([iris_position(lm.pixels().astype(np.float64), eye)[0] for eye in ("right", "left")])
    assert read[-0.22] < read[0.0] - 0.05 and read[0.22] > read[0.0] + 0.05


# ---------------------------------------------------------------- packing for CPU cores

def test_a_packed_model_runs_on_the_cpu_engine_and_keeps_its_id(tiny_model, tmp_path):
    from live.engines import create_engine
    from training.export import pack_for_cpu

    source = load_model_dir(tiny_model)
    packed = load_model_dir(pack_for_cpu(tiny_model, tmp_path / "packed", card="# a card\n"))
    assert sorted(packed.meta["files"]) == ["generator_fp32.onnx", "model_card.md", "plate.png"]
    assert packed.model_id == source.model_id and (packed.path / "model_card.md").read_text() == "# a card\n"
    assert not any(str(tmp_path.parent) in line or "/tmp" in line for line in (packed.path / "model.json").read_text().splitlines())
    assert not (tmp_path / "packed.tmp").exists()
    sketch = np.zeros((64, 64, 3), np.uint8)
    packed_engine, source_engine = create_engine(packed, "auto", log=lambda s: None), create_engine(source, "ort-cpu")
    try:
        assert packed_engine.name == "ort-cpu"  # no generator.pt, no fp16 ONNX: the fp32 ONNX on CPU cores
        assert np.array_equal(packed_engine.infer(sketch).copy(), source_engine.infer(sketch).copy())
    finally:
        packed_engine.close()
        source_engine.close()


def test_a_pack_with_fp16_weights_runs_in_pytorch_and_seeds_training(tiny_model, puppet_dataset, tmp_path):
    """The built-in character keeps its weights in fp16: they load into the fp32
    network within fp16's precision, and a new model's training can start from them."""
    import torch

    from models.artifact import load_generator
    from models.config import ModelConfig, TrainConfig
    from training.export import pack_for_cpu
    from training.train import train

    packed = load_model_dir(pack_for_cpu(tiny_model, tmp_path / "packed", weights_fp16=True))
    assert "generator_fp16.pt" in packed.meta["files"] and "generator.pt" not in packed.meta["files"]
    assert (packed.path / "generator_fp16.pt").stat().st_size < 0.6 * (tiny_model / "generator.pt").stat().st_size
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref, half = load_generator(load_model_dir(tiny_model))(x), load_generator(packed)(x)
    assert float((ref - half).abs().max()) < 0.02
    cfg = TrainConfig(steps=1, batch_size=2, ndf=8, val_frames=2, checkpoint_every=1000, preview_every=1000, val_every=1000)
    train(puppet_dataset, tmp_path / "warm", model=ModelConfig(size=64, depth=6, ngf=8), cfg=cfg, progress=False,
          log=lambda s: None, init_from=packed.path)
    assert load_model_dir(tmp_path / "warm").meta["provenance"]["init_from"]["model_id"] == packed.model_id


def test_a_packed_model_without_its_id_is_refused(tiny_model, tmp_path):
    from training.export import pack_for_cpu

    packed = pack_for_cpu(tiny_model, tmp_path / "packed")
    meta = json.loads((packed / "model.json").read_text())
    meta["model_id"] = "../../x"
    (packed / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="model ID"):
        load_model_dir(packed)


def test_packing_an_unexported_model_fails_and_leaves_nothing(tiny_model, tmp_path):
    import shutil

    from models.errors import ModelError
    from training.export import pack_for_cpu

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model, bare)
    meta = json.loads((bare / "model.json").read_text())
    del meta["files"]["generator_fp32.onnx"]
    (bare / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="reenact export"):
        pack_for_cpu(bare, tmp_path / "packed")
    assert not (tmp_path / "packed").exists()


# ---------------------------------------------------------------- the shipped character

def test_the_built_in_character_ships_complete_small_and_synthetic():
    model = load_model_dir(CHARACTER)  # every file's sha256 verified
    size = sum(f.stat().st_size for f in CHARACTER.rglob("*") if f.is_file())
    assert size <= 20 * 2**20
    assert model.meta["provenance"]["consent"]["target"].startswith("synthetic")
    assert "not a person" in (CHARACTER / "model_card.md").read_text()
    light = load_model_dir(CHARACTER / LIGHT_RUNG)
    model.contract.require_same(light.contract, "light rung")
    assert light.meta["parameters"] < model.meta["parameters"] / 2
    for d in (CHARACTER, CHARACTER / LIGHT_RUNG):
        assert "/" not in json.dumps(json.loads((d / "model.json").read_text())["provenance"]).replace("\\/", "")



def test_the_character_ships_the_fast_graph_of_its_own_weights():
    """Its ONNX is the folded form this version exports (live gives no re-export advice),
    and it draws what its shipped fp16 weights draw in PyTorch."""
    import onnxruntime as ort
    import torch

    from models.artifact import check_onnx_metadata, export_advice, load_generator

    model = load_model_dir(CHARACTER)
    onnx_file = CHARACTER / "generator_fp32.onnx"
    assert export_advice(model, check_onnx_metadata(onnx_file, model)) is None
    x = torch.rand(1, 3, *model.input_shape[:2]) * 2 - 1
    with torch.no_grad():
        ref = load_generator(model)(x).numpy()
    got = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"]).run(None, {"sketch": x.numpy()})[0]
    assert float(abs(got - ref).max()) < 1e-3


def test_re_exporting_a_pack_keeps_its_id_and_files(tiny_model, tmp_path):
    from training.export import pack_for_cpu, reexport_packed

    packed = pack_for_cpu(tiny_model, tmp_path / "packed", weights_fp16=True)
    before = load_model_dir(packed)
    after = load_model_dir(reexport_packed(packed, log=lambda s: None))
    assert after.model_id == before.model_id and sorted(after.meta["files"]) == sorted(before.meta["files"])
    assert not (tmp_path / "packed.tmp").exists()


def _reenact(*argv: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "reenact", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_live_without_a_model_drives_the_built_in_character(tmp_path):
    res = _reenact("live", "--source", "puppet", "--frames", "20", "--no-virtual-camera", "--record", "out.mp4", "--json", "live.json",
                   cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "built-in character" in res.stdout
    report = json.loads((tmp_path / "live.json").read_text())
    assert report["model_id"] == load_model_dir(CHARACTER).model_id
    assert report["frames_out"] >= 20


@pytest.mark.slow
def test_demo_drives_the_character_without_training(tmp_path):
    res = _reenact("demo", "--drive-seconds", "2", "--out", "demo", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "demo" / "dataset").exists()  # nothing was trained
    import cv2

    cap = cv2.VideoCapture(str(tmp_path / "demo" / "demo.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 1536
    cap.release()


@pytest.mark.slow
def test_the_character_follows_the_puppet_as_a_viewer_would_accept(tmp_path):
    """``reenact eval`` of the character driven by the driver puppet (another face, its
    own expressions and gaze). The issue's bars: a face in every frame and mouth r >=
    0.9 (held), vergence error <= 0.05 (not yet: measured 0.078 on the shipped
    character, docs/BENCHMARKS.md; the bound here only guards against it getting worse)."""
    from models.puppet import write_puppet_clip

    clip = tmp_path / "driver.mp4"
    write_puppet_clip(clip, seconds=10, seed=23, shape=DRIVER_SHAPE, size=480, gaze=1.0)
    res = _reenact("eval", "--model", str(CHARACTER), "--drivers", str(clip), "--json", "eval.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    r = json.loads((tmp_path / "eval.json").read_text())["drivers"]["driver"]
    assert r["detection_rate"] == 1.0
    assert r["mouth_r"] >= 0.9
    assert r["gaze_r"] >= 0.6  # it looks where the driver looks
    assert r["vergence_error"] <= 0.1


def test_training_flags_without_train_are_a_usage_error(tmp_path):
    res = _reenact("demo", "--steps", "3", cwd=tmp_path)
    assert res.returncode == 2 and "add --train" in res.stderr.splitlines()[-1]
