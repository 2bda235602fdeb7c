"""Per-second timeline and phases, bucketed by intended send time."""

from __future__ import annotations

import numpy as np
import pytest

from bench.loadgen.errors import ConfigError
from bench.loadgen.outcomes import OutcomeBuffer, Status
from bench.loadgen.timeline import Phase, parse_phases, per_phase, per_second


def _run() -> OutcomeBuffer:
    """3 s at 100/s; requests intended in [1.0, 1.3) wait for a 300 ms stall; second 2 fails."""
    intended = np.arange(300) / 100
    buf = OutcomeBuffer(intended)
    for i, t in enumerate(intended):
        if t >= 2.0:
            buf.done(i, Status.SHED, 0.0, 0.0005, 0.0005)
        elif 1.0 <= t < 1.3:
            buf.done(i, Status.OK, 0.0, 1.3 - t + 0.001, 0.001, degraded=True, rank=-1)
        else:
            buf.done(i, Status.OK, 0.0, 0.001, 0.001, rank=0)
    return buf


def test_per_second_shows_the_stall_in_the_second_it_delayed() -> None:
    seconds = per_second(_run().freeze(), 3)
    assert [s.label for s in seconds] == ["0", "1", "2"]
    assert seconds[0].p99_ms == pytest.approx(1.0, rel=0.01) and seconds[0].hr10 == 1.0
    assert seconds[1].max_ms == pytest.approx(301, rel=0.01) and seconds[1].degraded == 30
    assert seconds[1].hr10 == 0.7
    assert (seconds[2].ok, seconds[2].errors, seconds[2].shed, seconds[2].p99_ms) == (0, 100, 100, None)
    assert seconds[2].success_ratio == 0.0 and seconds[0].goodput_rps == 100.0


def test_phases_summarise_named_spans() -> None:
    before, during = per_phase(_run().freeze(), [Phase("before", 0, 1), Phase("during", 1, 3)])
    assert (before.offered, before.ok, before.p99_ms) == (100, 100, pytest.approx(1.0, rel=0.01))
    assert (during.offered, during.ok, during.errors) == (200, 100, 100)
    assert during.goodput_rps == 50.0


def test_parse_phases() -> None:
    assert parse_phases("a:0-1, b:1-2.5") == [Phase("a", 0, 1), Phase("b", 1, 2.5)]
    assert parse_phases("") == []
    for bad in ("a:2-1", "a-0-1", "a:x-1"):
        with pytest.raises(ConfigError):
            parse_phases(bad)
