"""The A/V sync measurement: it recovers known offsets on synthetic signals, and on the
real d10 clip the pipeline's audio stays within one frame of the video."""
from __future__ import annotations

import json

import numpy as np
import pytest

from live.avsync import AVError, RATE, delayed_audio, envelope, lag
from tests.conftest import DRIVER_CLIPS, PUPPET_MODEL


def talking(seconds: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """A mouth-opening signal at 30 fps and speech-like audio whose loudness follows it."""
    t = np.arange(int(seconds * 30)) / 30
    bursts = np.zeros_like(t)
    for start in np.cumsum(rng.uniform(0.2, 0.6, 200)):
        bursts += np.exp(-(((t - start) / 0.07) ** 2))
    mouth = np.clip(bursts, 0, 1)
    ta = np.arange(int(seconds * RATE)) / RATE
    loud = np.interp(ta, t, mouth)
    audio = (loud * rng.normal(0, 0.3, ta.size)).astype(np.float32)
    return mouth, audio


@pytest.mark.parametrize("shift_ms", [-80.0, 0.0, 23.0, 47.0])
def test_lag_recovers_a_known_shift(shift_ms):
    rng = np.random.default_rng(1)
    mouth, audio = talking(12, rng)
    tm = np.arange(mouth.size) / 30
    te, env = envelope(audio, RATE)
    got = lag(tm, mouth, te + shift_ms / 1000, env)
    assert got * 1000 == pytest.approx(shift_ms, abs=3.0)


def test_lag_refuses_a_voice_that_does_not_follow_the_mouth():
    rng = np.random.default_rng(2)
    mouth, _ = talking(12, rng)
    audio = rng.normal(0, 0.3, 12 * RATE).astype(np.float32)  # steady noise: no loudness to line up
    te, env = envelope(audio, RATE)
    with pytest.raises(AVError, match="do not correlate"):
        lag(np.arange(mouth.size) / 30, mouth, te, env)


def test_delayed_audio_follows_the_latency_it_is_given():
    rng = np.random.default_rng(3)
    audio = rng.normal(0, 0.2, RATE * 4).astype(np.float32)
    frames = np.arange(120) / 30
    out, delays = delayed_audio(audio, RATE, frames, np.full(120, 0.025), max_delay_s=0.3)
    assert np.allclose(delays, 0.025, atol=1 / RATE)
    k = int(0.025 * RATE)
    assert np.allclose(out[k + 1000 : k + 5000], audio[1000:5000], atol=1e-5)


@pytest.mark.clips
def test_bench_av_on_a_real_clip_is_within_one_frame(clips_dir, tmp_path):
    """d10 (someone talking) drives the puppet model at real-time pace: the delayed voice
    leaves within one frame of the generated mouth. The budget is lifted so the degrader
    never repeats frames: this measures the sync, not how a slow machine copes."""
    from reenact.cli import main

    out = tmp_path / "av.json"
    assert main(["bench", "--av", "--model", str(PUPPET_MODEL), "--source", str(DRIVER_CLIPS[1]), "--json", str(out),
                 "--set", "live.budget_ms=1000"]) == 0
    av = json.loads(out.read_text())["av"]
    assert abs(av["offset_ms"]) < av["frame_ms"]
    assert abs(av["expected_offset_ms"]) < 5.0
