"""Property tests for the geometric building blocks: similarity fits, angles, framing."""
from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.faces import base_face
from models.framing import Framing, choose_framing, output_size
from models.geometry import fit_similarity, rotation_angles, rotation_from_angles

angles = st.tuples(st.floats(-60, 60), st.floats(-40, 40), st.floats(-45, 45))


@given(angles)
def test_rotation_angles_round_trip(a):
    got = rotation_angles(rotation_from_angles(*a))
    assert np.allclose(got, a, atol=1e-6)


@given(angles, st.floats(0.2, 5.0), st.tuples(st.floats(-500, 500), st.floats(-500, 500), st.floats(-50, 50)))
def test_fit_similarity_recovers_a_known_transform(a, scale, t):
    src = base_face().astype(np.float64)
    rot = rotation_from_angles(*a)
    dst = scale * src @ rot.T + np.array(t)
    sim = fit_similarity(src, dst)
    assert np.isclose(sim.scale, scale, rtol=1e-6)
    assert np.allclose(sim.rotation, rot, atol=1e-6)
    assert np.allclose(sim.apply(src), dst, atol=1e-4)
    assert np.allclose(sim.invert(dst), src, atol=1e-6)


@settings(max_examples=50)
@given(st.integers(64, 1920), st.integers(64, 1080), st.floats(0.5, 2.0), st.integers(32, 512), st.sampled_from([1, 16, 64, 256]),
       st.floats(-0.3, 0.3), st.floats(-0.3, 0.3), st.floats(0.1, 0.6))
def test_framing_holds_every_face_and_has_generator_friendly_size(w, h, aspect, height, multiple, dx, dy, face_frac):
    rng = np.random.default_rng(0)
    size = face_frac * min(w, h)
    faces = []
    for k in range(20):  # a head wandering around the frame
        c = np.array([w * (0.5 + dx * np.sin(k)), h * (0.5 + dy * np.cos(k)), 0])
        faces.append(base_face() / 3.0 * size + c + rng.normal(0, 0.5, (478, 3)))
    faces = np.stack(faces)
    fr = choose_framing(faces, (w, h), height=height, aspect=aspect, margin=0.1, headroom=0.0, multiple=multiple)
    ow, oh = fr.out_size
    assert ow % multiple == 0 and oh % multiple == 0
    assert abs(fr.crop[2] / fr.crop[3] - ow / oh) < 1e-9  # no distortion
    inside = np.concatenate([fr.apply(f) for f in faces])
    # robust box (0.5/99.5 percentiles over 20 frames) still holds nearly every point
    assert np.mean((inside[:, 0] >= -1) & (inside[:, 0] <= ow + 1) & (inside[:, 1] >= -1) & (inside[:, 1] <= oh + 1)) > 0.99
    assert np.allclose(fr.unapply(fr.apply(faces[0])), faces[0], atol=1e-3)


def test_crop_image_agrees_with_point_mapping():
    img = np.zeros((360, 640, 3), np.uint8)
    cv2.circle(img, (400, 150), 3, (255, 255, 255), -1)
    fr = Framing((640, 360), (250.0, 40.0, 300.0, 300.0), (128, 128))
    out = fr.crop_image(img)
    ys, xs = np.nonzero(out[:, :, 0] > 60)
    mapped = fr.apply(np.array([[400.0, 150.0, 0.0]]))[0]
    assert abs(xs.mean() - mapped[0]) < 0.75 and abs(ys.mean() - mapped[1]) < 0.75
    assert Framing.from_dict(fr.to_dict()) == fr


def test_output_size_rounds_to_multiple():
    assert output_size(256, 1.0, 256) == (256, 256)
    assert output_size(200, 1.0, 64) == (192, 192)
    assert output_size(256, 16 / 9, 32) == (448, 256)


class _Model:
    """Just what the compositor reads of a model directory."""

    def __init__(self, framing, plate: np.ndarray) -> None:
        import tempfile
        from pathlib import Path

        import cv2

        from models.artifact import Contract
        from models.sketch import SketchSpec

        self.path = Path(tempfile.mkdtemp())
        cv2.imwrite(str(self.path / "plate.png"), plate)
        self.meta = {"files": {"plate.png": {}}}
        self.contract = Contract(framing, SketchSpec(*framing.out_size), np.zeros((478, 3), np.float32))


@settings(max_examples=40, deadline=None)
@given(st.integers(160, 960), st.integers(160, 960), st.sampled_from([(320, 180), (640, 360), (1280, 720), (512, 512)]),
       st.floats(0.2, 0.9), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_a_source_point_lands_where_the_output_frame_shows_it(w, h, out_size, crop_frac, fx, fy):
    """Framing, then the generator's crop placed by the compositor, round-trips: a
    point of the target's video lands in the output frame exactly where the plate (the
    same video, letterboxed) shows it, within a pixel. Self-reenactment relies on it."""
    import cv2

    from live.pipeline import Compositor
    from models.framing import Framing

    ch = crop_frac * h
    crop = (fx * (w - ch), fy * (h - ch), ch, ch)
    framing = Framing((w, h), crop, (256, 256))
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 8)  # smooth: resamplers agree, even at 1/4 scale
    comp = Compositor(_Model(framing, frame), out_size)  # the plate is the scene itself, as in self-reenactment
    pts = np.column_stack([rng.uniform(crop[0], crop[0] + ch, 20), rng.uniform(crop[1], crop[1] + ch, 20), np.zeros(20)])
    via_plate = pts[:, :2] @ comp.source_to_output[:, :2].T + comp.source_to_output[:, 2]
    framed = framing.apply(pts)  # pixels of the generated crop
    via_crop = comp.crop_to_output(framed[:, :2])
    assert np.abs(via_crop - via_plate).max() <= 1.0  # whole-pixel placement of a whole-size resize: within a pixel
    # ... and the pictures agree too: a crop cut from the frame and composed lands on the frame.
    placed = cv2.warpAffine(frame, comp.source_to_output, out_size)
    composed = comp.compose(framing.crop_image(frame))
    sx, sy, sw, sh = comp.source_region  # compare where both the crop and the scene are (a crop may reach past the frame)
    inner = (slice(max(comp.cy0, sy) + 4, min(comp.cy1, sy + sh) - 4), slice(max(comp.cx0, sx) + 4, min(comp.cx1, sx + sw) - 4))
    assert np.abs(composed[inner].astype(int) - placed[inner]).mean() < 2.0
