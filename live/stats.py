"""Latency statistics: per-stage timings over a run and over a rolling window."""
from __future__ import annotations

from collections import deque

import numpy as np
from models.hotpath import per_frame


def summarize_ms(samples_s: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds of durations given in seconds."""
    a = np.asarray(samples_s, dtype=np.float64) * 1000.0
    if a.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2),
            "mean": round(float(a.mean()), 2), "max": round(float(a.max()), 2)}


class StageStats:
    """Timings (seconds) per named stage: all of them for the report, the last
    ``window`` for the live overlay."""

    def __init__(self, window: int = 300) -> None:
        self.all: dict[str, list[float]] = {}
        self.recent: dict[str, deque] = {}
        self.window = window

    @per_frame
    def add(self, name: str, seconds: float) -> None:
        self.all.setdefault(name, []).append(seconds)
        self.recent.setdefault(name, deque(maxlen=self.window)).append(seconds)

    def rolling_ms(self, name: str, q: float = 50) -> float:
        d = self.recent.get(name)
        return float(np.percentile(d, q) * 1000) if d else float("nan")

    def report(self) -> dict[str, dict]:
        return {name: summarize_ms(v) for name, v in self.all.items()}
