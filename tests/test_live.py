"""The live loop, driven with fakes (clock, detector, engine, sources) and with the
real pieces on the synthetic puppet: order and timestamps, newest-frame-wins, the
no-face policy, camera loss and recovery, failing sinks, degradation, shutdown."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from live.capture import CameraLost, SyncCapture, ThreadedCapture
from live.loop import LEVELS, LiveLoop
from live.controls import Controls
from live.output import Mode, OutputStage
from live.pipeline import Compositor, Pipeline
from live.sinks import FanOut, MemorySink, SinkError, VirtualCameraSink
from live.sources import DRIVER_SHAPE, Frame, PuppetSource, SourceError
from models.artifact import load_model_dir
from models.config import LandmarksConfig, LiveConfig
from tests.fakes import FakeClock, FakeEngine, ScriptedDetector, StampedSource, WallClock, puppet_script

OUT = (160, 90)


def make_loop(model_dir, clock, *, script=None, source=None, capture=None, engine_cost=0.005, budget_ms=33.0,
              sinks=None, hold=0.5, ease=0.4, smoothing=False, detector_cost=0.003, pipelined=False, light_cost=None):
    model = load_model_dir(model_dir)
    spec = model.contract.sketch
    engine = FakeEngine((spec.height, spec.width, 3), clock, engine_cost)
    light = None if light_cost is None else FakeEngine((spec.height, spec.width, 3), clock, light_cost)
    src = source or StampedSource(clock)
    detector = ScriptedDetector(script or puppet_script(src.size), src.size, clock, detector_cost)
    pipe = Pipeline(model, engine, detector, live=LiveConfig(neutral_seconds=0.2), landmarks=LandmarksConfig(smoothing=smoothing),
                    out_size=OUT, clock=clock, light_engine=light)
    pipe.face.hold_s, pipe.face.ease_s = hold, ease
    sink = MemorySink(clock)
    fan = FanOut([sink] + (sinks or []), log=lambda s: None)
    logs: list[str] = []
    output = OutputStage(OUT, badge=None, watermark=None, clock=clock)
    loop = LiveLoop(capture or SyncCapture(src), pipe, output, fan, budget_ms=budget_ms, fps=30.0, clock=clock, sleep=clock.sleep,
                    log=logs.append, pipelined=pipelined)
    return loop, sink, engine, detector, src, logs


def test_frames_come_out_in_order_with_their_capture_timestamps(tiny_model):
    clock = FakeClock()
    loop, sink, engine, _, src, _ = make_loop(tiny_model, clock)
    report = loop.run()
    assert report["frames_out"] == 60 == len(sink.frames)
    assert np.all(np.diff(sink.t_frame) > 0)
    assert np.allclose(np.diff(sink.t_frame), 1 / 30)  # the source's own timestamps, untouched
    e2e = np.array(sink.t_sent) - np.array(sink.t_frame)
    assert np.allclose(e2e, 0.003 + 0.005)  # detector + engine cost, nothing else on the fake clock
    assert report["e2e_ms"]["p50"] == pytest.approx(8.0, abs=0.01)
    assert report["overhead_ms"]["p99"] < 0.01
    assert engine.calls == 60 and report["frames_dropped"] == 0 and report["frames_repeated"] == 0
    assert all(f.shape == (OUT[1], OUT[0], 3) for f in sink.frames)


def test_driver_at_rest_shows_the_target_neutral_then_follows(tiny_model):
    clock = FakeClock()
    loop, _, _, _, _, _ = make_loop(tiny_model, clock)
    pipe = loop.pipeline
    results = []
    src = StampedSource(clock, frames=90)
    for _ in range(90):
        results.append(pipe.process(src.read()))
    neutral = pipe.target_neutral
    # The puppet rests for its first second: the target shows its own neutral face
    # (its irises where the driver's are in their eyes: gaze is not part of the neutral).
    face = np.r_[0:468]
    assert np.abs(results[10].target_px[face] - neutral[face]).max() < 0.5
    # Later the driver moves, and so does the target.
    assert max(np.abs(r.target_px - neutral).max() for r in results[45:]) > 3.0


def test_no_face_holds_then_eases_to_neutral_and_back(tiny_model):
    clock = FakeClock()
    face = puppet_script()
    script = lambda i: None if 40 <= i < 90 else face(i)  # noqa: E731
    loop, sink, engine, _, _, _ = make_loop(tiny_model, clock, script=script, hold=0.5, ease=0.4,
                                            source=StampedSource(clock, frames=130))
    pipe = loop.pipeline
    src = loop.capture.source
    res = [pipe.process(src.read()) for _ in range(130)]
    neutral = pipe.target_neutral
    dist = [np.abs(r.target_px - neutral).mean() for r in res]
    # held: frames 40..54 (0.5 s) repeat the last output, the generator does not run
    assert not any(r.generated for r in res[40:55]) and all(r.generated for r in res[55:60])
    assert all(np.array_equal(r.image, res[39].image) for r in res[40:55])
    # easing over 0.4 s (12 frames) to the neutral, monotonically
    easing = dist[55:68]
    assert all(b <= a + 1e-9 for a, b in zip(easing, easing[1:]))
    assert dist[70] < 1e-6 and dist[39] > 0.5
    # face back at 90: eases back to the driven face instead of jumping
    assert dist[90] < 0.3 * dist[100] + 1e-6
    assert res[110].face and np.abs(res[110].target_px - pipe._retargeter().retarget(face(110))).max() < 1e-3


@pytest.mark.parametrize("pipelined", [False, True])
def test_camera_loss_keeps_the_sinks_alive_and_recovers(tiny_model, pipelined):
    clock = FakeClock()
    first = StampedSource(clock, frames=10**6, fail_at=10, pace=0.01)
    second = StampedSource(clock, frames=10**6, pace=0.01)
    attempts = []

    def reopen():
        attempts.append(1)
        if len(attempts) < 3:
            raise SourceError("still unplugged")
        return second

    capture = ThreadedCapture(first, reopen=reopen, retry_s=0.05, log=lambda s: None)
    loop, sink, _, _, _, logs = make_loop(tiny_model, clock, source=first, capture=capture, pipelined=pipelined)
    loop.sleep = lambda dt: time.sleep(0.01)  # neutral frames go out at a steady rate while the camera is away
    report = loop.run(max_frames=25)
    capture.close()
    assert report["frames_camera_lost"] > 3  # neutral frames kept the sinks alive during the retries
    assert report["frames_out"] == 25 and second.index >= 10  # driving resumed from the reopened camera
    assert len(sink.frames) == report["frames_out"] + report["frames_camera_lost"]
    assert len(attempts) == 3 and first.closed
    neutral = loop.output.disclose(loop.pipeline.neutral_frame())
    assert any(np.array_equal(f, neutral) for f in sink.frames)


def test_a_failing_sink_is_dropped_and_the_others_continue(tiny_model):
    class Flaky(MemorySink):
        name = "flaky"

        def send(self, image, t_frame):
            if len(self.t_frame) == 5:
                raise OSError("device vanished")
            super().send(image, t_frame)

    clock = FakeClock()
    flaky = Flaky(clock)
    loop, sink, _, _, _, _ = make_loop(tiny_model, clock, sinks=[flaky])
    report = loop.run()
    assert len(sink.frames) == 60 and len(flaky.frames) == 5
    assert report["sinks_failed"] == ["flaky"] and flaky.closed


def test_over_budget_degrades_in_steps_and_recovers(tiny_model):
    clock = FakeClock()
    loop, sink, engine, detector, _, logs = make_loop(tiny_model, clock, engine_cost=0.045, budget_ms=33,
                                                      source=StampedSource(clock, frames=400))
    loop.run(max_frames=120)
    assert loop.degrader.level >= 1 and any("reuse-landmarks" in line for line in logs)
    detections_before = detector.calls
    engine.cost = 0.002  # the machine calms down
    loop.run(max_frames=400)
    assert loop.degrader.level == 0
    levels = [c["level"] for c in loop.degrader.changes]
    assert levels[0] == "reuse-landmarks" and levels[-1] == "normal"  # no lighter rung here: reuse is the first step
    assert detector.calls - detections_before < 400 - 120  # landmarks were reused on some frames
    assert set(levels) <= set(LEVELS)


def test_over_budget_the_lighter_rung_comes_before_reusing_or_repeating_anything(tiny_model):
    """Quality before motion: with a lighter rung that fits the budget, an overloaded
    loop steps down to it and stays there, every frame still detected and generated."""
    clock = FakeClock()
    loop, sink, engine, detector, _, logs = make_loop(tiny_model, clock, engine_cost=0.045, light_cost=0.01, budget_ms=33,
                                                      source=StampedSource(clock, frames=300))
    report = loop.run()
    assert [c["level"] for c in loop.degrader.changes] == ["light"]  # one step down, and no further
    assert report["frames_repeated"] == 0 and report["frames_reused_landmarks"] == 0
    assert report["frames_by_rung"]["light"] > 250 and report["frames_by_rung"]["main"] < 30
    assert detector.calls == 300 and any("normal -> light" in line for line in logs)


def test_pipelined_loop_overlaps_landmarks_with_generation_and_keeps_every_frame(tiny_model):
    """Flat out from a file (a lossless capture): the pipelined loop outputs every
    frame, in order, each stamped with its own capture time, and the landmarks of one
    frame overlap the generator's work on the previous one."""
    runs = {}
    for pipelined in (False, True):
        clock = WallClock()
        loop, sink, engine, detector, _, _ = make_loop(tiny_model, clock, source=StampedSource(clock, frames=40),
                                                       detector_cost=0.02, engine_cost=0.02, budget_ms=1000, pipelined=pipelined)
        report = loop.run()
        assert report["frames_out"] == 40 == len(sink.frames) == engine.calls == detector.calls
        assert report["frames_dropped"] == 0 and report["pipelined"] is pipelined
        assert np.all(np.diff(sink.t_frame) > 0)
        e2e = np.array(sink.t_sent) - np.array(sink.t_frame)
        assert e2e.min() >= 0.04  # from each frame's own capture: both stages' work is in it
        runs[pipelined] = report["duration_s"]
    assert runs[True] < 0.8 * runs[False], runs  # ~0.8 s of sleeps in each stage overlap: ~0.8 s instead of ~1.6 s


def test_pipelined_loop_drops_stale_frames_between_stages_and_stays_fresh(tiny_model):
    """A camera faster than the generator: the newest prepared frame wins, drops are
    counted, latency stays bounded."""
    clock = WallClock()
    src = StampedSource(clock, frames=10**6, pace=0.004)
    capture = ThreadedCapture(src, log=lambda s: None)
    loop, sink, engine, _, _, _ = make_loop(tiny_model, clock, source=src, capture=capture, detector_cost=0.002,
                                            engine_cost=0.03, budget_ms=1000, pipelined=True)
    report = loop.run(max_frames=20)
    capture.close()
    assert report["frames_out"] == 20 and np.all(np.diff(sink.t_frame) > 0)
    assert report["frames_dropped"] > 40  # ~8 frames arrive per generator call
    assert report["frames_dropped"] == capture.dropped + loop.front.dropped
    e2e = np.array(sink.t_sent) - np.array(sink.t_frame)
    assert np.percentile(e2e, 90) < 0.1  # one generator call and a little, never a queue


def test_an_error_in_the_landmarks_stage_stops_the_pipelined_loop(tiny_model):
    clock = WallClock()
    face = puppet_script()

    def script(i):
        if i == 5:
            raise RuntimeError("detector crashed on frame 5")
        return face(i)

    loop, *_ = make_loop(tiny_model, clock, script=script, source=StampedSource(clock, frames=40), pipelined=True)
    with pytest.raises(RuntimeError, match="frame 5"):
        loop.run()
    assert not loop.front._thread.is_alive()


def test_newest_frame_wins_and_latency_stays_bounded():
    """A source faster than the consumer: frames are skipped, never queued."""
    class Fast:
        fps, size = 1000.0, (8, 8)

        def __init__(self):
            self.i = 0

        def read(self):
            time.sleep(0.001)
            self.i += 1
            return Frame(np.zeros((8, 8, 3), np.uint8), time.monotonic(), self.i) if self.i <= 400 else None

        def close(self):
            pass

    cap = ThreadedCapture(Fast(), log=lambda s: None)
    got, ages = [], []
    while (f := cap.get(timeout=2)) is not None:
        ages.append(time.monotonic() - f.t_capture)
        got.append(f.index)
        time.sleep(0.01)  # a slow consumer
    cap.close()
    assert got == sorted(got) and len(set(got)) == len(got)
    assert len(got) < 200 and cap.dropped > 200  # most frames skipped
    assert cap.dropped + len(got) == cap.captured
    # What is delivered is fresh: a queue would make ages grow by ~10 ms per frame taken.
    # The bounds hold on a machine twice as slow, pinned to one core.
    assert np.percentile(ages, 90) < 0.03
    assert np.median(ages[-20:]) < np.median(ages[:20]) + 0.01


def test_clean_shutdown_from_a_hotkey_releases_everything(tiny_model):
    clock = FakeClock()
    src = StampedSource(clock, frames=10**6)
    loop, sink, engine, detector, _, _ = make_loop(tiny_model, clock, source=src)
    stopper = MemorySink(clock)
    controls = Controls(loop, loop.pipeline, loop.output, log=lambda s: None)
    stopper.send = lambda image, t: controls.handle_key("q") if len(sink.frames) >= 25 else None
    loop.sinks.sinks.append(stopper)
    report = loop.run()
    loop.capture.close()
    loop.sinks.close()
    assert report["frames_out"] == 25
    assert src.closed and sink.closed and loop.sinks.sinks == []


@pytest.mark.parametrize("recalibrate", [False, True], ids=["first-second", "recalibration"])
def test_a_new_driver_neutral_eases_in_instead_of_popping(tiny_model, recalibrate):
    """When the driver's neutral changes (the first second's measurement replaces the
    first frame's stand-in, or the user recalibrates), the drawn face crossfades from the
    old retargeting to the new one over the ease time: no frame-to-frame jump."""
    clock = FakeClock()
    face = puppet_script()
    brows = np.r_[46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336]

    def script(i):  # a still driver; brows raised 4 px on the first frame only, or from frame 24 on (recalibrated at 30)
        px = face(0).copy()
        if i == 0 or (recalibrate and i >= 24):
            px[brows, 1] -= 4.0
        return px

    loop, _, _, _, _, _ = make_loop(tiny_model, clock, script=script, ease=0.4, source=StampedSource(clock, frames=70))
    pipe, src = loop.pipeline, loop.capture.source
    changes, res = [], []
    for i in range(70):
        if recalibrate and i == 30:
            pipe.recalibrate()
        before = pipe.retargeter
        res.append(pipe.process(src.read()))
        if pipe.retargeter is not before and before is not None:  # the neutral changed on this frame
            changes.append((i, before))
    assert [i for i, _ in changes] == ([6] if not recalibrate else [6, 30, 36])
    # How far the drawn face would pop on each change, drawn at once...
    jumps = [np.abs(old.retarget(script(i)) - (pipe.retargeter if n == len(changes) - 1 else changes[n + 1][1]).retarget(script(i))).max()
             for n, (i, old) in enumerate(changes)]
    assert jumps[0] > 3.0 and (not recalibrate or jumps[1] > 3.0)
    # ... and how far it moves in any one frame instead, but for the frames where the driver's
    # brows really move (1, 24); the smoothstep's steepest step over 0.2 s (6 frames) is 1/4 of the way.
    steps = [np.abs(res[k].target_px - res[k - 1].target_px).max() for k in range(2, 70) if k != 24]
    assert max(steps) < 0.3 * max(jumps)
    # Once eased, the face is the new retargeting's, exactly.
    assert np.abs(res[-1].target_px - pipe._retargeter().retarget(script(69))).max() < 1e-3


def test_a_first_frame_off_rest_stands_in_for_a_fifth_of_a_second_not_the_whole_calibration(tiny_model):
    """The first frame stands in for the driver's neutral so the face moves at once;
    while the neutral is measured (1 s), it is re-estimated every 0.2 s from the frames
    so far, so a first frame with raised brows skews the drawn face only briefly."""
    from live.pipeline import Calibration

    clock = FakeClock()
    face = puppet_script()
    brows = np.r_[46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336]

    def script(i):  # a driver at rest, but for raised brows on the very first frame, and from 46 on (45: no face)
        if i == 45:
            return None
        px = face(0).copy()
        if i == 0 or i >= 46:
            px[brows, 1] -= 4.0
        return px

    loop, _, _, _, _, _ = make_loop(tiny_model, clock, script=script, source=StampedSource(clock, frames=50))
    pipe, src = loop.pipeline, loop.capture.source
    pipe.calibration = Calibration(1.0)
    res = [pipe.process(src.read()) for _ in range(45)]
    assert pipe.calibration.ready and pipe.calibration.completed == 1
    off = [np.abs(r.target_px[brows] - pipe.target_neutral[brows]).max() for r in res]
    assert off[3] > 2.0  # relative to the raised first frame, resting brows look lowered...
    assert max(off[14:]) < 0.2  # ... until the first re-estimate (0.2 s) has eased in, well before the second is over
    # A new, unrelated stretch (another clip, another person), measured afresh and starting
    # without a face, starts from its own first face, not eased from the last stretch's
    # neutral: that first face is the target's neutral.
    pipe.reset()
    pipe.recalibrate()
    pipe.process(src.read())  # no face
    back = [pipe.process(src.read()) for _ in range(4)]
    assert all(r.face for r in back)
    assert max(np.abs(r.target_px[brows] - pipe.target_neutral[brows]).max() for r in back) < 0.05


def test_a_long_calibration_refreshes_its_estimate_only_in_the_first_second():
    """Each refresh re-estimates from every frame so far: past the first second they would
    cost more and more for little, so a 5 s measurement refreshes about every 0.2 s for a
    second, then only finishes."""
    from live.pipeline import Calibration

    face = puppet_script()
    cal = Calibration(5.0)
    changed = [i for i in range(160) if cal.add(i / 30, face(i))]
    assert changed[0] == 0 and changed[-1] == 150 and cal.ready and cal.completed == 1
    assert all(i <= 31 for i in changed[:-1]) and 4 <= len(changed) - 1 <= 6


def test_a_neutral_change_during_an_ease_continues_from_the_blend_drawn_and_the_chain_stays_short():
    """NeutralHandover: a second change mid-ease starts from what was being drawn (no jump),
    and once an ease is over the earlier retargetings are no longer computed."""
    from live.pipeline import NeutralHandover

    class Fixed:  # a retargeter that draws one face, counting its calls
        def __init__(self, value):
            self.value, self.calls = value, 0

        def retarget(self, px, *, response=None):
            self.calls += 1
            return np.full((478, 3), self.value)

    a, b, c, px = Fixed(0.0), Fixed(10.0), Fixed(30.0), np.zeros((478, 3))
    h = NeutralHandover(ease_s=0.2)
    h.start(a, 0.0)
    before = h.blend(0.1 - 1e-6, px, b.retarget(px), None)[0, 0]  # halfway from a's face to b's
    assert 4.0 < before < 6.0
    h.start(b, 0.1)  # b is replaced by c at t=0.1, mid-ease
    after = h.blend(0.1, px, c.retarget(px), None)[0, 0]
    assert abs(after - before) < 0.01  # continues from the blend drawn, no jump
    # The next change comes when that ease is over but before any frame was drawn with it:
    # a and b are not computed any more, and the face eases from c's.
    h.start(c, 0.5)
    calls = a.calls + b.calls
    assert abs(h.blend(0.5, px, Fixed(50.0).retarget(px), None)[0, 0] - 30.0) < 1e-9
    assert a.calls + b.calls == calls


def test_a_still_face_is_steadied_and_a_moving_one_drawn_afresh():
    """SteadyFace damps the generator's frame-to-frame flicker while the landmarks hold
    still, and passes the new face through untouched once they move ``motion`` IODs."""
    from live.pipeline import SteadyFace
    from tests.fakes import puppet_script

    rng = np.random.default_rng(0)
    pts = puppet_script()(0)[:, :2] * 0.5  # a face about 30 px between the eyes
    base = rng.integers(60, 200, (64, 64, 3)).astype(np.int16)
    flicker = [np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8) for _ in range(40)]
    steady = SteadyFace(keep=0.6, motion=0.035)
    shown = [steady(f, pts) for f in flicker]
    change_in = np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(flicker, flicker[1:])])
    change_out = np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(shown[5:], shown[6:])])
    assert change_out < 0.6 * change_in
    # Each shown face lies between the last one shown and the new one, pixel by pixel.
    for prev, new, out in zip(shown, flicker[1:], shown[1:]):
        lo, hi = np.minimum(prev, new).astype(int) - 1, np.maximum(prev, new).astype(int) + 1
        assert ((out >= lo) & (out <= hi)).all()
    # Moved by the motion threshold (0.035 IOD ~ 1 px here): the new face, unblended.
    iod = np.linalg.norm(pts[473] - pts[468])
    moved = steady(flicker[0], pts + [0.05 * iod, 0.0])
    assert np.array_equal(moved, flicker[0])
    # Off: always the new face.
    off = SteadyFace(keep=0.0)
    assert all(np.array_equal(off(f, pts), f) for f in flicker[:3])
    # Engines write every face into the same buffer: after a face drawn afresh (the head
    # moved), the next still frame must still be blended with it, not with itself.
    buffer, reused = np.empty_like(flicker[0]), SteadyFace(keep=0.6, motion=0.035)
    for k, f in enumerate(flicker[:3]):
        buffer[:] = f
        out = reused(buffer, pts if k == 0 else pts + [0.05 * iod, 0.0]).copy()
    assert not np.array_equal(out, flicker[2])
    assert np.abs(out.astype(int) - (0.4 * flicker[2] + 0.6 * flicker[1])).max() <= 1


def test_controls_change_the_view_gain_and_neutral(tiny_model):
    """Keys reach the parts through one command interface: the view of the output stage,
    the pipeline's gains and calibration, the loop's pause."""
    clock = FakeClock()
    loop, sink, _, _, src, logs = make_loop(tiny_model, clock)
    pipe, controls = loop.pipeline, Controls(loop, loop.pipeline, loop.output, log=logs.append)
    frame = src.read()
    out = loop.output.render(frame, pipe.process(frame))[0].copy()
    controls.handle_key("m")
    assert loop.output.mode is Mode.PASSTHROUGH
    frame = src.read()
    assert not np.array_equal(loop.output.render(frame, pipe.process(frame))[0], out)
    mouth = pipe.gains.mouth
    controls.handle_key("+")
    assert controls.gain == pytest.approx(1.1) and pipe.gains.mouth == pytest.approx(1.1 * mouth)
    assert pipe.gains.head_motion == controls.base.head_motion  # the expression gain leaves head motion alone
    controls.handle_key("n")
    assert not pipe.calibration.ready
    controls.handle_key("p")
    assert loop.paused
    controls.handle_key("x")  # an unknown key changes nothing
    assert loop.paused and controls.gain == pytest.approx(1.1)


def test_panel_controls_reach_the_parts_and_are_kept(tiny_model):
    """The panel's commands go through the same Controls: a region gain reaches the
    pipeline (and scales with the global gain), the badge moves but stays, the audio
    offset reaches the delay controller, the steadying reaches the pipeline, and each
    change is handed to ``on_change``."""
    from live.audio import DelayController, DelayLine
    from live.trust import Badge

    clock = FakeClock()
    loop, sink, _, _, src, logs = make_loop(tiny_model, clock)
    controls = Controls(loop, loop.pipeline, loop.output, log=logs.append)
    kept = {}
    controls.on_change = kept.__setitem__
    controls.rebadge = lambda position: Badge((320, 180), position=position)
    loop.output.badge = Badge((320, 180))
    controls.set_gain(1.5)
    controls.set_region("mouth", 2.0)
    assert loop.pipeline.gains.mouth == pytest.approx(3.0) and loop.pipeline.gains.eyes == pytest.approx(1.5)
    controls.set_region("head_motion", 9.0)  # clamped to the config's range
    assert loop.pipeline.gains.head_motion == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown region"):
        controls.set_region("nose", 1.0)
    controls.set_badge_position("top-left")
    assert loop.output.badge is not None and loop.output.badge.box[:2] == (Badge((320, 180), position="top-left").box[:2])
    with pytest.raises(ValueError):
        controls.set_badge_position("off")
    controls.audio_controller, controls.audio_line = DelayController(video_latency_s=0.04), DelayLine(samplerate=1000)
    controls.set_audio_offset(30)
    assert controls.audio_controller.offset_s == pytest.approx(0.03)
    controls.audio_line.delay = 80.0  # samples at 1 kHz: 80 ms applied against 40 ms of video latency
    assert controls.state()["av_offset_ms"] == pytest.approx(40.0)
    controls.set_steady(2.0)  # clamped to live.steady's range, and reaching the generated face's blend
    assert loop.pipeline.steady.keep == pytest.approx(0.9) and controls.state()["steady"] == pytest.approx(0.9)
    controls.set_steady(0.0)
    assert loop.pipeline.steady.keep == 0.0
    assert kept == {"live.gain_mouth": 2.0, "live.head_motion": 2.0, "output.badge_position": "top-left", "audio.offset_ms": 30.0,
                    "live.steady": 0.0}


def test_compositor_blends_only_its_edge_and_gives_the_same_frame_as_a_whole_blend(tiny_model):
    """Copying the inside and blending only the feathered edge is a speed-up, not a change."""
    import cv2

    model = load_model_dir(tiny_model)
    comp = Compositor(model, (320, 180))
    gen = np.random.default_rng(1).integers(0, 255, (model.contract.sketch.height, model.contract.sketch.width, 3), dtype=np.uint8)
    fast = comp.compose(gen).copy()
    crop = np.ascontiguousarray(cv2.resize(gen, (comp.w, comp.h), interpolation=cv2.INTER_LINEAR)[comp._sub])
    whole = comp.base.copy()
    base = np.ascontiguousarray(comp.base[comp.cy0 : comp.cy1, comp.cx0 : comp.cx1])
    whole[comp.cy0 : comp.cy1, comp.cx0 : comp.cx1] = cv2.blendLinear(crop, base, comp.mask, np.ascontiguousarray(1.0 - comp.mask))
    assert np.array_equal(fast, whole)
    assert 1 <= len(comp._bands) <= 4 and comp.mask[comp._inner].min() == 1.0  # a crop cut by the canvas edge has fewer bands


def test_compositor_places_the_face_in_the_plate_with_a_soft_seam(tiny_model):
    model = load_model_dir(tiny_model)
    comp = Compositor(model, (320, 180))
    assert not comp.crop_only
    white = np.full((model.contract.sketch.height, model.contract.sketch.width, 3), 255, np.uint8)
    out = comp.compose(white)
    row = out[comp.cy0 + (comp.cy1 - comp.cy0) // 2, :, 0].astype(int)
    inside = row[(comp.cx0 + comp.cx1) // 2]
    assert inside == 255
    edge = row[comp.cx0 : comp.cx0 + 6]
    assert np.all(np.diff(edge) >= 0) and edge[0] < 200  # ramps up: no hard seam


def test_missing_virtual_camera_driver_gives_the_fix():
    import platform

    try:
        VirtualCameraSink(size=(64, 48), fps=30)
    except SinkError as e:
        msg = e.line()
        if platform.system() == "Linux":
            assert "v4l2loopback" in msg and "exclusive_caps=1" in msg and "Secure Boot" in msg
        return
    pytest.skip("a virtual camera exists on this machine")


def test_real_pipeline_on_the_puppet(tiny_model, tmp_path):
    """Real detector, real ORT engine, real recorder, threaded real-time capture."""
    from live.session import LiveSettings, RunOptions, run_session
    from live.sinks import NullSink, RecorderSink
    from models.config import load_config

    cfg = load_config(None, ["live.engine=ort-cpu"])  # the engine every machine has, so the test means the same everywhere
    src = PuppetSource(seed=2, shape=DRIVER_SHAPE, size=(320, 240), frames=45, realtime=True)
    rec = tmp_path / "out.mp4"
    report = run_session(tiny_model, src, [NullSink(), RecorderSink(rec, size=(1280, 720), fps=30)], LiveSettings.of(cfg),
                         RunOptions(threaded=True, json_path=tmp_path / "r.json"), log=lambda s: None)
    assert report["engine"] == "ort-cpu"
    assert report["frames_out"] + report["frames_dropped"] == 45
    assert report["frames_no_face"] <= 2
    assert rec.is_file() and rec.stat().st_size > 1000 and not list(tmp_path.glob(".*partial*"))
    import json

    saved = json.loads((tmp_path / "r.json").read_text())
    for key in ("fps", "e2e_ms", "overhead_ms", "stages_ms", "frames_dropped", "frames_out"):
        assert key in saved
    assert set(saved["stages_ms"]) >= {"capture_wait", "landmarks", "smoothing", "retarget", "sketch", "inference", "compose", "view",
                                       "watermark", "badge", "output"}


def _frame_count(path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_recording_keeps_time_when_frames_are_skipped(tmp_path):
    from live.sinks import RecorderSink

    rec = RecorderSink(tmp_path / "r.mp4", size=(64, 48), fps=30)
    for i in (0, 1, 2, 6, 7, 12):  # frames 3-5 and 8-11 never reached the sink
        rec.send(np.full((48, 64, 3), 20 * i, np.uint8), 100.0 + i / 30)
    rec.close()
    assert _frame_count(tmp_path / "r.mp4") == 13  # as long as the input: the last picture held in the gaps


def test_a_run_that_drops_frames_records_as_long_as_its_input(tiny_model, tmp_path):
    """Real-time capture, a generator slower than the camera: frames are dropped, and
    the recording still lasts as long as the captured input (within one frame)."""
    from live.sinks import RecorderSink

    clock = WallClock()
    src = StampedSource(clock, frames=45, pace=1 / 30)
    capture = ThreadedCapture(src, log=lambda s: None)
    rec = RecorderSink(tmp_path / "run.mp4", size=OUT, fps=30)
    loop, sink, *_ = make_loop(tiny_model, clock, source=src, capture=capture, engine_cost=0.06, budget_ms=1000, sinks=[rec])
    report = loop.run()
    capture.close()
    loop.sinks.close()
    assert report["frames_dropped"] > 10  # the point of the test: the loop could not keep up
    assert abs(_frame_count(tmp_path / "run.mp4") - 45) <= 1


def test_live_times_each_rung_at_start_and_says_which_it_starts_on(tiny_model, tmp_path):
    """A model with a lighter rung: both are loaded, timed on this machine before the
    first frame, and the choice is logged with the figures."""
    import shutil

    from live.session import LiveSettings, RunOptions, run_session
    from live.sinks import NullSink
    from models.config import load_config

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    shutil.copytree(tiny_model, model / "light")  # the same network stands in for a smaller one: same contract
    logs: list[str] = []
    cfg = load_config(None, ["live.engine=ort-cpu"])
    report = run_session(model, PuppetSource(seed=2, shape=DRIVER_SHAPE, size=(160, 120), frames=20), [NullSink()],
                         LiveSettings.of(cfg), RunOptions(threaded=False), log=logs.append)
    fit = next(line for line in logs if line.startswith("this machine:"))
    assert "main" in fit and "light" in fit and "starting on" in fit
    assert sum(report["frames_by_rung"].values()) == report["frames_out"] - report["frames_repeated"]


def test_the_capture_switches_to_another_source_and_keeps_the_old_one_if_the_new_fails():
    """What the panel's camera picker does: from the next frame on, frames come from the
    new source; a source that will not open leaves the current one running."""
    import time as _time

    from live.capture import ThreadedCapture
    from live.sources import PuppetSource

    a = PuppetSource(seed=1, size=(64, 64), frames=100000, realtime=True, fps=200)
    b = PuppetSource(seed=2, size=(32, 32), frames=100000, realtime=True, fps=200)
    logs: list[str] = []
    cap = ThreadedCapture(a, log=logs.append)
    try:
        assert cap.get(timeout=5).image.shape[:2] == (64, 64)

        def broken():
            raise RuntimeError("no such camera")

        cap.switch(broken)
        _time.sleep(0.1)
        assert cap.get(timeout=5).image.shape[:2] == (64, 64) and any("staying on the current one" in m for m in logs)
        cap.switch(lambda: b)
        deadline = _time.monotonic() + 5
        while cap.get(timeout=5).image.shape[:2] != (32, 32):
            assert _time.monotonic() < deadline, "frames never came from the new source"
        assert cap.reopen is not None  # the new source is also how it comes back after a failure
    finally:
        cap.close()
