"""Face Mesh adapter and the synthetic puppet: the puppet is detected as a face, and
its expression controls read back through Face Mesh."""
from __future__ import annotations

import numpy as np
import pytest

from models.puppet import PuppetPose, place, puppet_points, render_puppet
from live.sources import DRIVER_SHAPE, TARGET_SHAPE, PuppetSource
from models import topology as T
from models.geometry import expression, interocular
from hypothesis import assume, given, settings, strategies as st

from models.landmarks import FaceCropTracker, FaceMeshDetector, Landmarks, LandmarkDetector, landmark_array


@pytest.fixture(scope="module")
def still():
    with FaceMeshDetector(tracking=False) as det:
        yield det


def shot(pose, shape=TARGET_SHAPE, size=384):
    iod = 0.27 * size
    pts = place(puppet_points(pose, shape), iod_px=iod, center=(size / 2, size / 2 - 0.5 * iod))
    return pts, render_puppet(pts, (size, size), shape)


def test_detector_contract(still):
    assert isinstance(still, LandmarkDetector)
    assert still.detect(np.zeros((240, 320, 3), np.uint8)) is None
    with pytest.raises(ValueError, match="BGR uint8"):
        still.detect(np.zeros((240, 320), np.uint8))
    pts, img = shot(PuppetPose())
    lm = still.detect(img)
    assert isinstance(lm, Landmarks) and lm.points.shape == (478, 3) and lm.points.dtype == np.float32
    assert lm.image_size == (384, 384) and lm.confidence == 1.0
    # Face Mesh's own output has the layout the one-go read expects
    import cv2

    result = still._mesh.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    assert np.array_equal(landmark_array(_BytesOnly(result.multi_face_landmarks[0])), lm.points)


_coord = st.floats(allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(points=st.lists(st.tuples(_coord, _coord, _coord), min_size=1, max_size=40),
       extra=st.sampled_from(["none", "visibility", "unset"]))
def test_landmark_array_reads_every_point_as_face_mesh_wrote_it(points, extra):
    """The one-go read of Face Mesh's landmark list gives what reading it field by
    field gives, whatever the values (0, negatives, extremes), and lists of another
    layout (visibility set, a field never set) still read right."""
    from mediapipe.framework.formats import landmark_pb2

    msg = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in points:
        msg.landmark.add(x=x, y=y, z=z)
    if extra == "visibility":
        msg.landmark[len(points) // 2].visibility = 0.5
    elif extra == "unset":
        msg.landmark[0].ClearField("y")
    want = np.array([(p.x, p.y, p.z) for p in msg.landmark], np.float32)
    got = landmark_array(msg)
    assert got.dtype == np.float32 and got.shape == (len(points), 3)
    assert np.array_equal(got, want)
    if extra == "none":  # the plain layout is read from the bytes alone, never field by field
        assert np.array_equal(landmark_array(_BytesOnly(msg)), want)


class _BytesOnly:
    """A landmark list whose points cannot be read one by one: only the one-go read works."""

    def __init__(self, msg):
        self.landmark, self._raw = [None] * len(msg.landmark), msg.SerializeToString()

    def SerializeToString(self):
        return self._raw


@pytest.mark.parametrize("shape", [TARGET_SHAPE, DRIVER_SHAPE])
def test_puppet_is_found_where_it_was_drawn(still, shape):
    pts, img = shot(PuppetPose(yaw=10, pitch=-5), shape)
    lm = still.detect(img)
    assert lm is not None
    err = np.linalg.norm(lm.pixels()[:468, :2] - pts[:468, :2], axis=1).mean() / interocular(pts)
    assert err < 0.08, f"mean landmark error {err:.3f} IOD"


def test_puppet_controls_read_back_through_face_mesh(still):
    def read(pose):
        lm = still.detect(shot(pose)[1])
        assert lm is not None, pose
        return expression(lm.pixels())

    rest = read(PuppetPose())
    assert read(PuppetPose(jaw=0.5)).mouth_open > rest.mouth_open + 0.15
    assert read(PuppetPose(smile=1.0)).mouth_width > rest.mouth_width + 0.15
    assert read(PuppetPose(blink=1.0)).eye_open < 0.5 * rest.eye_open
    truth, img = shot(PuppetPose(yaw=25))
    lm = still.detect(img).pixels()

    def nose_offset(p):  # nose tip relative to the midpoint of the inner eye corners, in IODs
        return (p[T.NOSE_TIP, 0] - (p[T.RIGHT_EYE_INNER, 0] + p[T.LEFT_EYE_INNER, 0]) / 2) / interocular(p)

    assert abs(nose_offset(truth)) > 0.1
    assert nose_offset(lm) == pytest.approx(nose_offset(truth), abs=0.1)


def test_puppet_source_is_deterministic_and_rests_first():
    a = PuppetSource(seed=3, size=(128, 128), frames=5)
    b = PuppetSource(seed=3, size=(128, 128), frames=5)
    fa, fb = list(a), list(b)
    assert len(fa) == 5 and [f.index for f in fa] == list(range(5))
    assert all(np.array_equal(x.image, y.image) for x, y in zip(fa, fb))
    assert all(x.t_capture <= y.t_capture for x, y in zip(fa, fa[1:]))
    assert a.pose(0) == PuppetPose() and a.pose(29) == PuppetPose()  # first second at rest
    poses = [a.pose(i) for i in range(30, 600)]
    assert max(p.jaw for p in poses) > 0.4 and max(p.blink for p in poses) > 0.9 and max(abs(p.yaw) for p in poses) > 10
    assert PuppetSource(seed=4).pose(200) != a.pose(200)


def test_tracking_mode_follows_a_video(tmp_path):
    src = PuppetSource(seed=2, size=(256, 256), frames=45)
    errs = []
    with FaceMeshDetector(tracking=True) as det:
        for f in src:
            lm = det.detect(f.image)
            assert lm is not None, f"lost the face at frame {f.index}"
            truth = src.points(f.index)
            errs.append(np.linalg.norm(lm.pixels()[:468, :2] - truth[:468, :2], axis=1).mean() / interocular(truth))
    assert np.median(errs) < 0.08


def webcam_frame(centre, iod=90.0, pose=PuppetPose(), size=(1280, 720)):
    """The puppet placed in a webcam-sized frame: (its points, the image)."""
    pts = place(puppet_points(pose, TARGET_SHAPE), iod_px=iod, center=centre)
    return pts, render_puppet(pts, size, TARGET_SHAPE)


def test_the_crop_tracker_is_as_accurate_as_the_whole_frame_as_the_face_crosses_a_webcam_frame():
    """A face walking fast across a 1280x720 frame and growing: the crop tracker follows
    it (moving its window), as close to the drawn points as Face Mesh on the whole frame."""
    path = [((300 + 22 * i, 330 + 2 * i), 80 + 1.5 * i) for i in range(30)]
    errors = {"crop": [], "whole": []}
    with FaceCropTracker() as crop, FaceMeshDetector(tracking=True) as whole:
        assert isinstance(crop, LandmarkDetector)
        for centre, iod in path:
            truth, image = webcam_frame(centre, iod)
            for name, detector in (("crop", crop), ("whole", whole)):
                found = detector.detect(image)
                assert found is not None and found.image_size == (1280, 720)
                errors[name].append(np.linalg.norm(found.pixels()[:468, :2] - truth[:468, :2], axis=1).mean() / interocular(truth))
        assert crop.moves >= 3  # 640 px across: the window had to follow
    assert np.median(errors["crop"]) <= np.median(errors["whole"]) + 0.005, errors
    assert max(errors["crop"]) < 0.08, errors  # the frame after a window move included


class _NoFace:
    def detect(self, image):
        return None

    def reset(self):
        pass

    def close(self):
        pass


class _DotFinder(_NoFace):
    """A detector that puts every landmark at the centre of the bright dot in its image."""

    def detect(self, image):
        img = image[:, :, 0].astype(np.float64)
        img[img < 20] = 0  # the dot's core only: no edge or rounding noise
        v, u = np.mgrid[0 : img.shape[0], 0 : img.shape[1]] + 0.5  # pixel centres, continuous coordinates
        centre = np.array([(img * u).sum(), (img * v).sum(), 0.0]) / img.sum()
        return Landmarks.from_pixels(np.repeat(centre[None], 478, axis=0), (img.shape[1], img.shape[0]))


@settings(max_examples=40, deadline=None)
@given(dx=st.floats(-0.3, 0.3), dy=st.floats(-0.3, 0.3), size=st.integers(60, 300),
       x0=st.integers(-150, 450), y0=st.integers(-150, 250))
def test_the_crop_tracker_maps_a_point_in_its_window_back_where_it_is_in_the_frame(dx, dy, size, x0, y0):
    """Whether the window lies inside the frame or over its edge (the edge replicated),
    a point the tracker's detector finds in the crop comes back where it is in the
    frame. A soft dot is drawn at a sub-pixel spot; the detector double finds its
    centre in the crop it is given."""
    w, h = 480, 320
    cx, cy = x0 + size * (0.5 + dx), y0 + size * (0.5 + dy)  # the dot's centre, continuous frame coordinates
    sigma = max(2.0, size / 40)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5  # pixel centres
    frame = (200 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))).astype(np.float32)
    # only a dot drawn whole, in the frame and in the window, has its centre where it was drawn
    assume(4 * sigma < cx < w - 4 * sigma and 4 * sigma < cy < h - 4 * sigma)
    assume(max(abs(dx), abs(dy)) * size + 4 * sigma < size / 2)
    image = np.repeat(np.clip(frame, 0, 255).round().astype(np.uint8)[:, :, None], 3, axis=2)
    tracker = FaceCropTracker(finder=_NoFace(), tracker=_DotFinder(), whole=_NoFace())
    tracker.window = (x0, y0, size)  # as if a face had been found there
    found = tracker.detect(image)
    assert found is not None and found.image_size == (w, h)
    got = found.pixels()[0, :2]
    tol = 0.1 * max(1.0, size / 256)  # a tenth of a crop pixel, in frame pixels
    assert abs(got[0] - cx) < tol and abs(got[1] - cy) < tol, (got, (cx, cy))


def test_a_crop_tracker_window_that_misses_the_frame_is_no_crop():
    tracker = FaceCropTracker(finder=_NoFace(), tracker=_NoFace(), whole=_NoFace())
    image = np.zeros((100, 200, 3), np.uint8)
    assert tracker._crop(image, 200, 0, 50) is None and tracker._crop(image, -50, 10, 50) is None
    assert tracker._crop(image, -49, -49, 50).shape == (256, 256, 3)  # one pixel of the frame is enough


class _Recording:
    """A detector that records the size of each frame it was given."""

    def __init__(self, inner):
        self.inner, self.sizes = inner, []

    def detect(self, image):
        self.sizes.append(image.shape[:2])
        return self.inner.detect(image)

    def reset(self):
        self.inner.reset()

    def close(self):
        self.inner.close()


def test_the_crop_tracker_follows_a_face_too_big_for_a_crop_in_the_whole_frame_and_back():
    """A face that comes close to a 640x360 camera and goes back: while its window is as
    large as the frame's height, the whole frame is tracked (a crop would save nothing);
    small again, the crop takes over. At each switch the graph taken up is first shown a
    blank frame (it forgets where it last saw the face). The points stay on the face."""
    iods = [40 + 3 * i for i in range(29)] + [124 - 3 * i for i in range(29)]
    cropped, whole = _Recording(FaceMeshDetector(tracking=True)), _Recording(FaceMeshDetector(tracking=True))
    used, errs = [], []
    with FaceCropTracker(tracker=cropped, whole=whole) as crop:
        for iod in iods:
            before = (len(cropped.sizes), len(whole.sizes))
            truth, image = webcam_frame((320, 200), iod, size=(640, 360))
            found = crop.detect(image)
            assert found is not None and found.image_size == (640, 360)
            errs.append(np.linalg.norm(found.pixels()[:468, :2] - truth[:468, :2], axis=1).mean() / interocular(truth))
            used.append("crop" if (256, 256) in cropped.sizes[before[0]:] else "whole" if (360, 640) in whole.sizes[before[1]:] else "finder")
    assert max(errs) < 0.08, list(zip(iods, used, errs))
    assert used[0] == "finder" and "whole" in used[20:38], used
    assert "crop" in used[:10] and used[-1] == "crop", used
    switches = sum(a != b for a, b in zip(used[1:], used[2:]))
    blanks = whole.sizes.count((64, 64)) + cropped.sizes.count((64, 64))
    assert switches >= 2 and blanks == switches, (used, blanks)


def test_the_crop_tracker_loses_a_face_that_leaves_and_finds_it_again_elsewhere():
    with FaceCropTracker() as crop:
        assert crop.detect(webcam_frame((400, 360))[1]) is not None and crop.window is not None
        assert crop.detect(np.full((720, 1280, 3), 60, np.uint8)) is None and crop.window is None  # gone: search the whole frame next
        truth, image = webcam_frame((950, 300))
        found = crop.detect(image)
        assert found is not None
        assert np.linalg.norm(found.pixels()[:468, :2] - truth[:468, :2], axis=1).mean() / interocular(truth) < 0.1
        with pytest.raises(ValueError, match="BGR uint8"):
            crop.detect(np.zeros((720, 1280), np.uint8))
