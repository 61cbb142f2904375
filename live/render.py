"""``reenact render DRIVER --out OUT.mp4``: a recorded driver clip re-enacted into a
video file, as live would send it (the same pipeline, badge and watermark), but every
frame generated and in order, not paced to real time, with the driver's sound muxed
in, in sync. An interrupted or failed render leaves no file under the output name."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from live.output import Mode
from live.session import LiveSettings, RunOptions, run_session
from live.sinks import EncodedVideoSink
from live.sources import VideoFileSource
from models.errors import SinkError, UsageError


def render_video(model_dir: str | Path, driver: str | Path, out: str | Path, settings: LiveSettings, *,
                 side_by_side: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Render ``driver`` through the model into ``out`` (an H.264 mp4 with the driver's
    audio). ``side_by_side``: driver | sketch | output, each a square the output's
    height. Returns the session report plus ``out``, ``audio`` and ``interrupted``."""
    from tqdm import tqdm

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise UsageError(f"--out {str(out)!r}: render writes an H.264 .mp4; give a path ending in .mp4")
    if out.resolve() == Path(driver).resolve():
        raise UsageError(f"--out {str(out)!r} is the driver clip itself; give another path")
    source = VideoFileSource(driver, realtime=False)  # flat out: every frame, stamped with its media time
    h = settings.output.height - settings.output.height % 2
    size = (3 * h, h) if side_by_side else (settings.output.width - settings.output.width % 2, h)
    settings = dataclasses.replace(settings, output=dataclasses.replace(settings.output, width=size[0], height=size[1]))
    try:
        sink = EncodedVideoSink(out, size=size, fps=source.fps, audio_from=driver)
    except BaseException:
        source.close()
        raise
    bars = []  # the bar starts with the first frame, so the engine's warm-up does not skew its ETA

    def advance(frame, result) -> None:
        if not bars:
            bars.append(tqdm(total=source.frame_count or None, unit="frame", desc="render", disable=not progress, dynamic_ncols=True))
        bars[0].update(1)

    run = RunOptions(threaded=False, degrade=False, mode=Mode.SIDE_BY_SIDE if side_by_side else Mode.OUTPUT)
    try:
        report = run_session(model_dir, source, [sink], settings, run, log=log, observer=advance)
        for bar in bars:
            bar.close()
        if report.get("sinks_failed"):
            raise SinkError(f"render: writing {str(out)!r} failed (see the log above); no file written")
        if not report.get("interrupted"):
            sink.commit()
    finally:
        for bar in bars:
            bar.close()
        sink.discard()  # nothing happens once committed
    report.update(out=str(out) if not report.get("interrupted") else None, audio=sink.has_audio, frames_written=sink.frames,
                  size=list(size))
    return report
