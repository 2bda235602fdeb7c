"""Schedules are fixed before the run: counts, spacing, seeds, splitting across generators."""

from __future__ import annotations

import numpy as np
import pytest

from bench.loadgen.errors import ConfigError
from bench.loadgen.schedule import constant, make_schedule, poisson, rate_steps


def test_constant_is_evenly_spaced() -> None:
    s = constant(100, 2)
    assert len(s) == 200 and s.offsets_s[0] == 0.0
    assert np.allclose(np.diff(s.offsets_s), 0.01)


def test_poisson_is_seeded_sorted_and_near_its_rate() -> None:
    a, b, c = poisson(500, 10, seed=1), poisson(500, 10, seed=1), poisson(500, 10, seed=2)
    assert np.array_equal(a.offsets_s, b.offsets_s) and not np.array_equal(a.offsets_s, c.offsets_s)
    assert np.all(np.diff(a.offsets_s) >= 0) and a.offsets_s.max() < 10
    assert abs(len(a) - 5000) < 5 * np.sqrt(5000)


def test_split_deals_round_robin_and_keeps_intended_times() -> None:
    s = poisson(300, 1, seed=3)
    parts = s.split(3)
    merged = np.sort(np.concatenate([p.offsets_s for p in parts]))
    assert np.array_equal(merged, s.offsets_s)
    assert [p.rate_rps for p in parts] == [100.0] * 3


def test_rate_steps_and_bad_settings() -> None:
    assert rate_steps(50, 2, 400) == [50.0, 100.0, 200.0, 400.0]
    with pytest.raises(ConfigError):
        rate_steps(50, 1, 400)
    with pytest.raises(ConfigError):
        constant(0, 1)
    with pytest.raises(ConfigError, match="constant"):
        make_schedule("burst", 10, 1)
