"""HdrHistograms: ranges, encode/decode merge, and failures kept out of the success latency."""

from __future__ import annotations

import numpy as np

from bench.loadgen.outcomes import OutcomeBuffer, Outcomes, Status
from bench.loadgen.recorder import RunHistograms, histogram_of, summarize


def _outcomes(latencies_ms: list[float], statuses: list[Status], offset_s: float = 0.0) -> Outcomes:
    buf = OutcomeBuffer(np.arange(len(latencies_ms), dtype=float) * 0.01 + offset_s)
    for i, (lat, status) in enumerate(zip(latencies_ms, statuses, strict=True)):
        if status == Status.DROPPED:
            buf.drop(i)
        else:
            buf.done(i, status, 0.0001, lat / 1e3, lat / 1e3)
    return buf.freeze()


def test_values_are_clamped_to_1us_60s_at_3_digits() -> None:
    s = summarize(histogram_of([0, 1234567, 10**12]))
    assert s.count == 3 and s.max_ms is not None and 59_990 <= s.max_ms <= 60_100
    assert abs(summarize(histogram_of([1234567])).p50_ms - 1234.567) / 1234.567 < 1e-3


def test_merge_of_encoded_parts_equals_the_whole() -> None:
    rng = np.random.default_rng(0)
    a = _outcomes(list(rng.uniform(1, 50, 300)), [Status.OK] * 300)
    b = _outcomes(list(rng.uniform(1, 500, 200)), [Status.OK] * 200, offset_s=0.005)
    merged = RunHistograms.merge([RunHistograms.decode(RunHistograms.of(a).encode()),
                                  RunHistograms.decode(RunHistograms.of(b).encode())])
    whole = RunHistograms.of(Outcomes.concat([a, b]))
    assert merged.summaries() == whole.summaries()
    assert merged.ok.get_total_count() == 500


def test_fast_failures_never_improve_success_p99() -> None:
    slow_ok = _outcomes([100.0] * 100, [Status.OK] * 100)
    with_failures = _outcomes([100.0] * 100 + [0.5] * 900,
                              [Status.OK] * 100 + [Status.SHED] * 900)
    assert (summarize(RunHistograms.of(with_failures).ok).p99_ms
            == summarize(RunHistograms.of(slow_ok).ok).p99_ms)
    assert RunHistograms.of(with_failures).failed.get_total_count() == 900


def test_dropped_requests_are_counted_not_recorded() -> None:
    o = _outcomes([5.0, 5.0, 0.0], [Status.OK, Status.ERROR, Status.DROPPED])
    h = RunHistograms.of(o)
    assert (h.ok.get_total_count(), h.failed.get_total_count(), h.lag.get_total_count()) == (1, 1, 2)
    assert o.count(Status.DROPPED) == 1
