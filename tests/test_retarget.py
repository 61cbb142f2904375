"""Retargeting: the driver's expression moves the target's face, the target keeps its
own face shape. Synthetic faces (the puppet mesh) give exact truth; the real clips
check the same on Face Mesh output."""
from __future__ import annotations

import numpy as np
import pytest

from models.puppet import FaceShape, PuppetPose, place, puppet_points
from models import topology as T
from models.geometry import expression, head_pose, interocular
from models.retarget import Gains, Retargeter, estimate_neutral
from tests.conftest import DRIVER_CLIPS, TARGET_CLIP, read_landmarks

TARGET = FaceShape(1.0, 1.0)
WIDE = FaceShape(1.35, 1.0)
LONG = FaceShape(1.0, 1.3)


def face(pose=PuppetPose(), shape=TARGET, iod=100.0, centre=(320.0, 220.0)):
    return place(puppet_points(pose, shape), iod_px=iod, center=centre)


def proportions(px: np.ndarray) -> tuple[float, float]:
    """Face width and forehead-to-chin height, in IODs: the face's shape."""
    iod = interocular(px)
    return float(np.linalg.norm(px[234, :2] - px[454, :2]) / iod), float(np.linalg.norm(px[10, :2] - px[152, :2]) / iod)


@pytest.mark.parametrize("driver_shape", [TARGET, WIDE, LONG])
def test_a_neutral_driver_gives_exactly_the_target_neutral(driver_shape):
    tn = face(iod=120, centre=(300, 200))
    dn = face(shape=driver_shape, iod=80, centre=(250, 260))
    r = Retargeter(tn, dn)
    assert np.abs(r.retarget(dn) - tn).max() < 1e-3


@pytest.mark.parametrize("driver_shape", [WIDE, LONG])
@pytest.mark.parametrize("pose", [PuppetPose(jaw=0.6), PuppetPose(smile=1.0), PuppetPose(jaw=0.4, smile=0.5, yaw=15, pitch=-8)])
def test_driver_face_shape_does_not_leak_into_the_target(driver_shape, pose):
    tn = face(iod=120, centre=(300, 200))
    r = Retargeter(tn, face(shape=driver_shape, iod=80))
    out = r.retarget(face(pose, driver_shape, iod=80))
    direct = face(pose, TARGET, iod=120, centre=(300, 200))  # the target making the same face itself
    # The driver's face really is shaped differently (in IODs) ...
    assert abs(proportions(face(shape=driver_shape))[1] / proportions(face())[1] - 1) > 0.2
    # ... yet the output's width and height stay the target's.
    assert proportions(out) == pytest.approx(proportions(direct), rel=0.03)


def test_smile_moves_target_mouth_corners_out_and_up():
    tn, dn = face(iod=120), face(shape=WIDE, iod=90)
    r = Retargeter(tn, dn)
    out = r.retarget(face(PuppetPose(smile=1.0), WIDE, iod=90))
    right, left = out[T.MOUTH_RIGHT], out[T.MOUTH_LEFT]
    assert right[0] < tn[T.MOUTH_RIGHT, 0] - 5 and left[0] > tn[T.MOUTH_LEFT, 0] + 5  # outward
    assert right[1] < tn[T.MOUTH_RIGHT, 1] - 5 and left[1] < tn[T.MOUTH_LEFT, 1] - 5  # upward (y down)


@pytest.mark.parametrize("jaw", [0.2, 0.4, 0.7])
def test_mouth_opening_ratio_survives_the_transfer(jaw):
    r = Retargeter(face(iod=120), face(shape=LONG, iod=70))
    d = face(PuppetPose(jaw=jaw), LONG, iod=70)
    assert expression(r.retarget(d)).mouth_open == pytest.approx(expression(d).mouth_open, rel=0.02)


def test_blink_closes_the_target_eye_even_when_eye_sizes_differ():
    big_eyes = face(iod=120)
    driver = FaceShape(1.0, 0.7)  # squashed: relatively smaller eye opening
    r = Retargeter(big_eyes, face(shape=driver))
    out = r.retarget(face(PuppetPose(blink=1.0), driver))
    assert expression(out).eye_open < 0.15 * expression(big_eyes).eye_open


@pytest.mark.parametrize("pose", [PuppetPose(yaw=20), PuppetPose(pitch=-12), PuppetPose(roll=10, yaw=-15)])
def test_head_turn_is_applied_around_the_target_head(pose):
    tn = face(iod=120, centre=(300, 200))
    r = Retargeter(tn, face(shape=WIDE, iod=80, centre=(200, 300)))
    out = r.retarget(face(pose, WIDE, iod=80, centre=(200, 300)))
    direct = face(pose, TARGET, iod=120, centre=(300, 200))  # the target turning its own head
    assert head_pose(out, tn) == pytest.approx(head_pose(direct, tn), abs=1.0)
    # The head stays where the target's head is (the drivers' pivots differ slightly).
    assert np.abs(out - direct)[:, :2].mean() < 0.1 * 120


def test_gains_scale_each_region():
    tn, dn = face(iod=100), face(iod=100)
    d = face(PuppetPose(jaw=0.5))
    full = Retargeter(tn, dn).retarget(d)
    none = Retargeter(tn, dn, Gains(mouth=0.0, rest=0.0)).retarget(d)
    assert expression(full).mouth_open > 0.15
    assert expression(none).mouth_open < 0.01


def test_estimate_neutral_ignores_expressive_frames():
    rng = np.random.default_rng(3)
    frames = [face(PuppetPose(), iod=100) + rng.normal(0, 0.3, (478, 3)) for _ in range(30)]
    frames += [face(PuppetPose(jaw=rng.uniform(0.3, 0.7), smile=rng.uniform(0, 1))) for _ in range(70)]
    n = estimate_neutral(np.stack(frames))
    assert expression(n).mouth_open < 0.02
    assert np.abs(n - face()).mean() < 0.5


@pytest.mark.clips
def test_real_driver_onto_real_target(clips_dir):
    """d10 drives d6: the output keeps d6's proportions and follows d10's mouth."""
    target = [p for p in read_landmarks(TARGET_CLIP, every=3) if p is not None]
    driver = [p for p in read_landmarks(DRIVER_CLIPS[1], every=2) if p is not None]
    tn = estimate_neutral(np.stack(target))
    dn = estimate_neutral(np.stack(driver[:30]))  # the first second, as live does
    r = Retargeter(tn, dn)
    out = np.stack([r.retarget(d) for d in driver])
    t_w, t_h = proportions(tn)
    d_w, d_h = proportions(dn)
    o = np.array([proportions(p) for p in out])
    # The output's face shape stays the target's: closer to it than to the driver's.
    assert np.median(np.abs(o[:, 0] - t_w)) < 0.5 * abs(d_w - t_w) + 0.02
    # The mouth opens as the driver's does, relative to each one's neutral, in IODs.
    gap = lambda p: float(p[T.LOWER_LIP_INNER, 1] - p[T.UPPER_LIP_INNER, 1]) / interocular(p)  # noqa: E731
    open_d = np.array([gap(p) for p in driver]) - gap(dn)
    open_o = np.array([gap(p) for p in out]) - gap(tn)
    assert np.corrcoef(open_d, open_o)[0, 1] > 0.95
    assert np.median(np.abs(open_o - open_d)) < 0.03
