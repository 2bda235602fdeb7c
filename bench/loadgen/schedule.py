"""Open-loop arrival schedules, fixed (and seeded) before a run starts.

A schedule is only a sorted array of intended send offsets in seconds from the run's start:
the dispatcher fires request ``i`` at ``start + offsets_s[i]`` whatever happened to earlier
requests, which is what keeps latency honest (no coordinated omission).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.loadgen.errors import ConfigError

__all__ = ["Schedule", "constant", "make_schedule", "poisson", "rate_steps"]

Kind = Literal["constant", "poisson"]


@dataclass(frozen=True, eq=False)
class Schedule:
    """Intended send offsets (seconds from start, non-decreasing) and how they were made."""

    offsets_s: np.ndarray
    rate_rps: float
    duration_s: float
    kind: str
    seed: int | None = None

    def __len__(self) -> int:
        return len(self.offsets_s)

    def split(self, parts: int) -> list[Schedule]:
        """Deal the requests round-robin to ``parts`` generators; intended times are kept.

        Example:
            >>> [len(s) for s in constant(10, 1).split(3)]
            [4, 3, 3]
        """
        if parts < 1:
            raise ConfigError(f"parts must be >= 1, found {parts}")
        return [Schedule(self.offsets_s[i::parts], self.rate_rps / parts, self.duration_s,
                         self.kind, self.seed) for i in range(parts)]


def _check(rate_rps: float, duration_s: float) -> None:
    if not rate_rps > 0 or not duration_s > 0:
        raise ConfigError(f"rate_rps and duration_s must be > 0, found {rate_rps} and {duration_s}")


def constant(rate_rps: float, duration_s: float) -> Schedule:
    """Evenly spaced sends: ``rate_rps * duration_s`` requests, the first at 0.

    Example:
        >>> constant(4, 1).offsets_s.tolist()
        [0.0, 0.25, 0.5, 0.75]
    """
    _check(rate_rps, duration_s)
    n = round(rate_rps * duration_s)
    return Schedule(np.arange(n, dtype=np.float64) / rate_rps, rate_rps, duration_s, "constant")


def poisson(rate_rps: float, duration_s: float, seed: int = 0) -> Schedule:
    """Poisson arrivals (exponential gaps) inside ``[0, duration_s)``, reproducible by seed.

    Example:
        >>> bool(np.array_equal(poisson(50, 2, 7).offsets_s, poisson(50, 2, 7).offsets_s))
        True
    """
    _check(rate_rps, duration_s)
    rng = np.random.default_rng(seed)
    expected = rate_rps * duration_s
    n_draw = int(expected + 10 * np.sqrt(expected) + 10)
    times = np.cumsum(rng.exponential(1.0 / rate_rps, size=n_draw))
    while times[-1] < duration_s:  # pragma: no cover - 10 sigma short
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate_rps, n_draw))])
    return Schedule(times[times < duration_s], rate_rps, duration_s, "poisson", seed)


def make_schedule(kind: str, rate_rps: float, duration_s: float, seed: int = 0) -> Schedule:
    """A schedule by name: ``constant`` or ``poisson``."""
    if kind == "constant":
        return constant(rate_rps, duration_s)
    if kind == "poisson":
        return poisson(rate_rps, duration_s, seed)
    raise ConfigError(f"schedule kind must be 'constant' or 'poisson', found {kind!r}")


def rate_steps(start_rps: float, factor: float, max_rps: float) -> list[float]:
    """Offered rates for a saturation search: ``start, start*factor, ...`` up to ``max_rps``.

    Example:
        >>> rate_steps(100, 2, 1000)
        [100.0, 200.0, 400.0, 800.0]
    """
    if not start_rps > 0 or not factor > 1 or max_rps < start_rps:
        raise ConfigError(f"need start_rps > 0, factor > 1, max_rps >= start_rps; found "
                          f"{start_rps}, {factor}, {max_rps}")
    out, rate = [], float(start_rps)
    while rate <= max_rps * (1 + 1e-9):
        out.append(round(rate, 6))
        rate *= factor
    return out
