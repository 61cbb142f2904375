"""Fitting the machine at start: how long a whole frame takes here with each rung of
the model, and which rung to start on.

Machines differ by 2x and more (a laptop is slower than the machines the models were
measured on), so live measures instead of assuming: during warm-up it runs the whole
pipeline (Face Mesh on a face, retargeting, the sketch, the generator, composition) on
synthetic puppet frames at the capture size, with each rung, and starts on the best
rung that fits the budget with room to spare. ``reenact doctor --model`` prints the
same figures.
"""
from __future__ import annotations

import time

import numpy as np

from live.sources import Frame
from models.puppet import DRIVER_SHAPE, PuppetScript

HEADROOM = 0.75  # a rung fits when a frame takes at most this share of the budget: the rest is capture, output, other apps


def time_rungs(pipeline, frame_size: tuple[int, int], *, frames: int = 10) -> tuple[dict[str, float], dict[str, float]]:
    """(whole frame, generator alone): median milliseconds through ``pipeline`` with each
    of its rungs ("main", and "light" when it has one). The pipeline is reset afterwards."""
    script = PuppetScript(seed=3, shape=DRIVER_SHAPE, size=frame_size)
    images = [script.image(i) for i in range(frames)]  # rendered before timing: not part of a frame's cost
    rungs = [("main", False)] + ([("light", True)] if pipeline.has_light else [])
    frame_ms, generator_ms = {}, {}
    for name, light in rungs:
        pipeline.reset()
        pipeline.recalibrate()
        spent, generator = [], []
        for i, image in enumerate(images):
            t0 = time.perf_counter()
            result = pipeline.process(Frame(image, t0, i, i / 30.0), light=light)
            spent.append(time.perf_counter() - t0)
            generator.append(result.timings.get("inference", 0.0))
        # The first frames start the tracker.
        frame_ms[name] = round(1000 * float(np.median(spent[2:])), 2)
        generator_ms[name] = round(1000 * float(np.median(generator[2:])), 2)
    pipeline.reset()
    pipeline.recalibrate()
    return frame_ms, generator_ms


def choose_start(timings: dict[str, float], budget_ms: float) -> tuple[str, str]:
    """(rung to start on, why): the best rung whose frame fits HEADROOM of the budget,
    else the fastest there is."""
    fits = HEADROOM * budget_ms
    for name in ("main", "light"):
        if name in timings and timings[name] <= fits:
            return name, f"{name} takes {timings[name]:.1f} ms a frame here, within {fits:.0f} ms ({HEADROOM:.0%} of the budget)"
    fastest = min(timings, key=timings.get)
    return fastest, (f"no rung fits {fits:.0f} ms here (fastest: {fastest}, {timings[fastest]:.1f} ms a frame): expect the loop "
                     "to reuse landmarks or repeat frames; a model with a lighter rung, or a smaller capture.width/height, helps")


def describe(timings: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.1f} ms" for name, ms in timings.items())
