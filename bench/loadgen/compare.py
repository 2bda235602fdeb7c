"""One contender's measured curve, the ratios between contenders, and the issue's goals:
pure functions over frozen records, printed and written, never asserted in a test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.loadgen.saturation import Step

__all__ = ["ContenderRecord", "Goal", "goals", "ratios"]


@dataclass(frozen=True)
class ContenderRecord:
    """What the suite measured for one contender (``saturation`` None: never met the SLO)."""

    name: str
    transport: str
    steps: tuple[Step, ...] = ()
    saturation: Step | None = None
    half: Step | None = None
    double: Step | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def saturation_rps(self) -> float | None:
        """Goodput at saturation."""
        return None if self.saturation is None else self.saturation.goodput_rps

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "transport": self.transport,
                "saturation_rps": self.saturation_rps,
                "saturation": None if self.saturation is None else asdict(self.saturation),
                "half": None if self.half is None else asdict(self.half),
                "double": None if self.double is None else asdict(self.double),
                "steps": [asdict(s) for s in self.steps], "error": self.error, **self.extra}


@dataclass(frozen=True)
class Goal:
    """One goal of the issue: what it asks, what was measured, whether it was met."""

    name: str
    target: str
    measured: float | None
    met: bool | None


def _by_name(records: Sequence[ContenderRecord]) -> dict[str, ContenderRecord]:
    return {r.name: r for r in records}


def ratios(records: Sequence[ContenderRecord], baselines: Sequence[str] = (
        "flask-torch", "fastapi-ort", "raw-ort")) -> dict[str, dict[str, float | None]]:
    """Saturation of each contender divided by each baseline's (None where either is missing).

    Example:
        >>> a = ContenderRecord("a", "http", saturation=Step(10, 10, 1, 1, 2, 3, 0, 0, True))
        >>> b = ContenderRecord("b", "http", saturation=Step(40, 40, 1, 1, 2, 3, 0, 0, True))
        >>> ratios([a, b], baselines=["a"])["b"]
        {'a': 4.0}
    """
    named = _by_name(records)
    out: dict[str, dict[str, float | None]] = {}
    for rec in records:
        row: dict[str, float | None] = {}
        for base in baselines:
            base_rps = named[base].saturation_rps if base in named else None
            row[base] = (round(rec.saturation_rps / base_rps, 2)
                         if rec.saturation_rps and base_rps else None)
        out[rec.name] = row
    return out


def _best(records: Sequence[ContenderRecord], prefix: str) -> ContenderRecord | None:
    mine = [r for r in records if r.name.startswith(prefix) and r.saturation is not None]
    return max(mine, key=lambda r: r.saturation_rps or 0.0, default=None)


def goals(records: Sequence[ContenderRecord], subject_prefix: str = "recdrill") -> list[Goal]:
    """The issue's goals for the best contender named ``recdrill*`` (its chosen path)."""
    me, named = _best(records, subject_prefix), _by_name(records)
    flask, fastapi = named.get("flask-torch"), named.get("fastapi-ort")

    def ratio(base: ContenderRecord | None) -> float | None:
        if me is None or base is None or not base.saturation_rps or me.saturation_rps is None:
            return None
        return round(me.saturation_rps / base.saturation_rps, 2)

    def check(value: float | None, ok: bool) -> bool | None:
        return None if value is None else ok

    vs_flask, vs_fastapi = ratio(flask), ratio(fastapi)
    p99_ok = (me is not None and flask is not None and me.saturation is not None
              and flask.saturation is not None
              and (me.saturation.p99_ms or 0) <= (flask.saturation.p99_ms or 0))
    tail = (round(me.half.p99_ms / me.half.p50_ms, 2) if me and me.half and me.half.p50_ms
            and me.half.p99_ms is not None else None)
    keep = (round(me.double.goodput_rps / me.saturation_rps, 3) if me and me.double
            and me.saturation_rps else None)
    return [
        Goal("saturation vs flask-torch", ">= 5x at equal or lower p99", vs_flask,
             check(vs_flask, vs_flask is not None and vs_flask >= 5 and p99_ok)),
        Goal("saturation vs fastapi-ort", ">= 1.0x", vs_fastapi,
             check(vs_fastapi, vs_fastapi is not None and vs_fastapi >= 1.0)),
        Goal("p99/p50 at 50% of saturation", "<= 3", tail, check(tail, tail is not None and tail <= 3)),
        Goal("goodput at 2x saturation / saturation", ">= 0.9", keep,
             check(keep, keep is not None and keep >= 0.9)),
    ]
