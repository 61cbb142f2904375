from __future__ import annotations

from pathlib import Path

from live import devices


def test_v4l2_listing_tells_real_from_virtual_cameras(tmp_path):
    real = tmp_path / "devices" / "pci0000:00" / "usb1" / "video4linux" / "video0"
    virt = tmp_path / "devices" / "virtual" / "video4linux" / "video10"
    for d, name in ((real, "HD Pro Webcam C920"), (virt, "reenact")):
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
    root = tmp_path / "class" / "video4linux"
    root.mkdir(parents=True)
    (root / "video0").symlink_to(real)
    (root / "video10").symlink_to(virt)
    found = devices.video_devices(root)
    assert [(d.kind, d.index, d.name) for d in found] == [("camera", "0", "HD Pro Webcam C920"), ("virtual-camera", "/dev/video10", "reenact")]


def test_report_never_crashes_and_names_each_section():
    text = devices.report()
    for title in ("Cameras", "Virtual cameras", "Audio inputs", "Audio outputs"):
        assert title in text


def test_live_runs_on_when_audio_cannot_start(tiny_model, tmp_path, monkeypatch):
    """An audio fault never stops the video: a bad device is reported and live goes on."""
    import dataclasses

    from live.session import LiveSettings, RunOptions, run_session
    from live.sinks import NullSink
    from live.sources import PuppetSource
    from models.config import Config

    cfg = Config()
    cfg = dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, enabled=True, input="no such microphone"))
    logs = []
    report = run_session(tiny_model, PuppetSource(size=(160, 120), frames=10), [NullSink()], LiveSettings.of(cfg),
                         RunOptions(threaded=False), log=logs.append)
    assert report["frames_out"] == 10
    assert "audio" not in report and any("continuing without audio" in line for line in logs)
