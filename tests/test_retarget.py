"""Retargeting: the driver's expression moves the target's face, the target keeps its
own face shape. Synthetic faces (the puppet mesh) give exact truth; the real clips
check the same on Face Mesh output."""
from __future__ import annotations

import numpy as np
import pytest

from models.puppet import FaceShape, PuppetPose, jaw_opening, place, puppet_points
from models import topology as T
from models.geometry import expression, head_pose, interocular
from hypothesis import given, settings
from hypothesis import strategies as st

from models.geometry import viewer_signals
from models.retarget import (EYES, SKETCH_MARGIN, Coverage, Gains, GazeResponse, Retargeter, estimate_neutral, iris_position, place_iris,
                             soft_limit)
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


IRISES = np.r_[468:478]


@pytest.mark.parametrize("driver_shape", [TARGET, WIDE, LONG])
def test_a_neutral_driver_gives_exactly_the_target_neutral(driver_shape):
    """Exactly the target's neutral, but for the gaze and the mouth's opening: each iris
    sits where the driver's sits in its own eye (in eye widths), not where the target's
    neutral had it, and the lips are as far apart as the driver's (in IODs)."""
    tn = face(iod=120, centre=(300, 200))
    dn = face(shape=driver_shape, iod=80, centre=(250, 260))
    out = Retargeter(tn, dn).retarget(dn)
    jaw = np.flatnonzero(np.abs(jaw_opening()).max(axis=1) > 0)
    rest = np.setdiff1d(np.arange(478), np.r_[IRISES, jaw])
    assert np.abs(out[rest] - tn[rest]).max() < 1e-3
    # The lower face moves only as far as the two lip gaps differ (in the target's IOD).
    # The lower face moves only as far as the two faces' lip gaps differ: here by under
    # a thousandth of an IOD, so by well under a pixel (a mouth that talks opens 0.05-0.4).
    gap = lambda p: float(p[T.LOWER_LIP_INNER, 1] - p[T.UPPER_LIP_INNER, 1]) / interocular(p)  # noqa: E731 - signed
    assert np.abs(out[jaw] - tn[jaw]).max() < 0.005 * 120
    assert gap(out) == pytest.approx(gap(dn), abs=1e-3)
    for eye in EYES:
        assert iris_position(out, eye) == pytest.approx(iris_position(dn, eye), abs=0.01)  # 1 % of an eye width


def look(px: np.ndarray, right: float, left: float) -> np.ndarray:
    """The face with each iris moved to a horizontal position in its eye (eye widths)."""
    out = np.array(px, dtype=np.float64)
    for eye, x in (("right", right), ("left", left)):
        centre, ring = EYES[eye][0], EYES[eye][1]
        place_iris(out, eye, np.array([x, iris_position(out, eye)[1]]), out[ring] - out[centre])
    return out


@pytest.mark.parametrize("gaze", [-0.15, 0.0, 0.12])
def test_gaze_follows_the_driver_even_onto_a_crossed_eyed_target(gaze):
    crossed = look(face(iod=120), 0.18, -0.18)  # a target whose neutral looks cross-eyed
    dn = face(shape=WIDE, iod=80)
    out = Retargeter(crossed, dn).retarget(look(dn, gaze, gaze))
    s = viewer_signals(out[None])
    assert s["gaze"][0] == pytest.approx(gaze, abs=0.01) and abs(s["vergence"][0]) < 0.01


def test_gaze_is_kept_within_what_the_target_shows():
    cover = Coverage(gaze={"right": ((-0.1, 0.1), (-0.1, 0.1)), "left": ((-0.1, 0.1), (-0.1, 0.1))},
                     pose={k: (-1e9, 1e9) for k in ("yaw", "pitch", "roll", "tx", "ty", "scale")})
    dn = face(shape=WIDE, iod=80)
    out = Retargeter(face(iod=120), dn, coverage=cover).retarget(look(dn, 0.3, 0.3))  # far to one side
    assert viewer_signals(out[None])["gaze"][0] == pytest.approx(0.1, abs=0.01)


ANY_POSE = {k: (-1e9, 1e9) for k in ("yaw", "pitch", "roll", "tx", "ty", "scale")}


@settings(max_examples=60, deadline=None)
@given(gaze=st.floats(-0.4, 0.4), vergence=st.floats(-0.12, 0.06))
def test_the_drivers_vergence_is_kept_on_a_target_whose_eyes_ranges_are_offset(gaze, vergence):
    """A target whose clip looks slightly crossed (its right iris ranges further right
    than its left), driven by someone with their own vergence, looking anywhere: the
    output's gaze is the driver's held within the target's range, its vergence the
    driver's. Clamping each eye to its own range would cross the eyes."""
    cover = Coverage(gaze={"right": ((-0.06, 0.12), (-0.1, 0.1)), "left": ((-0.15, 0.03), (-0.1, 0.1))}, pose=ANY_POSE)
    dn = face(shape=WIDE, iod=80)
    driver = look(dn, gaze + vergence / 2, gaze - vergence / 2)
    sketch = Retargeter(face(iod=120), dn, coverage=cover).retarget(driver)
    out = viewer_signals(sketch[None])
    assert out["vergence"][0] == pytest.approx(vergence, abs=0.01)
    assert out["gaze"][0] == pytest.approx(np.clip(gaze, -0.105, 0.075), abs=0.01)
    for eye, ((lo, hi), _) in cover.gaze.items():  # never further than the generator extrapolates
        assert lo - SKETCH_MARGIN - 1e-6 <= iris_position(sketch, eye)[0] <= hi + SKETCH_MARGIN + 1e-6


@settings(max_examples=40, deadline=None)
@given(st.floats(0.6, 1.5), st.floats(-0.04, 0.04), st.floats(-0.1, 0.1), st.floats(-0.1, 0.1))
def test_with_a_gaze_response_the_drawn_iris_lands_where_the_drivers_is(gain, offset, right, left):
    """A generator that draws each iris at gain * (the sketch's position) + offset: the
    sketch asks for the position that puts the drawn iris on the driver's own."""
    response = GazeResponse({e: gain for e in EYES}, {e: offset for e in EYES})
    cover = Coverage(gaze={e: ((-0.2, 0.2), (-0.2, 0.2)) for e in EYES}, pose=ANY_POSE)
    dn = face(shape=WIDE, iod=80)
    sketch = Retargeter(face(iod=120), dn, coverage=cover, response=response).retarget(look(dn, right, left))
    for eye, wanted in (("right", right), ("left", left)):
        assert gain * iris_position(sketch, eye)[0] + offset == pytest.approx(wanted, abs=0.01)


@pytest.mark.parametrize("gain, offset", [(0.7, 0.03), (0.5, -0.05), (0.3, 0.0)])
def test_with_a_gaze_response_the_drawn_gaze_stays_in_the_targets_range(gain, offset):
    """The range clamps what the viewer sees, and the sketch goes at most SKETCH_MARGIN
    past what the generator was trained on, however weak its response."""
    response = GazeResponse({e: gain for e in EYES}, {e: offset for e in EYES})
    cover = Coverage(gaze={e: ((-0.1, 0.1), (-0.1, 0.1)) for e in EYES}, pose=ANY_POSE)
    dn = face(shape=WIDE, iod=80)
    sketch = Retargeter(face(iod=120), dn, coverage=cover, response=response).retarget(look(dn, 0.3, 0.3))  # far to one side
    for eye in EYES:
        x = iris_position(sketch, eye)[0]
        assert x <= 0.1 + SKETCH_MARGIN + 1e-6
        if (0.1 - offset) / gain <= 0.1 + SKETCH_MARGIN:  # reachable: drawn exactly at the bound
            assert gain * x + offset == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("record, named", [
    ({"right": {"gain": float("nan"), "offset": 0.0}, "left": {"gain": 1.0, "offset": 0.0}}, "right"),
    ({"right": {"gain": 1.0, "offset": 0.0}, "left": {"gain": 0.0, "offset": 0.0}}, "left"),
    ({"right": {"gain": 1.0, "offset": 0.5}, "left": {"gain": 1.0, "offset": 0.0}}, "right"),
    ({"right": {"gain": 1.0, "offset": 0.0}}, "left"),
    ({"right": "fast", "left": {"gain": 1.0, "offset": 0.0}}, "right"),
])
def test_a_bad_gaze_response_record_is_refused_naming_the_eye(record, named):
    with pytest.raises(ValueError, match=f"{named} eye"):
        GazeResponse.from_dict(record)


def test_no_gaze_response_record_means_the_sketch_is_drawn_as_asked():
    assert GazeResponse.from_dict(None).sketch_x("left", 0.07) == 0.07


@given(st.floats(-50, 50), st.floats(-30, 30), st.floats(0.0, 10), st.floats(0.1, 3))
def test_soft_limit_keeps_the_inside_and_never_goes_a_knee_past_the_bounds(x, lo, width, knee):
    hi = lo + width
    y = soft_limit(x, lo, hi, knee)
    assert lo - knee <= y <= hi + knee
    if lo <= x <= hi:
        assert y == x
    assert soft_limit(x + 0.1, lo, hi, knee) >= y - 1e-9  # monotonic: more turn never gives less


@settings(max_examples=25, deadline=None)
@given(st.floats(-40, 40))
def test_head_turn_is_kept_within_the_targets_range(yaw):
    lo, hi = -6.0, 8.0
    cover = Coverage(gaze={e: ((-0.3, 0.3), (-0.3, 0.3)) for e in EYES},
                     pose={"yaw": (lo, hi), "pitch": (-30, 30), "roll": (-30, 30), "tx": (-9, 9), "ty": (-9, 9), "scale": (-1, 1)})
    tn, dn = face(iod=120, centre=(300, 200)), face(shape=WIDE, iod=80)
    r = Retargeter(tn, dn, coverage=cover)
    out_yaw = head_pose(r.retarget(face(PuppetPose(yaw=yaw), WIDE, iod=80)), tn)[0]
    want = head_pose(face(PuppetPose(yaw=min(max(yaw, lo), hi)), TARGET, iod=120, centre=(300, 200)), tn)[0]
    assert out_yaw == pytest.approx(want, abs=2.0)  # min(driver yaw, the limit) ± 2°
    if lo + 1 < yaw < hi - 1:
        assert not r.limited
    elif not lo - 3 <= yaw <= hi + 3:
        assert "yaw" in r.limited  # reported, for the log and the overlay


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


@pytest.mark.parametrize("calibrated_jaw", [0.0, 0.15, 0.3])
def test_the_targets_lips_part_as_far_as_the_drivers_whatever_their_neutral(calibrated_jaw):
    """A driver who calibrates mid-sentence (lips apart), then closes them: the target's
    close too, not past each other; and open as far as the driver's, in IODs."""
    gap = lambda p: float(p[T.LOWER_LIP_INNER, 1] - p[T.UPPER_LIP_INNER, 1]) / interocular(p)  # noqa: E731
    r = Retargeter(face(iod=120), face(PuppetPose(jaw=calibrated_jaw), shape=WIDE, iod=80))
    for jaw in (0.0, 0.2, 0.6):
        driver = face(PuppetPose(jaw=jaw), shape=WIDE, iod=80)
        assert gap(r.retarget(driver)) == pytest.approx(gap(driver), abs=0.005)


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


def test_a_blink_while_live_calibrates_does_not_shut_the_drivers_neutral_eyes():
    """d9's first second: lips shut throughout, and a blink in nine frames whose lips
    Face Mesh reads 0.001 IOD more closed. The neutral keeps the eyes open."""
    rng = np.random.default_rng(9)
    still = [face(PuppetPose(jaw=rng.uniform(0.003, 0.008)), iod=100) for _ in range(22)]  # lips 0.001-0.003 IOD apart
    blink = [face(PuppetPose(jaw=rng.uniform(0.0, 0.002), blink=1.0), iod=100) for _ in range(9)]
    n = estimate_neutral(np.stack(still[:10] + blink + still[10:]))
    assert expression(n).eye_open == pytest.approx(expression(still[0]).eye_open, abs=0.01)


def test_a_target_open_mouthed_most_of_the_time_gets_closed_lips_where_its_clip_shows_them():
    """Like d6: the clip talks or gapes in most frames, parts the lips a little in many,
    and closes them in about one in eight. The target's neutral (as the dataset builder
    makes it) has closed lips, so a driver's closed mouth closes the target's."""
    rng = np.random.default_rng(7)
    closed = [face(PuppetPose(brow=rng.uniform(0, 0.1), smile=rng.uniform(0, 0.1)), iod=100) for _ in range(12)]
    parted = [face(PuppetPose(jaw=rng.uniform(0.1, 0.25)), iod=100) for _ in range(30)]  # 0.05-0.09 IOD apart
    talking = [face(PuppetPose(jaw=rng.uniform(0.3, 0.9), smile=rng.uniform(0, 1)), iod=100) for _ in range(58)]
    n = estimate_neutral(np.stack(closed + parted + talking), target=True)
    assert expression(n).mouth_open < 0.01


def test_a_targets_neutral_sits_at_its_clips_typical_head_pose():
    """A target that rests its closed mouth turned and tilted to one side, and talks
    facing the camera: its neutral faces the camera (the middle of the poses its
    generator learns), upright, with the mouth closed."""
    rng = np.random.default_rng(5)
    resting = [face(PuppetPose(yaw=rng.uniform(-9, -3), roll=rng.uniform(-9, -3)), iod=100) for _ in range(30)]
    talking = [face(PuppetPose(jaw=rng.uniform(0.1, 0.6), yaw=rng.uniform(-3, 3), roll=rng.uniform(-3, 3)), iod=100) for _ in range(70)]
    ref = face(iod=100)
    n = estimate_neutral(np.stack(resting + talking), target=True)
    typical = np.median([head_pose(f, ref) for f in resting + talking], axis=0)  # yaw, pitch, roll
    assert np.abs(np.array(head_pose(n, ref)) - typical).max() < 2.0
    assert np.abs(np.median([head_pose(f, ref) for f in resting], axis=0) - typical).max() > 3.0  # rest is elsewhere
    assert expression(n).mouth_open < 0.05
    # A driver's neutral is the pose they hold at rest (live calibrates on it).
    assert abs(head_pose(estimate_neutral(np.stack(resting + talking)), ref)[0]) > 3.0


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
    # The mouth opens as far as the driver's, in IODs (d10 calibrates mid-sentence).
    gap = lambda p: float(p[T.LOWER_LIP_INNER, 1] - p[T.UPPER_LIP_INNER, 1]) / interocular(p)  # noqa: E731
    open_d = np.array([gap(p) for p in driver])
    open_o = np.array([gap(p) for p in out])
    assert np.corrcoef(open_d, open_o)[0, 1] > 0.95
    assert np.median(np.abs(open_o - open_d)) < 0.03
