"""Reading video files: the one place that opens a user's video.

A video a user gives is untrusted: it may be missing, a folder, empty, an image, random
bytes or a codec OpenCV lacks. ``open_video`` checks all of that and raises the
caller's error family (``error=``) with one line naming the file; ``frames`` then yields
every decodable frame in order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from models.errors import ReenactError, SourceError


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float  # nominal frames per second (30 when the file does not say)
    size: tuple[int, int]  # (width, height) of the first frame
    frames_reported: int  # the container's frame count; may be wrong or 0


def check_video_path(path: str | Path, *, error: type[ReenactError] = SourceError) -> Path:
    """``path`` as an existing, non-empty file that is not a still image."""
    p = Path(path)
    if not p.exists():
        raise error(f"video {str(p)!r} does not exist")
    if not p.is_file():
        raise error(f"video {str(p)!r} is a directory, not a video file")
    if p.stat().st_size == 0:
        raise error(f"video {str(p)!r} is empty (0 bytes)")
    if cv2.haveImageReader(str(p)):
        raise error(f"{str(p)!r} is an image, not a video: give a video of the face (mp4, mov, webm, ...)")
    return p


def open_video(path: str | Path, *, error: type[ReenactError] = SourceError) -> tuple[cv2.VideoCapture, VideoInfo]:
    """A capture positioned at the first frame, and the video's facts. The first frame
    is decoded once to prove the file is a video, then the file is opened afresh (a
    seek back is unreliable for very short files)."""
    p = check_video_path(path, error=error)
    cap = cv2.VideoCapture(str(p))
    ok, first = cap.read() if cap.isOpened() else (False, None)
    fps, count = float(cap.get(cv2.CAP_PROP_FPS) or 0.0), int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    if not ok or first is None or first.ndim != 3:
        raise error(f"video {str(p)!r} cannot be decoded: it is not a video, is corrupt, or uses a codec OpenCV lacks")
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 30.0
    info = VideoInfo(p, fps, (int(first.shape[1]), int(first.shape[0])), max(count, 0))
    return cv2.VideoCapture(str(p)), info


def frames(path: str | Path, *, error: type[ReenactError] = SourceError) -> Iterator[np.ndarray]:
    """Every decodable frame of a video, BGR uint8 (H, W, 3), in order."""
    cap, _ = open_video(path, error=error)
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                return
            yield img
    finally:
        cap.release()


def write_video(path: str | Path, images: Iterable[np.ndarray], fps: float, *, error: type[ReenactError] = SourceError) -> int:
    """Write BGR frames to an mp4 (mp4v), atomically: under a hidden name until the last
    frame is in, so an interrupted write leaves no file that looks complete. Returns
    the number of frames written."""
    from models.files import atomic_path

    n = 0
    with atomic_path(path, suffix=".partial.mp4") as tmp:
        writer = None
        try:
            for img in images:
                if writer is None:
                    h, w = img.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise error(f"cannot write video {str(path)!r}")
                writer.write(img)
                n += 1
        finally:
            if writer is not None:
                writer.release()
        if writer is None:
            raise error(f"no frames to write to {str(path)!r}")
    return n
