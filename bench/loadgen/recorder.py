"""HdrHistograms of a run (1 µs to 60 s, 3 significant digits) and how they merge.

Four histograms, so that fast failures never improve the latency of successes:

- ``ok``: successful answers, latency from the *intended* send time;
- ``service``: successful answers, from the actual send time (what a closed-loop client sees);
- ``lag``: actual minus intended send time, for every sent request (the generator's honesty);
- ``failed``: errors, sheds and timeouts, latency from the intended send time.

Dropped requests have no latency; they are counted, never recorded. Generator processes
merge with :meth:`RunHistograms.encode` → :meth:`RunHistograms.decode` → :meth:`RunHistograms.merge`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.loadgen.outcomes import Outcomes, Status

__all__ = ["HIGHEST_US", "LOWEST_US", "SIGNIFICANT_DIGITS", "LatencySummary", "RunHistograms",
           "histogram_of", "new_histogram", "summarize"]

LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS = 1, 60_000_000, 3
_NAMES = ("ok", "service", "lag", "failed")


def new_histogram() -> HdrHistogram:
    """An empty histogram over 1 µs .. 60 s at 3 significant digits."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def histogram_of(values_us: Iterable[int] | np.ndarray) -> HdrHistogram:
    """A histogram of microsecond values, clamped into the trackable range.

    Example:
        >>> histogram_of([0, 5, 10**9]).get_max_value() >= 60_000_000
        True
    """
    hist = new_histogram()
    clipped = np.clip(np.asarray(values_us, dtype=np.int64), LOWEST_US, HIGHEST_US)
    values, counts = np.unique(clipped, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        hist.record_value(value, count)
    return hist


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one histogram, in milliseconds (None when it is empty)."""

    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    mean_ms: float | None


def summarize(hist: HdrHistogram) -> LatencySummary:
    """p50/p90/p99/p99.9/max/mean of ``hist`` in ms."""
    count = hist.get_total_count()
    if count == 0:
        return LatencySummary(0, None, None, None, None, None, None)

    def ms(value_us: float) -> float:
        return round(value_us / 1e3, 3)

    pct = hist.get_percentile_to_value_dict([50, 90, 99, 99.9])
    return LatencySummary(count, ms(pct[50]), ms(pct[90]), ms(pct[99]), ms(pct[99.9]),
                          ms(hist.get_max_value()), ms(hist.get_mean_value()))


@dataclass(frozen=True, eq=False)
class RunHistograms:
    """The four histograms of one run (or of several merged generator processes)."""

    ok: HdrHistogram
    service: HdrHistogram
    lag: HdrHistogram
    failed: HdrHistogram

    @staticmethod
    def of(outcomes: Outcomes) -> RunHistograms:
        """Build the histograms from per-request outcomes."""
        ok = outcomes.status == Status.OK
        failed = np.isin(outcomes.status, [Status.ERROR, Status.SHED, Status.TIMEOUT])
        sent = outcomes.status != Status.DROPPED
        return RunHistograms(histogram_of(outcomes.latency_us[ok]),
                             histogram_of(outcomes.service_us[ok]),
                             histogram_of(outcomes.lag_us[sent]),
                             histogram_of(outcomes.latency_us[failed]))

    def encode(self) -> dict[str, str]:
        """Compressed, base64 HdrHistogram encodings by name (safe to pickle or JSON)."""
        return {name: getattr(self, name).encode().decode("ascii") for name in _NAMES}

    @staticmethod
    def decode(encoded: Mapping[str, str]) -> RunHistograms:
        """The inverse of :meth:`encode`."""
        return RunHistograms(*(HdrHistogram.decode(encoded[name].encode("ascii"))
                               for name in _NAMES))

    @staticmethod
    def merge(parts: Iterable[RunHistograms]) -> RunHistograms:
        """Sum of several runs' histograms (e.g. one per generator process)."""
        out = RunHistograms(*(new_histogram() for _ in _NAMES))
        for part in parts:
            for name in _NAMES:
                getattr(out, name).add(getattr(part, name))
        return out

    def summaries(self) -> dict[str, LatencySummary]:
        """:func:`summarize` of each histogram, by name."""
        return {name: summarize(getattr(self, name)) for name in _NAMES}
