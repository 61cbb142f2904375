"""The lip-sync audio path: the delay line on synthetic signals, the controller, and
a real PortAudio stream where the machine has a device (ALSA's null device in CI)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from live.audio import DelayController, DelayLine

SR = 48000
BLOCK = 256


def run(line: DelayLine, signal: np.ndarray, block: int = BLOCK) -> np.ndarray:
    out = [line.process(signal[i : i + block]) for i in range(0, len(signal), block)]
    return np.concatenate(out)


@pytest.mark.parametrize("delay_ms", [0.0, 7.3, 33.3, 120.0])
def test_impulse_comes_out_after_exactly_the_set_delay(delay_ms):
    line = DelayLine(samplerate=SR, max_delay_s=0.5)
    line.set_delay(delay_ms / 1000)
    line.jump_to_target()
    x = np.zeros((SR // 2, 1), np.float32)
    x[1000] = 1.0
    y = run(line, x)[:, 0]
    expected = 1000 + delay_ms / 1000 * SR
    centroid = float((np.arange(len(y)) * np.abs(y)).sum() / np.abs(y).sum())
    assert abs(centroid - expected) < 1e-3  # to the sample, well inside one block
    assert np.isclose(np.abs(y).sum(), 1.0, atol=1e-5)  # energy kept, nothing smeared away


def test_changing_the_delay_glides_without_a_click():
    line = DelayLine(samplerate=SR, max_delay_s=0.5, max_slew=0.005)
    line.set_delay(0.020)
    line.jump_to_target()
    t = np.arange(SR * 3) / SR
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[:, None]
    y = np.concatenate([run(line, x[: SR]), _retarget_and_run(line, x[SR:], 0.030)])[:, 0]
    clean_step = np.abs(np.diff(x[:, 0])).max()
    # A jump of the read position would show as a step far above the sine's own slope.
    assert np.abs(np.diff(y[SR // 2 :])).max() < 1.05 * clean_step
    assert line.delay == pytest.approx(0.030 * SR, abs=1)  # got there: 10 ms at 0.5 % speed takes 2 s


def _retarget_and_run(line, x, seconds):
    line.set_delay(seconds)
    return run(line, x)


def test_long_runs_keep_the_buffer_bounded_and_the_delay_in_range():
    line = DelayLine(samplerate=SR, max_delay_s=0.3)
    size = line.buffer.shape
    rng = np.random.default_rng(0)
    block = rng.normal(0, 0.1, (1024, 1)).astype(np.float32)
    for i in range(10 * 60 * SR // 1024):  # ten minutes of audio
        if i % 500 == 0:
            line.set_delay(rng.uniform(-1, 1))  # including nonsense: clamped
        line.process(block)
        assert 0 <= line.delay <= line.max_delay
    assert line.buffer.shape == size


def test_controller_follows_video_latency_within_bounds():
    c = DelayController(offset_s=0.010, sink_latency_s=0.005, max_delay_s=0.2)
    c.video_latency_s = 0.030
    assert c.wanted() == pytest.approx(0.045)
    c.video_latency_s = 5.0
    assert c.wanted() == 0.2
    c.video_latency_s, c.offset_s = 0.0, -0.1
    assert c.wanted() == 0.0


def test_bad_blocks_are_refused():
    line = DelayLine(samplerate=SR, channels=2)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        line.process(np.zeros((10, 1), np.float32))
    with pytest.raises(ValueError):
        DelayLine(samplerate=0)


PORTAUDIO_SCRIPT = textwrap.dedent("""
    import sys, time
    try:
        import sounddevice as sd
    except OSError as e:
        print("SKIP PortAudio missing:", e); sys.exit(0)
    if not [d for d in sd.query_devices() if d["max_input_channels"] and d["max_output_channels"]]:
        print("SKIP no duplex audio device"); sys.exit(0)
    from live.audio import AudioBridge, DelayController
    c = DelayController(max_delay_s=0.3)
    c.video_latency_s = 0.05
    b = AudioBridge(controller=c, samplerate=48000, blocksize=256, log=lambda s: None)
    b.start(); time.sleep(0.5); b.close()
    print("OK", b.stats.blocks, b.stats.errors)
""")


def test_real_portaudio_stream(tmp_path):
    """Opens a real duplex stream. With no sound card, an ALSA config declaring the
    null PCM (under the HOME the process sees) gives PortAudio a device to run."""
    (tmp_path / ".asoundrc").write_text("pcm.!default { type null }\nctl.!default { type hw card 0 }\n")
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=os.getcwd())
    res = subprocess.run([sys.executable, "-c", PORTAUDIO_SCRIPT], capture_output=True, text=True, timeout=60, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-500:]
    if out.startswith("SKIP"):
        if os.environ.get("CI"):
            pytest.fail(f"CI must have PortAudio and ALSA's null device: {out}")
        pytest.skip(out)
    assert res.returncode == 0 and out.startswith("OK"), res.stderr[-2000:]
    blocks = int(out.split()[1])
    assert blocks > 10 and out.endswith("[]")  # the callback ran, without errors
