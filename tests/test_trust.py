"""The disclosure badge: on by default in every output frame, steady, and only off
when the config says so explicitly, which is logged."""
from __future__ import annotations

import dataclasses

import numpy as np

from live.session import make_badge, run_session
from live.sinks import MemorySink
from live.sources import PuppetSource
from live.trust import Badge
from models.config import Config, load_config


def test_badge_is_on_by_default_in_the_shipped_config():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "config.toml")
    assert cfg.output.badge and make_badge(cfg, print) is not None


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
        run_session(tiny_model, PuppetSource(size=(160, 120), frames=6), [sink], cfg, threaded=False, log=logs.append)
        return sink.frames, logs

    base = Config()
    # No smoothing: it follows wall-clock capture times, which differ between the two runs.
    small = dataclasses.replace(base, output=dataclasses.replace(base.output, width=320, height=180),
                                landmarks=dataclasses.replace(base.landmarks, smoothing=False))
    on, logs_on = frames(small)
    off_cfg = dataclasses.replace(small, output=dataclasses.replace(small.output, badge=False))
    off, logs_off = frames(off_cfg)
    badge = make_badge(small, print)
    # Each output frame is exactly the badge-free frame with the badge blended in once:
    # nothing accumulates from frame to frame in reused buffers.
    assert all(np.array_equal(a, badge.apply(b.copy())) for a, b in zip(on, off))
    x, y, w, h = badge.box
    assert not np.array_equal(on[-1][y:y + h, x:x + w], off[-1][y:y + h, x:x + w])
    assert any("badge OFF" in line for line in logs_off) and not any("badge OFF" in line for line in logs_on)
