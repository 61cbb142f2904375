from __future__ import annotations

import numpy as np
import pytest

from models.smoothing import OneEuroFilter


def test_reduces_jitter_of_a_still_face():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    truth = np.full((478, 3), 100.0)
    out = [f(truth + rng.normal(0, 1.0, truth.shape), i / 30) for i in range(120)]
    raw_jitter = 1.0
    assert np.std(np.stack(out[30:]) - truth) < 0.4 * raw_jitter


def test_follows_fast_motion_with_little_lag():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    slow = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    xs = [np.array([i * 10.0]) for i in range(30)]  # 300 px/s
    out = [f(x, i / 30) for i, x in enumerate(xs)][-1]
    out_slow = [slow(x, i / 30) for i, x in enumerate(xs)][-1]
    lag, lag_slow = xs[-1][0] - out[0], xs[-1][0] - out_slow[0]
    assert lag < 0.25 * lag_slow and lag < 15


def test_first_sample_passes_through_and_reset_forgets():
    f = OneEuroFilter()
    assert np.array_equal(f(np.array([5.0]), 0.0), [5.0])
    f(np.array([6.0]), 0.1)
    f.reset()
    assert np.array_equal(f(np.array([-3.0]), 0.2), [-3.0])


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=0)
