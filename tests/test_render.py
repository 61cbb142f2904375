"""``reenact render``: a driver clip re-enacted into a file, through the real command
line. Every frame is there, the driver's sound is muxed in on the same timeline, the
watermark names the model, side by side shows the driver, and an interrupted render
leaves nothing under the output name."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ctrl_c_as_at_a_terminal

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "puppet_model"
SECONDS = 3


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _reenact_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "reenact", *argv]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_reenact_cmd(*argv), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def _streams(path: Path) -> dict[str, float]:
    """Duration in seconds of each stream kind ffmpeg finds in ``path`` (decoded, not the header's claim)."""
    res = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    kinds = re.findall(r"Stream #\d+:\d+.*?: (Video|Audio): (\w+)", res.stderr)
    t = re.findall(r"time=(\d+):(\d+):([\d.]+)", res.stderr)
    total = int(t[-1][0]) * 3600 + int(t[-1][1]) * 60 + float(t[-1][2]) if t else 0.0
    return {kind.lower(): total for kind, _codec in kinds} | {"codecs": [c for _k, c in kinds]}


@pytest.fixture(scope="module")
def drivers(tmp_path_factory):
    """A driver puppet clip, once with a tone on its sound track and once silent."""
    root = tmp_path_factory.mktemp("render_drivers")
    silent = root / "silent.mp4"
    res = _run("puppet", "--face", "driver", "--seconds", str(SECONDS), "--out", str(silent), cwd=root)
    assert res.returncode == 0, res.stderr
    voiced = root / "voiced.mp4"
    subprocess.run([_ffmpeg(), "-v", "error", "-y", "-i", str(silent), "-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}",
                    "-c:v", "copy", "-c:a", "aac", "-shortest", str(voiced)], check=True)
    return {"voiced": voiced, "silent": silent}


def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            return out
        out.append(img)


@pytest.mark.slow
def test_render_writes_every_frame_with_the_drivers_sound_and_the_watermark(drivers, tmp_path):
    res = _run("render", str(drivers["voiced"]), "--model", str(MODEL), "--out", "out.mp4", "--json", "r.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out.mp4"
    assert len(_frames(out)) == SECONDS * 30  # every driver frame, none dropped or repeated
    streams = _streams(out)
    assert "h264" in streams["codecs"] and "aac" in streams["codecs"]
    assert "with the driver's audio" in res.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames_repeated"] == 0 and report["frames_dropped"] == 0 and report["audio"] is True
    assert report["frames_by_rung"] == {"main": SECONDS * 30}  # every frame generated, by the model itself
    verify = _run("verify", str(out), cwd=tmp_path)
    assert verify.returncode == 0 and report["model_id"] in verify.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "r.json"]  # no partial file left behind


@pytest.mark.slow
def test_the_sound_stays_on_the_videos_timeline(drivers, tmp_path):
    """Audio and video start together and last as long: a click at second 1 of the
    driver is at second 1 of the render."""
    clicked = tmp_path / "clicked.mp4"
    tone = "aevalsrc='if(between(t,1,1.05),sin(2*PI*880*t),0)':s=44100:d=3"
    subprocess.run([_ffmpeg(), "-v", "error", "-y", "-i", str(drivers["silent"]), "-f", "lavfi", "-i", tone,
                    "-c:v", "copy", "-c:a", "aac", "-shortest", str(clicked)], check=True)
    assert _run("render", str(clicked), "--model", str(MODEL), "--out", "out.mp4", "--quiet", cwd=tmp_path).returncode == 0
    pcm = subprocess.run([_ffmpeg(), "-v", "error", "-i", str(tmp_path / "out.mp4"), "-vn", "-ac", "1", "-ar", "8000", "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    audio = np.frombuffer(pcm, np.float32)
    onset = np.argmax(np.abs(audio) > 0.1) / 8000
    assert onset == pytest.approx(1.0, abs=0.03)
    s = _streams(tmp_path / "out.mp4")
    assert s["video"] == pytest.approx(SECONDS, abs=0.05)


@pytest.mark.slow
def test_a_sound_track_shorter_than_the_video_cuts_no_frames(drivers, tmp_path):
    short = tmp_path / "short.mp4"
    subprocess.run([_ffmpeg(), "-v", "error", "-y", "-i", str(drivers["silent"]), "-f", "lavfi", "-i", "sine=frequency=440:duration=1.2",
                    "-c:v", "copy", "-c:a", "aac", str(short)], check=True)
    assert _run("render", str(short), "--model", str(MODEL), "--out", "out.mp4", "--quiet", cwd=tmp_path).returncode == 0
    assert len(_frames(tmp_path / "out.mp4")) == SECONDS * 30
    assert _streams(tmp_path / "out.mp4")["audio"] == pytest.approx(SECONDS, abs=0.05)  # padded with silence


@pytest.mark.slow
def test_side_by_side_shows_the_driver_its_sketch_and_the_output(drivers, tmp_path):
    res = _run("render", str(drivers["silent"]), "--model", str(MODEL), "--out", "sbs.mp4", "--side-by-side", "--quiet",
               "--set", "output.height=240", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "no audio" in res.stdout
    rendered, driver = _frames(tmp_path / "sbs.mp4"), _frames(drivers["silent"])
    assert rendered[0].shape == (240, 720, 3) and len(rendered) == len(driver)
    i = 45
    left = rendered[i][:, :240].astype(np.float32)
    from live.pipeline import fit_into

    want = fit_into(driver[i], (240, 240)).astype(np.float32)
    assert np.corrcoef(left.ravel(), want.ravel())[0, 1] > 0.9  # the driver's own frame i, not another
    other = fit_into(driver[i - 30], (240, 240)).astype(np.float32)
    assert np.abs(left - want).mean() < np.abs(left - other).mean()


@pytest.mark.slow
def test_an_interrupted_render_leaves_no_file(drivers, tmp_path):
    long_driver = tmp_path / "long.mp4"  # the 3 s clip, 15 times over
    subprocess.run([_ffmpeg(), "-v", "error", "-y", "-stream_loop", "14", "-i", str(drivers["silent"]), "-c", "copy", str(long_driver)],
                   check=True)
    proc = subprocess.Popen(_reenact_cmd("render", str(long_driver), "--model", str(MODEL), "--out", "out.mp4"), cwd=tmp_path,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                            preexec_fn=ctrl_c_as_at_a_terminal)
    seen = ""
    deadline = time.monotonic() + 120
    while "render:" not in seen and time.monotonic() < deadline:  # the progress bar: frames are being written
        seen += proc.stdout.read(1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, seen + rest
    assert "was not written" in rest or "interrupted" in rest
    assert not any(p.name.startswith(("out", ".out")) for p in tmp_path.iterdir())


@pytest.mark.parametrize("argv, code, says", [
    (["--out", "out.avi"], 2, ".mp4"),
    (["--out", "DRIVER"], 2, "driver clip itself"),
])
def test_bad_render_arguments_get_one_line(drivers, tmp_path, argv, code, says):
    argv = [str(drivers["silent"]) if a == "DRIVER" else a for a in argv]
    res = _run("render", str(drivers["silent"]), "--model", str(MODEL), *argv, cwd=tmp_path)
    assert res.returncode == code
    last = [line for line in res.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("reenact: ") and says in last and "Traceback" not in res.stderr


def test_a_missing_driver_is_named(tmp_path):
    res = _run("render", "nope.mp4", "--model", str(MODEL), "--out", "out.mp4", cwd=tmp_path)
    assert res.returncode != 0 and "nope.mp4" in res.stderr.splitlines()[-1] and "Traceback" not in res.stderr
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.clips
@pytest.mark.slow
def test_render_of_a_real_talking_clip_keeps_the_voice_on_the_lips(clips_dir, tmp_path):
    """d10 (a person talking, with sound) through the built-in character: one output
    frame per driver frame, audio as long as the video within one frame, the A/V offset
    (measured as bench --av measures it) within one frame, and the mark names the model."""
    from live.avsync import file_av_offset
    from models.artifact import builtin_character, load_model_dir
    from models.video import open_video

    driver = clips_dir / "driver_liveportrait_d10.mp4"
    res = _run("render", str(driver), "--out", "out.mp4", "--quiet", "--json", "r.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    cap, info = open_video(driver)
    cap.release()
    out = tmp_path / "out.mp4"
    rendered = _frames(out)
    assert len(rendered) == len(_frames(driver))
    av = file_av_offset(driver, out, fps=info.fps)
    assert abs(av["audio_s"] - len(rendered) / info.fps) <= 1 / info.fps
    assert abs(av["offset_ms"]) <= 1000 / info.fps
    verify = _run("verify", str(out), cwd=tmp_path)
    assert verify.returncode == 0 and load_model_dir(builtin_character()).model_id in verify.stdout
