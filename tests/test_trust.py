"""The disclosure badge: on by default in every output frame, steady, and only off
when the config says so explicitly, which is logged."""
from __future__ import annotations

import dataclasses

import numpy as np

from live.session import LiveSettings, RunOptions, make_badge, run_session
from live.sinks import MemorySink
from live.sources import PuppetSource
from live.trust import Badge
from models.config import Config, load_config


def test_badge_is_on_by_default_in_the_shipped_config():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "config.toml")
    assert cfg.output.badge and make_badge(cfg.output, print) is not None


def test_badge_blends_into_its_corner_only_and_does_not_accumulate():
    badge = Badge((320, 180), position="bottom-right", opacity=0.8)
    frame = np.full((180, 320, 3), 128, np.uint8)
    once = badge.apply(frame.copy())
    x, y, w, h = badge.box
    assert x + w <= 320 and y + h <= 180 and x > 160 and y > 90
    changed = np.argwhere(np.any(once != 128, axis=2))
    assert changed[:, 0].min() >= y and changed[:, 1].min() >= x
    assert once[y:y + h, x:x + w].max() > 200  # white text is there
    top_left = Badge((320, 180), position="top-left")
    assert top_left.box[0] < 20 and top_left.box[1] < 20


def test_live_output_carries_the_badge_unless_explicitly_off(tiny_model):
    def frames(cfg):
        sink, logs = MemorySink(), []
        run_session(tiny_model, PuppetSource(size=(160, 120), frames=6), [sink], LiveSettings.of(cfg), RunOptions(threaded=False),
                    log=logs.append)
        return sink.frames, logs

    base = Config()
    # The two runs see the same frames at the same media times, so smoothing included they draw the same faces.
    small = dataclasses.replace(base, output=dataclasses.replace(base.output, width=320, height=180))
    on, logs_on = frames(small)
    off_cfg = dataclasses.replace(small, output=dataclasses.replace(small.output, badge=False))
    off, logs_off = frames(off_cfg)
    badge = make_badge(small.output, print)
    # Each output frame is exactly the badge-free frame with the badge blended in once:
    # nothing accumulates from frame to frame in reused buffers.
    assert all(np.array_equal(a, badge.apply(b.copy())) for a, b in zip(on, off))
    x, y, w, h = badge.box
    assert not np.array_equal(on[-1][y:y + h, x:x + w], off[-1][y:y + h, x:x + w])
    assert any("badge OFF" in line for line in logs_off) and not any("badge OFF" in line for line in logs_on)


# ---------------------------------------------------------------- the watermark

import subprocess  # noqa: E402

import cv2  # noqa: E402
import pytest  # noqa: E402

from live.trust import PERIOD, PRESENT_Z, Detector, Watermarker, bits_id, id_bits, read_video  # noqa: E402
from tests.conftest import DRIVER_CLIPS, TARGET_CLIP  # noqa: E402


def test_model_ids_round_trip_and_bad_ids_are_refused():
    for mid in ("00000000", "c0ffee42", "ffffffff", "1234abcd"):
        assert bits_id(id_bits(mid)) == mid
    with pytest.raises(ValueError, match="8 hex digits"):
        id_bits("xyz")


def test_watermark_is_invisible_to_the_eye_and_read_back_in_memory():
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(40, 220, (180, 320, 3)).astype(np.uint8), (0, 0), 6)
    wm = Watermarker("c0ffee42", (320, 180))
    marked, det, clean = [], Detector(), Detector()
    for i in range(64):
        frame = np.roll(base, i, axis=1)  # a slowly panning picture
        out = wm.apply(frame.copy(), i)
        assert np.abs(out.astype(int) - frame).max() <= 3  # a few luma levels at most
        det.add(out)
        clean.add(frame)
    r = det.reading()
    assert r.present and r.model_id == "c0ffee42" and r.confidence > PRESENT_Z
    assert not clean.reading().present


def test_watermark_into_another_buffer_marks_like_in_place_and_leaves_the_frame_alone():
    rng = np.random.default_rng(1)
    wm = Watermarker("c0ffee42", (64, 48))
    out = np.empty((48, 64, 3), np.uint8)
    for i in range(PERIOD + 1):  # every carrier phase, the zero crossings included
        frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        before = frame.copy()
        got = wm.apply(frame, i, out=out)
        assert got is out and np.array_equal(frame, before)
        assert np.array_equal(out, wm.apply(before.copy(), i))
    with pytest.raises(ValueError, match="does not match"):
        wm.apply(frame, 1, out=np.empty((48, 64, 4), np.uint8))


def _encode(frames, path, kbps, height):
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
           "-r", "30", "-i", "-", "-vf", f"scale=-2:{height}", "-c:v", "libx264", "-preset", "veryfast",
           "-b:v", f"{kbps}k", "-pix_fmt", "yuv420p", str(path)]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for f in frames:
        p.stdin.write(f.tobytes())
    p.stdin.close()
    assert p.wait() == 0


# (kbps at 720p, output height): three call-like bitrates, two scales (360p at half the rate)
ENCODINGS = [(2500, 720), (1000, 720), (500, 720), (1250, 360), (500, 360), (250, 360)]


@pytest.mark.clips
def test_watermark_survives_h264_and_scaling_on_real_clips(clips_dir, tmp_path):
    found = false_alarms = trials = 0
    for clip in (DRIVER_CLIPS[1], TARGET_CLIP):
        cap = cv2.VideoCapture(str(clip))
        frames = []
        while len(frames) < 150 and (r := cap.read())[0]:
            frames.append(cv2.resize(r[1], (1280, 720)))
        wm = Watermarker("5eed1e55", (1280, 720))
        marked = [wm.apply(f.copy(), i) for i, f in enumerate(frames)]
        for kbps, height in ENCODINGS[::2] + ENCODINGS[1::2]:
            _encode(marked, tmp_path / "m.mp4", kbps, height)
            _encode(frames, tmp_path / "c.mp4", kbps, height)
            got, _ = read_video(str(tmp_path / "m.mp4"))
            clean, _ = read_video(str(tmp_path / "c.mp4"))
            trials += 1
            found += got.present and got.model_id == "5eed1e55"
            false_alarms += clean.present
    assert found == trials, f"watermark read in {found} of {trials} re-encodings"
    assert false_alarms == 0


def test_verify_command_reads_a_recorded_live_output(tiny_model, tmp_path, capsys):
    from reenact.cli import main
    from live.sinks import RecorderSink

    cfg = Config()
    small = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, width=320, height=180))
    rec = tmp_path / "out.mp4"
    run_session(tiny_model, PuppetSource(size=(160, 120), frames=96), [RecorderSink(rec, size=(320, 180), fps=30)],
                LiveSettings.of(small), RunOptions(threaded=False), log=lambda s: None)
    from models.artifact import load_model_dir

    mid = load_model_dir(tiny_model).model_id
    assert main(["verify", str(rec), "--window", "48"]) == 0
    out = capsys.readouterr().out
    assert "FOUND" in out and mid in out
    raw = tmp_path / "raw.mp4"
    from models.video import write_video

    write_video(raw, (f.image for f in PuppetSource(size=(320, 180), frames=96)), 30)
    assert main(["verify", str(raw)]) == 3  # the documented exit code for "no watermark"
    assert "no reenact watermark" in capsys.readouterr().out
