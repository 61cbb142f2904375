"""The sketch contract: pinned byte-for-byte by golden images, and its spec hash."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.puppet import PuppetPose, place, puppet_points
from models import topology as T
from models.sketch import COLORS, RENDERER_VERSION, SketchSpec, render_sketch
from tests.golden_cases import GOLDEN, cases

# The spec hashes are part of every model artifact: changing them orphans trained models.
PINNED_HASHES = {"neutral_256x256": "a92271faeaf04015", "talking_192x128": "8aecad66b0ff417a"}


@pytest.mark.parametrize("name", sorted(PINNED_HASHES))
def test_golden_sketch_is_byte_identical(name):
    _, spec = cases()[name]
    points = np.load(GOLDEN / f"{name}.points.npy")
    expected = cv2.imread(str(GOLDEN / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    got = render_sketch(points, spec)
    assert got.shape == expected.shape == (spec.height, spec.width, 3)
    diff = np.argwhere(np.any(got != expected, axis=2))
    assert len(diff) == 0, f"{len(diff)} pixels differ from the golden sketch, first at {diff[:3].tolist()}"


@pytest.mark.parametrize("name", sorted(PINNED_HASHES))
def test_spec_hash_is_pinned(name):
    assert cases()[name][1].hash == PINNED_HASHES[name]


def test_spec_round_trips_and_refuses_other_versions():
    spec = SketchSpec(320, 256, line_width=2.5, fill_mouth=False)
    assert SketchSpec.from_dict(spec.to_dict()) == spec
    assert SketchSpec.from_dict(spec.to_dict()).hash == spec.hash
    other = spec.to_dict() | {"version": RENDERER_VERSION + 1}
    with pytest.raises(ValueError, match="version"):
        SketchSpec.from_dict(other)
    repainted = spec.to_dict()
    repainted["colors"] = dict(repainted["colors"], nose=[1, 2, 3])
    with pytest.raises(ValueError, match="palette"):
        SketchSpec.from_dict(repainted)


def test_every_spec_field_changes_the_hash():
    base = SketchSpec(256, 256)
    variants = [SketchSpec(256, 320), SketchSpec(320, 256), SketchSpec(256, 256, line_width=3.0), SketchSpec(256, 256, fill_mouth=False)]
    assert len({base.hash, *(v.hash for v in variants)}) == 5


def _face(pose=PuppetPose(), size=256):
    s = size / 256
    return place(puppet_points(pose), iod_px=70 * s, center=(128 * s, 100 * s)).astype(np.float32)


def test_stroke_width_scales_with_resolution():
    small = render_sketch(_face(size=256), SketchSpec(256, 256))
    large = render_sketch(_face(size=512), SketchSpec(512, 512))
    ink_small = np.count_nonzero(small.any(axis=2))
    ink_large = np.count_nonzero(large.any(axis=2))
    # Twice the size with twice the stroke: about 3x the ink (the 1-px anti-aliased fringe
    # does not scale). Had the stroke stayed fixed, the ratio would be near 2.
    fixed = render_sketch(_face(size=512), SketchSpec(512, 512, line_width=1.0))
    ratio, ratio_fixed = ink_large / ink_small, np.count_nonzero(fixed.any(axis=2)) / ink_small
    assert 2.6 < ratio < 4.3 and ratio_fixed < 2.4


def test_features_have_their_own_colours():
    img = render_sketch(_face(), SketchSpec(256, 256))
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    for name in ("face_oval", "right_brow", "left_eye", "nose", "outer_lips"):
        assert tuple(COLORS[name]) in colours, f"{name} colour missing"


def test_closed_eye_shows_no_iris_and_open_mouth_is_filled():
    spec = SketchSpec(256, 256)
    iris = np.array(COLORS["right_iris"])
    fill = np.array(COLORS["mouth_fill"])
    open_eyes = render_sketch(_face(PuppetPose()), spec)
    shut = render_sketch(_face(PuppetPose(blink=1.0)), spec)
    assert np.all(open_eyes == iris, axis=2).sum() > 20
    assert np.all(shut == iris, axis=2).sum() == 0
    closed_mouth = np.all(render_sketch(_face(PuppetPose()), spec) == fill, axis=2).sum()
    open_mouth = np.all(render_sketch(_face(PuppetPose(jaw=0.7)), spec) == fill, axis=2).sum()
    assert open_mouth > 10 * max(closed_mouth, 1)


def test_rejects_wrong_shapes_and_survives_far_off_points():
    spec = SketchSpec(64, 64)
    with pytest.raises(ValueError, match="478"):
        render_sketch(np.zeros((468, 3), np.float32), spec)
    far = np.full((T.NUM_LANDMARKS, 3), 1e9, np.float32)
    assert not render_sketch(far, spec).any()
    with pytest.raises(ValueError):
        SketchSpec(4, 64)


def _irises_on_the_whole_canvas(img, points, fixed):
    """The irises as first written: layers as big as the image (the reference)."""
    import cv2

    from models import topology as T
    from models.sketch import _ONE, _SHIFT, COLORS

    h, w = img.shape[:2]
    layer, mask = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    for eye, centre, ring in (("right_eye", T.RIGHT_IRIS_CENTER, slice(469, 473)), ("left_eye", T.LEFT_IRIS_CENTER, slice(474, 478))):
        r = float(np.mean(np.linalg.norm(points[ring, :2] - points[centre, :2], axis=1)))
        cv2.circle(layer, tuple(int(v) for v in fixed[centre]), max(1, int(round(r * _ONE))), 255, -1, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(mask, [fixed[T.loop(eye)]], 255, cv2.LINE_AA, _SHIFT)
    iris = (layer.astype(np.uint16) * mask // 255).astype(np.uint8)
    np.maximum(img, (iris[..., None] * np.array(COLORS["right_iris"], np.uint16) // 255).astype(np.uint8), out=img)


@settings(max_examples=40, deadline=None)
@given(st.floats(-0.6, 1.6), st.floats(-0.6, 1.6), st.floats(20, 160), st.floats(0, 1), st.floats(-25, 25))
def test_irises_drawn_in_boxes_equal_irises_drawn_on_the_whole_canvas(cx, cy, iod, blink, yaw):
    """The fast iris drawing gives the same bytes as the whole-canvas reference, for
    faces anywhere, partly or wholly off the canvas included."""
    from models.sketch import _ONE, _draw_irises

    pts = place(puppet_points(PuppetPose(blink=blink, yaw=yaw)), iod_px=iod, center=(cx * 160, cy * 120)).astype(np.float32)
    fixed = np.round(np.clip(pts[:, :2], -4 * 160, 4 * 160) * _ONE).astype(np.int32)
    fast, ref = np.zeros((120, 160, 3), np.uint8), np.zeros((120, 160, 3), np.uint8)
    _draw_irises(fast, pts, fixed)
    _irises_on_the_whole_canvas(ref, pts, fixed)
    assert np.array_equal(fast, ref)
