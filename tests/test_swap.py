"""Replacement mode (face swap): alignment, the face mask, the losses, and a tiny
end-to-end `train --swap` run on two synthetic puppets (no real person)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import topology as T
from models.faces import base_face
from models.swap import (SwapArchitecture, SwapGuide, SwapTemplate, align, alignment, face_mask, invert_alignment,
                         make_template, transform_points)


def _face_in_image(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """The bundled face (IOD units) placed in an image by a known similarity: (478, 3) pixels."""
    face = base_face().astype(np.float64)
    c, s = math.cos(angle), math.sin(angle)
    xy = face[:, :2] @ np.array([[c, -s], [s, c]]).T * scale + np.array(shift)
    return np.column_stack([xy, face[:, 2] * scale])


similarities = st.tuples(st.floats(-math.pi / 3, math.pi / 3), st.floats(20.0, 400.0),
                         st.tuples(st.floats(-500.0, 1500.0), st.floats(-500.0, 1500.0)))


@settings(max_examples=60, deadline=None)
@given(similarities, st.sampled_from([64, 128, 256]))
def test_alignment_puts_any_placed_face_exactly_on_the_template(sim, size):
    """Whatever the face's rotation, size and position in the image, its stable points
    land on the template (the bundled face is the template's own shape: no residual)."""
    template = make_template(size)
    px = _face_in_image(*sim)
    m = alignment(px, template)
    assert np.allclose(transform_points(px[T.STABLE_POINTS], m), template.points, atol=1e-6 * size)
    # a similarity: no shear, no reflection
    a = m[:, :2]
    assert np.isclose(a[0, 0], a[1, 1]) and np.isclose(a[0, 1], -a[1, 0]) and np.linalg.det(a) > 0


@settings(max_examples=60, deadline=None)
@given(similarities)
def test_alignment_round_trip_returns_every_point(sim):
    """Image -> crop -> image gives every landmark back (the blend warps the swapped
    face back with the inverse)."""
    template = make_template(128)
    px = _face_in_image(*sim)
    m = alignment(px, template)
    back = transform_points(transform_points(px, m), invert_alignment(m))
    assert np.allclose(back, px[:, :2], atol=1e-6 * max(1.0, np.abs(px).max()))


def test_an_image_survives_align_and_warp_back_inside_the_face():
    """The pixels, not just the points: a face region aligned to the crop and warped
    back matches the original where the mask is solid (bilinear twice: a small error)."""
    import cv2

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    px = _face_in_image(0.2, 90.0, (330.0, 250.0))
    template = make_template(128)
    m = alignment(px, template)
    crop = align(img, m, 128)
    back = cv2.warpAffine(crop, invert_alignment(m), (640, 480), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(face_mask(transform_points(px, m), 128), invert_alignment(m), (640, 480)) > 0.99
    assert mask.sum() > 1000
    err = np.abs(back.astype(int) - img.astype(int))[mask]
    assert err.mean() < 2.5


def test_face_mask_covers_the_face_and_feathers_its_edge():
    template = make_template(128)
    px = transform_points(_face_in_image(0.0, 50.0, (0.0, 0.0)), alignment(_face_in_image(0.0, 50.0, (0.0, 0.0)), template))
    mask = face_mask(px, 128)
    assert mask.shape == (128, 128) and mask.dtype == np.float32 and 0 <= mask.min() and mask.max() <= 1
    nose = np.round(px[T.NOSE_TIP, :2]).astype(int)
    assert mask[nose[1], nose[0]] > 0.99  # the face's middle is swapped whole
    assert mask[0, 0] == 0 and mask[-1, -1] == 0 and mask[0, -1] == 0  # the corners (background) are not
    assert ((mask > 0.05) & (mask < 0.95)).sum() > 100  # a soft edge, not a hard cut


def test_a_template_record_round_trips_and_bad_ones_are_named():
    t = make_template(128)
    assert SwapTemplate.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    assert SwapTemplate.from_dict(t.to_dict()).hash == t.hash
    assert make_template(64).hash != t.hash
    for bad, says in ((None, "not an object"), ({"size": 128}, "malformed"), ({**t.to_dict(), "size": 9999}, "out of range"),
                      ({**t.to_dict(), "points": [[0, 0]]}, "out of range"), ({**t.to_dict(), "points": [["x", 1]] * 16}, "malformed")):
        with pytest.raises(ValueError, match=says):
            SwapTemplate.from_dict(bad)
    with pytest.raises(ValueError, match="multiple of 16"):
        SwapArchitecture(128, 100, 256).check()


def test_the_network_maps_an_aligned_face_to_a_face_and_a_mask():
    import torch

    from models.swapnet import SwapAutoencoder, SwapGenerator

    for size in (64, 128):
        net = SwapAutoencoder(SwapArchitecture(size, 32, 64)).eval()
        x = torch.rand(2, 3, size, size) * 2 - 1
        out = SwapGenerator(net)(x)
        assert out.shape == (2, 4, size, size)
        assert out.abs().max() <= 1
        # the run-time path is the encoder and the *target's* decoder, not the user's;
        # the mask rides on the face's [-1, 1] scale
        face, mask = net(x, "target")
        assert 0 <= mask.min() and mask.max() <= 1
        assert torch.allclose(out, torch.cat([face, mask * 2 - 1], 1))
        assert not torch.equal(net(x, "user")[0], face)


def test_a_guided_network_draws_from_both_the_face_and_its_sketch():
    """The exported input is the face and its sketch side by side; each half changes
    the output (the decoder uses the sketch, and the face still carries the rest)."""
    import torch

    from models.swapnet import SwapAutoencoder, SwapGenerator

    torch.manual_seed(0)
    arch = SwapArchitecture(64, 32, 32, guide=True)
    net = SwapAutoencoder(arch).eval()
    g = SwapGenerator(net)
    x = torch.rand(1, 3, *arch.input_shape[:2]) * 2 - 1
    assert arch.input_shape == (64, 128, 3)
    with torch.no_grad():
        out = g(x)
        assert out.shape == (1, 4, 64, 64)
        assert torch.allclose(out[:, :3], net(x[..., :64], "target", x[..., 64:])[0])
        other_sketch, other_face = x.clone(), x.clone()
        other_sketch[..., 64:] = -1  # a blank sketch
        other_face[..., :64] = torch.flip(x[..., :64], dims=[3])
        assert (g(other_sketch) - out).abs().mean() > 1e-4 and (g(other_face) - out).abs().mean() > 1e-4
    with pytest.raises(ValueError, match="needs the sketch"):
        net(x[..., :64], "target")
    with pytest.raises(ValueError, match="takes none"):
        SwapAutoencoder(SwapArchitecture(64, 32, 32))(x[..., :64], "target", x[..., 64:])


def test_a_guide_record_round_trips_and_bad_ones_are_named():
    offset = np.random.default_rng(0).normal(0, 2, (T.NUM_LANDMARKS, 2))
    g = SwapGuide(128, offset)
    back = SwapGuide.from_dict(json.loads(json.dumps(g.to_dict())), 128)
    assert np.allclose(back.offset, offset, atol=1e-3)
    for bad, says in ((None, "exactly"), ({"sketch": g.to_dict()["sketch"]}, "exactly"),
                      ({**g.to_dict(), "offset": [[0, 0]]}, "out of range"), ({**g.to_dict(), "offset": [[float("nan"), 0]] * 478}, "out of range"),
                      ({**g.to_dict(), "offset": "x"}, "out of range|malformed")):
        with pytest.raises(ValueError, match=says):
            SwapGuide.from_dict(bad, 128)
    with pytest.raises(ValueError, match="crop 64x64"):
        SwapGuide.from_dict(g.to_dict(), 64)
    # a model trained before guides existed records no "guide": it loads as unguided
    assert SwapArchitecture.from_dict({"size": 128, "width": 64, "latent": 64}) == SwapArchitecture(128, 64, 64, guide=False)
    with pytest.raises(ValueError, match="true or false"):
        SwapArchitecture.from_dict({"size": 128, "width": 64, "latent": 64, "guide": "yes"})


@settings(max_examples=20, deadline=None)
@given(st.integers(-6, 6), st.integers(-6, 6))
def test_the_guide_sketch_is_the_users_face_moved_by_the_offset(dx, dy):
    """Moving every landmark by a whole-pixel offset moves the drawn sketch by exactly
    that much: the sketch has the target's placement, drawn as the user's face is."""
    template = make_template(64)
    px = _face_in_image(0.0, 30.0, (200.0, 200.0))
    in_crop = transform_points(px, alignment(px, template))
    plain = SwapGuide(64, np.zeros((T.NUM_LANDMARKS, 2))).draw(in_crop)
    moved = SwapGuide(64, np.tile([float(dx), float(dy)], (T.NUM_LANDMARKS, 1))).draw(in_crop)
    assert plain.any()
    shifted = np.roll(plain, (dy, dx), axis=(0, 1))
    inner = (slice(8, -8), slice(8, -8))  # away from where roll wraps around
    assert np.array_equal(moved[inner], shifted[inner])


def test_live_feeds_a_guided_model_the_crop_and_the_moved_sketch(tmp_path):
    """The network's input: the aligned crop of the user's frame on the left, the sketch
    of the user's landmarks moved by the guide's offset on the right."""
    from live.sources import Frame

    offset = np.tile([3.0, -2.0], (T.NUM_LANDMARKS, 1))
    guide = SwapGuide(64, offset)
    pipe, _, px = _swap_pipeline(tmp_path, guide=guide)
    image = _textured(4)
    pipe.process(Frame(image, 0.0, 0, 0.0))
    x = pipe.engine.last_input
    m = alignment(px, make_template(64))
    assert x.shape == (64, 128, 3)
    assert np.array_equal(x[:, :64], align(image, m, 64))
    in_crop = transform_points(px, m)
    assert np.array_equal(x[:, 64:], guide.draw(in_crop))
    assert not np.array_equal(x[:, 64:], guide.draw(in_crop, moved=False))


def test_losses_are_zero_only_for_a_perfect_face_and_ignore_the_background():
    import torch

    from models.config import SwapConfig
    from training.swap import masked_psnr, swap_losses

    cfg = SwapConfig()
    real = torch.rand(2, 3, 64, 64) * 2 - 1
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:48, 16:48] = 1
    weight = torch.ones_like(mask)
    perfect = swap_losses(real.clone(), mask.clone(), real, mask, weight, cfg)
    assert float(perfect["total"]) < 1e-4
    background_only = real.clone()
    background_only[:, :, :8] = -1  # wrong outside the mask only
    assert float(swap_losses(background_only, mask, real, mask, weight, cfg)["l1"]) == 0.0
    wrong_face = real.clone()
    wrong_face[:, :, 20:40, 20:40] = 0
    hurt = swap_losses(wrong_face, mask, real, mask, weight, cfg)
    assert float(hurt["l1"]) > 0.01 and float(hurt["dssim"]) > 0.001
    a = np.full((8, 8, 3), 100, np.uint8)
    b = a.copy()
    b[:2] = 0  # differs only outside the mask
    m = np.zeros((8, 8), np.float32)
    m[4:] = 1
    assert masked_psnr(b, a, m) > 90
    b[6, 6] = 110
    assert 30 < masked_psnr(b, a, m) < 60


# ---------------------------------------------------------------- end to end, tiny

@pytest.fixture(scope="module")
def user_puppet_dataset(tmp_path_factory):
    """A second synthetic person (the driver puppet's face shape): the 'user'."""
    from live.sources import DRIVER_SHAPE, PuppetSource
    from models.config import DatasetConfig, LandmarksConfig, ModelConfig, SketchConfig
    from models.video import write_video
    from training.dataset import SYNTHETIC_CONSENT, build_dataset

    root = tmp_path_factory.mktemp("user_puppet")
    clip = root / "user.mp4"
    write_video(clip, (f.image for f in PuppetSource(seed=5, shape=DRIVER_SHAPE, size=(192, 192), frames=90)), 30.0)
    build_dataset([clip], root / "ds", consent=SYNTHETIC_CONSENT, dataset=DatasetConfig(val_block_seconds=0.5, val_fraction=0.2),
                  landmarks=LandmarksConfig(), sketch=SketchConfig(), model=ModelConfig(size=64, depth=6), progress=False, log=lambda s: None)
    return root / "ds"


TINY = ["--set", "swap.size=64", "--set", "swap.width=32", "--set", "swap.latent=32", "--set", "swap.batch_size=2",
        "--set", "train.val_frames=2", "--set", "train.preview_every=2", "--set", "train.val_every=1000", "--quiet"]


def test_train_swap_end_to_end_resumes_exports_and_is_refused_by_live(puppet_dataset, user_puppet_dataset, tmp_path):
    from models.artifact import ArtifactError, load_model_dir, load_swap_model
    from reenact.cli import main

    out = tmp_path / "swap"
    assert main(["train", "--swap", str(puppet_dataset), "--user", str(user_puppet_dataset), "--out", str(out),
                 "--set", "train.steps=3", *TINY]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["kind"] == "swap" and meta["provenance"]["steps"] == 3 and meta["provenance"]["complete"]
    assert set(meta["metrics"]) == {"psnr_target", "psnr_user"} and all(math.isfinite(v) for v in meta["metrics"].values())
    assert meta["provenance"]["target"]["consent"]["attested"] and meta["provenance"]["user"]["consent"]["attested"]
    assert (out / "previews" / "step_0000002.png").is_file()
    model = load_swap_model(out)
    assert model.template == make_template(64) and model.network == SwapArchitecture(64, 32, 32, guide=True)
    card = (out / "model_card.md").read_text()
    assert model.model_id in card and "synthetic puppet" in card
    # --resume continues the same run: the step count goes on, the weights change
    before = (out / "generator.pt").read_bytes()
    assert main(["train", "--swap", str(puppet_dataset), "--user", str(user_puppet_dataset), "--out", str(out), "--resume",
                 "--set", "train.steps=5", *TINY]) == 0
    assert json.loads((out / "model.json").read_text())["provenance"]["steps"] == 5
    assert (out / "generator.pt").read_bytes() != before
    # export: both ONNX files, each matching PyTorch, recorded in model.json
    assert main(["export", str(out)]) == 0
    parity = json.loads((out / "model.json").read_text())["export"]["parity"]
    assert parity["fp32"]["max_abs_err"] <= 1e-3 and parity["fp16"]["max_abs_err"] <= 0.1
    load_swap_model(out)  # every listed file verifies
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "generator_fp32.onnx"), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"face": np.zeros((1, 3, 64, 128), np.float32)})[0]  # guided: the face and its sketch side by side
    assert y.shape == (1, 4, 64, 64)
    # the guide moves the user's landmarks onto the target's face shape: the two puppets differ
    assert model.guide is not None and 0.5 < np.abs(model.guide.offset).max() < 16
    # a re-enactment loader refuses it by name, not with a KeyError
    with pytest.raises(ArtifactError, match="replacement"):
        load_model_dir(out)


def test_the_options_self_attention_and_gan_train_resume_and_export(puppet_dataset, user_puppet_dataset, tmp_path):
    """The issue's options: self-attention in the decoders (recorded in the network's
    record, so live builds the same network) and the PatchGAN loss (its discriminators
    ride in the checkpoint, so --resume continues them)."""
    import torch

    from models.artifact import load_generator, load_swap_model
    from reenact.cli import main
    from training.train import load_checkpoint

    out = tmp_path / "swap_opts"
    opts = ["--set", "swap.attention=true", "--set", "swap.lambda_gan=1.0", *TINY]
    args = ["train", "--swap", str(puppet_dataset), "--user", str(user_puppet_dataset), "--out", str(out)]
    assert main([*args, "--set", "train.steps=2", *opts]) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt", keys=("disc", "opt_d"))
    assert set(ckpt["disc"]) and ckpt["swap"]["lambda_gan"] == 1.0
    disc_before = {k: v.clone() for k, v in ckpt["disc"].items()}
    assert main([*args, "--resume", "--set", "train.steps=3", *opts]) == 0
    disc_after = load_checkpoint(out / "checkpoint.pt", keys=("disc",))["disc"]
    assert any(not torch.equal(disc_before[k], disc_after[k]) for k in disc_before)  # trained on, not restarted
    model = load_swap_model(out)
    assert model.network.attention and model.meta["generator"]["attention"] is True
    g = load_generator(model)
    assert any(name.startswith("decoder.attention.") for name, _ in g.named_parameters())
    assert main(["export", str(out)]) == 0
    assert json.loads((out / "model.json").read_text())["export"]["parity"]["fp32"]["max_abs_err"] <= 1e-3


def test_self_attention_starts_as_the_identity_and_then_mixes_positions():
    import torch

    from models.swapnet import SelfAttention

    torch.manual_seed(0)
    block = SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(1.0)
        y = block(x)
        x2 = x.clone()
        x2[:, :, 0, 0] += 5.0  # one position changes ...
        changed = (block(x2) - y).abs().sum(1)
    assert changed[:, 7, 7].min() > 0  # ... and a far one hears of it


def test_train_swap_usage_errors_are_one_line_with_exit_2(puppet_dataset, tmp_path, capsys):
    from reenact.cli import main

    ds = str(puppet_dataset)
    cases = [(["train", "--swap", ds, "--out", str(tmp_path / "a")], "--user"),
             (["train", "--user", ds, "--out", str(tmp_path / "b")], "--swap"),
             (["train", ds, "--swap", ds, "--user", ds, "--out", str(tmp_path / "c")], "goes after --swap"),
             (["train", "--swap", ds, "--user", ds, "--out", str(tmp_path / "d"), "--preset", "cpu"], "[swap]"),
             (["train", "--swap", ds, "--user", ds, "--out", str(tmp_path / "e"), "--teacher", ds], "--teacher"),
             (["train", "--swap", ds, "--user", str(tmp_path / "none"), "--out", str(tmp_path / "f")], "none")]
    for argv, says in cases:
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code in (1, 2) and says in err and len(err.splitlines()) == 1, (argv, code, err)
    assert not any((tmp_path / n).exists() for n in "abcde")


# ---------------------------------------------------------------- live: the swap pipeline

class _FaceOnCue:
    """A detector that finds the bundled face at a fixed place while ``present``."""

    def __init__(self, px: np.ndarray, size: tuple[int, int]) -> None:
        self.px, self.size, self.present = px, size, True

    def detect(self, image):
        from models.landmarks import Landmarks

        return Landmarks.from_pixels(self.px.astype(np.float32), self.size) if self.present else None

    def reset(self) -> None:
        pass


class _GreenFace:
    """An engine that draws a flat green face with a full mask: easy to see where it
    lands. It keeps the last input it was given."""

    name, precision = "fake", "fp32"

    def __init__(self, size: int, *, guided: bool = False) -> None:
        self.shape = (size, 2 * size if guided else size, 3)
        self.last_input = None

    def warmup(self) -> None:
        pass

    def infer(self, face: np.ndarray) -> np.ndarray:
        self.last_input = face.copy()
        out = np.zeros((self.shape[0], self.shape[0], 4), np.uint8)
        out[..., 1], out[..., 3] = 200, 255
        return out

    def close(self) -> None:
        pass


def _swap_pipeline(tmp_path, hold_s=0.5, guide=None):
    from live.replace import SwapPipeline
    from models.artifact import SwapModelDir
    from models.config import LandmarksConfig

    template = make_template(64)
    model = SwapModelDir(tmp_path, {}, template, SwapArchitecture(64, 32, 32, guide=guide is not None), guide)
    px = _face_in_image(0.1, 60.0, (320.0, 240.0))
    detector = _FaceOnCue(px, (640, 480))
    pipe = SwapPipeline(model, _GreenFace(64, guided=guide is not None), detector, landmarks=LandmarksConfig(smoothing=False),
                        out_size=(640, 480), clock=lambda: 0.0, hold_s=hold_s)
    return pipe, detector, px


def _textured(seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 2)


def test_swap_changes_the_face_and_nothing_outside_its_mask(tmp_path):
    from live.sources import Frame

    pipe, _, px = _swap_pipeline(tmp_path)
    image = _textured()
    out = pipe.process(Frame(image, 0.0, 0, 0.0)).image
    changed = np.any(out != image, axis=2)
    # inside the face: the generated face (colour matched to the user's skin, so not green itself)
    nose = np.round(px[T.NOSE_TIP, :2]).astype(int)
    assert changed[nose[1], nose[0]]
    # the face oval's hull, grown a little, holds every changed pixel; everything else is the input, bit for bit
    import cv2

    hull = np.zeros((480, 640), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(px[T.loop("face_oval"), :2]).astype(np.int32)), 1)
    hull = cv2.dilate(hull, np.ones((5, 5), np.uint8)).astype(bool)
    assert changed.sum() > 2000 and not (changed & ~hull).any()


def test_a_lost_face_is_held_then_covered_and_never_shown(tmp_path):
    from live.sources import Frame

    pipe, detector, px = _swap_pipeline(tmp_path, hold_s=0.5)
    image = _textured(1)
    detector.present = False
    first = pipe.process(Frame(image, 0.0, 0, 0.0))
    assert not first.face and not first.generated
    assert np.mean(np.any(first.image != image, axis=2)) > 0.5  # before any swap: the whole frame is covered
    detector.present = True
    swapped = pipe.process(Frame(image, 0.1, 1, 0.1)).image.copy()
    detector.present = False
    held = pipe.process(Frame(_textured(2), 0.3, 2, 0.3)).image  # within hold_s: the last swapped frame, not the new one
    assert np.array_equal(held, swapped)
    later = _textured(3)
    covered = pipe.process(Frame(later, 1.0, 3, 1.0)).image  # after hold_s: the new frame, its face region covered
    nose = np.round(px[T.NOSE_TIP, :2]).astype(int)
    face = (slice(nose[1] - 20, nose[1] + 20), slice(nose[0] - 20, nose[0] + 20))
    assert not np.array_equal(covered[face], later[face])
    assert np.array_equal(covered[:40, :40], later[:40, :40])  # the scene itself goes on live
    # the cover hides detail: the face region is blocky, far smoother than the texture under it
    assert np.abs(np.diff(covered[face].astype(int), axis=1)).mean() < 0.5 * np.abs(np.diff(later[face].astype(int), axis=1)).mean()


def test_match_colour_moves_the_face_to_the_users_lighting():
    from live.replace import match_colour

    rng = np.random.default_rng(0)
    face = np.clip(rng.normal(100, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
    user = np.clip(rng.normal(170, 10, (64, 64, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[8:56, 8:56] = 1
    out = match_colour(face, user, mask)
    assert abs(out[8:56, 8:56].mean() - user[8:56, 8:56].mean()) < 4 < abs(face.mean() - user.mean())


@pytest.fixture(scope="module")
def tiny_swap_model(puppet_dataset, user_puppet_dataset, tmp_path_factory):
    """A barely trained 64 px swap model of two puppets, exported: enough to run live."""
    from models.config import SwapConfig, TrainConfig
    from training.export import export
    from training.swap import train_swap

    out = tmp_path_factory.mktemp("tiny_swap") / "m"
    train_swap(puppet_dataset, user_puppet_dataset, out, cfg=TrainConfig(steps=2, val_frames=2, preview_every=1000, val_every=1000),
               swap=SwapConfig(size=64, width=32, latent=32, batch_size=2), progress=False, log=lambda s: None)
    export(out, log=lambda s: None)
    return out


def test_live_runs_a_swap_model_and_its_recording_carries_the_model_id(tiny_swap_model, tmp_path):
    """The real chain: Face Mesh, ONNX Runtime, the swap pipeline, watermark, recorder;
    the recording's watermark names the swap model."""
    from live.session import LiveSettings, RunOptions, run_session
    from live.sinks import NullSink, RecorderSink
    from live.sources import DRIVER_SHAPE, PuppetSource
    from live.trust import read_video
    from models.artifact import load_swap_model
    from models.config import load_config

    cfg = load_config(None, ["live.engine=ort-cpu"])
    src = PuppetSource(seed=2, shape=DRIVER_SHAPE, size=(320, 240), frames=45, realtime=False)
    rec = tmp_path / "out.mp4"
    lines = []
    report = run_session(tiny_swap_model, src, [NullSink(), RecorderSink(rec, size=(1280, 720), fps=30)], LiveSettings.of(cfg),
                         RunOptions(threaded=False, json_path=tmp_path / "r.json"), log=lines.append)
    assert report["model_kind"] == "swap" and report["engine"] == "ort-cpu"
    assert report["frames_out"] == 45 and report["frames_no_face"] <= 2
    assert {"landmarks", "align", "inference", "compose"} <= set(report["stages_ms"])
    assert any("replacement" in line for line in lines)
    whole, _ = read_video(str(rec))
    assert whole.present and whole.model_id == load_swap_model(tiny_swap_model).model_id


def test_eval_of_a_swap_model_measures_reconstruction_and_transfer_on_the_users_held_out_blocks(tiny_swap_model, tmp_path, capsys):
    from reenact.cli import main

    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_swap_model), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["kind"] == "swap" and math.isfinite(report["reconstruction"]["psnr_target"])
    blocks = [k for k in report["drivers"] if k.startswith("user_val_")]
    assert blocks, report["drivers"]
    for k in blocks:
        r = report["drivers"][k]
        assert "error" in r or ({"mouth_r", "eyes_r", "detection_rate"} <= set(r) and r["shape_target"] is None)
    assert "inside the face mask" in capsys.readouterr().out


def test_a_budgeted_swap_run_ends_complete_and_exported(puppet_dataset, user_puppet_dataset, tmp_path):
    """--minutes: the run stops on its budget, validates, and is exported, ready for live."""
    from models.artifact import load_swap_model
    from reenact.cli import main

    out = tmp_path / "swap"
    assert main(["train", "--swap", str(puppet_dataset), "--user", str(user_puppet_dataset), "--out", str(out),
                 "--minutes", "0.03", *TINY]) == 0
    model = load_swap_model(out)
    assert model.meta["provenance"]["complete"] and model.meta["provenance"]["steps"] >= 1
    assert {"generator_fp32.onnx", "generator_fp16.onnx"} <= set(model.meta["files"])


def test_an_interrupted_swap_run_saves_and_resumes(puppet_dataset, user_puppet_dataset, tmp_path):
    """Ctrl-C / SIGTERM mid-run: a checkpoint is saved, the model says it is incomplete,
    exit 130; --resume then finishes it."""
    import signal
    import subprocess
    import sys
    import time

    from models.artifact import load_swap_model
    from reenact.cli import main

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "swap"
    cmd = [sys.executable, "-m", "reenact", "train", "--swap", str(puppet_dataset), "--user", str(user_puppet_dataset),
           "--out", str(out), "--set", "train.steps=100000", *TINY]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not list(out.glob("previews/*.png")):  # some steps in (a preview every 2)
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "checkpoint saved" in stdout
    meta = load_swap_model(out).meta
    step = meta["provenance"]["steps"]
    assert step >= 2 and not meta["provenance"]["complete"]
    assert main(["train", "--swap", str(puppet_dataset), "--user", str(user_puppet_dataset), "--out", str(out), "--resume",
                 "--set", f"train.steps={step + 2}", *TINY]) == 0
    meta = load_swap_model(out).meta
    assert meta["provenance"]["steps"] == step + 2 and meta["provenance"]["complete"]


def test_doctor_says_a_swap_model_is_one_and_times_it(tiny_swap_model):
    from live.commands import model_fit
    from models.config import load_config

    text = model_fit(str(tiny_swap_model), load_config(None, ["live.engine=ort-cpu"]), gpu=False)
    assert "a replacement (face swap) model" in text and "main" in text and "ms" in text
