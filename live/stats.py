"""Latency statistics: percentiles over a run, in milliseconds."""
from __future__ import annotations

import numpy as np


def summarize_ms(samples_s: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds of durations given in seconds."""
    a = np.asarray(samples_s, dtype=np.float64) * 1000.0
    if a.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2),
            "mean": round(float(a.mean()), 2), "max": round(float(a.max()), 2)}
