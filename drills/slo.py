"""Did the steady-state hypothesis hold? Pure tolerance checks over measured windows.

Each SLO of a scenario is judged once per phase it names ("faults" expands to every fault's
window) and yields a :class:`Verdict`. Nothing is faked: a quantity that was not measured (an
empty phase, no successful answers, no baseline) gives ``held=False`` with a detail that says
what is missing. Recovery (RTO) is read off the per-second timeline; facts are what a fault
recorded with its proof.

Example:
    >>> from bench.loadgen.timeline import WindowStats
    >>> s = Scenario.model_validate({"title": "t", "load": {"rate_rps": 50, "duration_s": 20},
    ...     "method": [{"fault": "kill-replica", "at_s": 8}],
    ...     "steady_state_hypothesis": {"slos": [{"kind": "success_ratio", "min": 0.99,
    ...                                           "phases": ["kill-replica"]}]}})
    >>> w = WindowStats("kill-replica", 8, 18, 500, 480, 20, 0, 0, 0, 0, 48.0,
    ...                 2.0, 9.0, 12.0, None, None, 0)
    >>> [v] = evaluate(s, {"kill-replica": w}, [], {"kill-replica": (8, 18)}, {})
    >>> v.held, v.detail
    (False, '0.9600 (20 of 500 requests failed: 20 errors; budget 5)')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.loadgen.timeline import WindowStats
from drills.scenario import (
    P99SLO,
    AbortCondition,
    DegradedShareSLO,
    FactSLO,
    NdcgSLO,
    RecoverySLO,
    Scenario,
    SearchNdcgSLO,
    SuccessRatioSLO,
)

__all__ = [
    "Verdict",
    "abort_due",
    "evaluate",
    "expand_phases",
    "held",
    "recovery_time_s",
    "worst_breach",
]

# how many times over its budget a breach may be reported; keeps `miss` finite for JSON
_MISS_CAP = 1000.0
_EPS = 1e-9


@dataclass(frozen=True)
class Verdict:
    """One SLO judged on one phase.

    ``miss`` says how many times over its budget a measured breach went (failed requests over
    the allowed failures, p99 over its bound, ...; capped at 1000); it is None when the SLO
    held or when the quantity was not measured.

    Example:
        >>> Verdict("p99 <= 100 ms", "p99_ms", "baseline", 42.0, "<= 100 ms", True,
        ...         "42.0 ms, within 100.0 ms").held
        True
    """

    slo: str
    kind: str
    phase: str
    observed: float | bool | str | None
    limit: str
    held: bool
    detail: str
    miss: float | None = None


@dataclass(frozen=True)
class _Inputs:
    phases: Mapping[str, WindowStats]
    timeline: Sequence[WindowStats]
    fault_windows: Mapping[str, tuple[float, float]]
    facts: Mapping[str, Mapping[str, Any]]
    faults: tuple[str, ...]


def expand_phases(slo_phases: Iterable[str], fault_names: Iterable[str]) -> list[str]:
    """Phase names an SLO judges: "faults" becomes every fault's name; duplicates dropped.

    Example:
        >>> expand_phases(["baseline", "faults", "kill-node"], ["kill-node", "overload"])
        ['baseline', 'kill-node', 'overload']
    """
    faults = list(fault_names)
    out: list[str] = []
    for phase in slo_phases:
        for name in faults if phase == "faults" else [phase]:
            if name not in out:
                out.append(name)
    return out


def evaluate(scenario: Scenario, phases: Mapping[str, WindowStats],
             timeline: Sequence[WindowStats], fault_windows: Mapping[str, tuple[float, float]],
             facts: Mapping[str, Mapping[str, Any]]) -> list[Verdict]:
    """Every SLO of ``scenario`` on every phase it names, in the scenario's order.

    ``phases`` maps a phase name to its window, ``timeline`` is per second, ``fault_windows``
    maps a fault to ``(at_s, end_s)`` and ``facts`` a fault to what it recorded.
    """
    inputs = _Inputs(phases, timeline, fault_windows, facts, tuple(scenario.fault_names()))
    return [_JUDGES[type(slo)](slo, phase, inputs)
            for slo in scenario.steady_state_hypothesis.slos
            for phase in expand_phases(slo.phases, inputs.faults)]


def recovery_time_s(timeline: Sequence[WindowStats], at_s: float, success_min: float,
                    window_s: int, p99_ms: float | None = None) -> float | None:
    """Seconds from ``at_s`` until the first of ``window_s`` consecutive good seconds.

    A good second is a full one starting at or after ``floor(at_s)``, with requests offered,
    success ≥ ``success_min`` and (when given) p99 ≤ ``p99_ms``. A service that never
    degraded recovers in 0.0 s; None when it never regained steady state in the timeline.

    Example:
        >>> from bench.loadgen.timeline import WindowStats
        >>> def sec(s, ok):
        ...     return WindowStats(str(s), s, s + 1, 10, ok, 10 - ok, 0, 0, 0, 0, ok, 1.0,
        ...                        2.0, 3.0, None, None, 0)
        >>> tl = [sec(s, 0 if 8 <= s < 11 else 10) for s in range(20)]
        >>> recovery_time_s(tl, 8.0, 0.999, 3), recovery_time_s(tl, 8.0, 0.999, 30)
        (3.0, None)
    """
    first = math.floor(at_s)
    run_start: float | None = None
    run, previous = 0, None
    for second in sorted((w for w in timeline if w.start_s >= first), key=lambda w: w.start_s):
        contiguous = previous is not None and abs(second.start_s - previous) < _EPS
        good = (second.end_s - second.start_s >= 1 - _EPS and _good_second(second, success_min,
                                                                           p99_ms))
        if not good:
            run, run_start = 0, None
        elif run and contiguous:
            run += 1
        else:
            run, run_start = 1, second.start_s
        previous = second.end_s
        if run >= window_s and run_start is not None:
            return round(max(0.0, run_start - at_s), 3)
    return None


def abort_due(timeline: Sequence[WindowStats],
              conditions: Sequence[AbortCondition]) -> AbortCondition | None:
    """The first condition whose last ``for_s`` seconds all had success under its threshold.

    Example:
        >>> from bench.loadgen.timeline import WindowStats
        >>> bad = WindowStats("9", 9, 10, 10, 2, 8, 0, 0, 0, 0, 2.0, 1.0, 2.0, 3.0, None,
        ...                   None, 0)
        >>> abort_due([bad, bad], [AbortCondition(success_below=0.5, for_s=2)]).for_s
        2
    """
    for condition in conditions:
        last = list(timeline[-condition.for_s:]) if condition.for_s <= len(timeline) else []
        if last and all(w.offered > 0 and w.ok / w.offered < condition.success_below
                        for w in last):
            return condition
    return None


def held(verdicts: Iterable[Verdict]) -> bool:
    """True when every verdict held; False for no verdicts (nothing judged is not a pass).

    Example:
        >>> held([]), held([Verdict("x", "fact", "f", 1, "<= 1", True, "")])
        (False, True)
    """
    judged = list(verdicts)
    return bool(judged) and all(v.held for v in judged)


def worst_breach(verdicts: Iterable[Verdict]) -> str | None:
    """One line naming the SLO that broke worst and by how much; None when all held.

    Measured breaches rank by ``miss`` (times over budget), ahead of unmeasured ones.

    Example:
        >>> v = Verdict("success ratio >= 0.999", "success_ratio", "kill-node", 0.9071,
        ...             ">= 0.999", False, "0.9071 (1,115 of 12,000 requests failed)", 92.9)
        >>> worst_breach([v])
        'success ratio >= 0.999 broke in kill-node: 0.9071 (1,115 of 12,000 requests failed)'
    """
    broken = [v for v in verdicts if not v.held]
    if not broken:
        return None
    worst = max(broken, key=lambda v: (v.miss is not None, v.miss or 0.0))
    where = "over the whole drill" if worst.phase == "whole" else f"in {worst.phase}"
    what = "broke" if worst.miss is not None else "was not measured"
    return f"{worst.slo} {what} {where}: {worst.detail}"


# --- judges: one per SLO kind ------------------------------------------------------------


def _success_ratio(slo: SuccessRatioSLO, phase: str, inp: _Inputs) -> Verdict:
    name, limit = slo.name or f"success ratio >= {slo.min:g}", f">= {slo.min:g}"
    w = inp.phases.get(phase)
    if w is None or w.offered == 0:
        return _unmeasured(name, slo.kind, phase, limit, _no_window(w, phase))
    failed = w.offered - w.ok
    budget = math.floor(w.offered * (1 - slo.min) + _EPS)
    ok = w.ok / w.offered >= slo.min - _EPS
    detail = (f"{w.success_ratio:.4f} ({failed:,} of {w.offered:,} requests failed"
              f"{_breakdown(w)}; budget {budget:,})")
    return Verdict(name, slo.kind, phase, w.success_ratio, limit, ok, detail,
                   None if ok else _over(failed, budget))


def _p99(slo: P99SLO, phase: str, inp: _Inputs) -> Verdict:
    name = slo.name or "p99 <= " + " and ".join(
        ([f"{slo.max_ms:g} ms"] if slo.max_ms is not None else [])
        + ([f"{slo.max_ratio:g}x baseline"] if slo.max_ratio is not None else []))
    base = inp.phases.get("baseline")
    base_p99 = base.p99_ms if base is not None else None
    limits, bounds = [], []
    if slo.max_ms is not None:
        limits.append(f"<= {slo.max_ms:g} ms")
        bounds.append(slo.max_ms)
    if slo.max_ratio is not None:
        if base_p99 is None:
            limits.append(f"<= {slo.max_ratio:g}x baseline (not measured)")
        else:
            limits.append(f"<= {slo.max_ratio:g}x baseline ({base_p99:.1f} ms)")
            bounds.append(slo.max_ratio * base_p99)
    limit = " and ".join(limits)
    w = inp.phases.get(phase)
    if w is None or w.offered == 0:
        return _unmeasured(name, slo.kind, phase, limit, _no_window(w, phase))
    if w.p99_ms is None:
        return _unmeasured(name, slo.kind, phase, limit, f"no successful answers in {phase} "
                           f"(0 of {w.offered:,}); p99 not measured")
    bound = min(bounds) if bounds else None
    if slo.max_ratio is not None and base_p99 is None and (bound is None or w.p99_ms <= bound):
        return _unmeasured(name, slo.kind, phase, limit, f"{w.p99_ms:.1f} ms, but the baseline "
                           f"p99 was not measured, so {slo.max_ratio:g}x baseline cannot be "
                           "checked", observed=w.p99_ms)
    assert bound is not None  # a bound exists: max_ms, or max_ratio with a measured baseline
    ok = w.p99_ms <= bound + _EPS
    detail = (f"{w.p99_ms:.1f} ms, within {bound:.1f} ms" if ok
              else f"{w.p99_ms:.1f} ms, {w.p99_ms / bound:.2f}x the {bound:.1f} ms bound")
    return Verdict(name, slo.kind, phase, w.p99_ms, limit, ok, detail,
                   None if ok else _over(w.p99_ms, bound))


def _ndcg(slo: NdcgSLO, phase: str, inp: _Inputs) -> Verdict:
    name = slo.name or f"NDCG@10 >= {slo.min_ratio:g}x baseline"
    base = inp.phases.get("baseline")
    base_ndcg = base.ndcg10 if base is not None else None
    limit = f">= {slo.min_ratio:g}x baseline" + (f" ({base_ndcg:.4f})" if base_ndcg else "")
    w = inp.phases.get(phase)
    if w is None or w.offered == 0:
        return _unmeasured(name, slo.kind, phase, limit, _no_window(w, phase))
    if w.ndcg10 is None:
        return _unmeasured(name, slo.kind, phase, limit,
                           f"NDCG@10 not measured in {phase} (no scored answers)")
    return _against_baseline(name, slo.kind, phase, limit, slo.min_ratio, "NDCG@10",
                             w.ndcg10, base_ndcg, f"{w.scored:,} scored answers")


def _search_ndcg(slo: SearchNdcgSLO, phase: str, inp: _Inputs) -> Verdict:
    name = slo.name or f"search NDCG@10 >= {slo.min_ratio:g}x baseline"
    base = inp.phases.get("baseline")
    base_ndcg = base.search_ndcg10 if base is not None else None
    limit = f">= {slo.min_ratio:g}x baseline" + (f" ({base_ndcg:.4f})" if base_ndcg else "")
    w = inp.phases.get(phase)
    if w is None or w.offered == 0:
        return _unmeasured(name, slo.kind, phase, limit, _no_window(w, phase))
    if w.searches == 0:
        return _unmeasured(name, slo.kind, phase, limit, f"no searches were offered in {phase} "
                           f"(0 of {w.offered:,} requests); search NDCG@10 not measured")
    if w.search_ndcg10 is None:
        return _unmeasured(name, slo.kind, phase, limit,
                           f"search NDCG@10 not measured in {phase} (no scored search answers; "
                           f"{w.search_ok:,} of {w.searches:,} searches answered)")
    recall = "" if w.search_recall10 is None else f"Recall@10 {w.search_recall10:.4f}, "
    return _against_baseline(name, slo.kind, phase, limit, slo.min_ratio, "search NDCG@10",
                             w.search_ndcg10, base_ndcg,
                             f"{recall}{w.search_scored:,} scored searches")


def _against_baseline(name: str, kind: str, phase: str, limit: str, min_ratio: float,
                      what: str, observed: float, base: float | None, counted: str) -> Verdict:
    """A quality held to ``min_ratio`` of its baseline; unmeasured without a baseline."""
    if not base:
        why = "was not measured" if base is None else "is 0, so the ratio is undefined"
        return _unmeasured(name, kind, phase, limit, f"baseline {what} {why}")
    ratio = round(observed / base, 4)
    ok = ratio >= min_ratio - _EPS
    detail = f"{ratio:g}x baseline ({observed:.4f} vs {base:.4f}, {counted})"
    return Verdict(name, kind, phase, ratio, limit, ok, detail,
                   None if ok else _over(min_ratio, ratio))


def _degraded_share(slo: DegradedShareSLO, phase: str, inp: _Inputs) -> Verdict:
    name, limit = slo.name or f"degraded share <= {slo.max:g}", f"<= {slo.max:g}"
    w = inp.phases.get(phase)
    if w is None or w.offered == 0:
        return _unmeasured(name, slo.kind, phase, limit, _no_window(w, phase))
    if w.ok == 0:
        return _unmeasured(name, slo.kind, phase, limit, f"no successful answers in {phase} "
                           f"(0 of {w.offered:,}); degraded share not measured")
    share = round(w.degraded / w.ok, 4)
    ok = w.degraded / w.ok <= slo.max + _EPS
    detail = f"{share:g} ({w.degraded:,} of {w.ok:,} answers from the fallback tier)"
    return Verdict(name, slo.kind, phase, share, limit, ok, detail,
                   None if ok else _over(share, slo.max))


def _recovery(slo: RecoverySLO, phase: str, inp: _Inputs) -> Verdict:
    name, limit = slo.name or f"recovery <= {slo.max_s:g} s", f"<= {slo.max_s:g} s"
    if phase not in inp.faults:
        return _unmeasured(name, slo.kind, phase, limit, f"recovery is judged per fault; "
                           f"{phase!r} is not a fault")
    window = inp.fault_windows.get(phase)
    if window is None:
        return _unmeasured(name, slo.kind, phase, limit, f"fault {phase} was not injected "
                           "(no fault window)")
    at_s = window[0]
    steady = (f"{slo.window_s} consecutive seconds with success >= {slo.success_min:g}"
              + (f" and p99 <= {slo.p99_ms:g} ms" if slo.p99_ms is not None else ""))
    if not any(w.start_s >= math.floor(at_s) for w in inp.timeline):
        return _unmeasured(name, slo.kind, phase, limit, f"no timeline after the fault at "
                           f"{at_s:g} s")
    rto = recovery_time_s(inp.timeline, at_s, slo.success_min, slo.window_s, slo.p99_ms)
    if rto is None:
        end = max(w.end_s for w in inp.timeline)
        if end - at_s < slo.max_s:
            return _unmeasured(name, slo.kind, phase, limit, f"not regained {steady} by the "
                               f"end at {end:g} s, {end - at_s:g} s after the fault at "
                               f"{at_s:g} s: too soon to tell")
        return Verdict(name, slo.kind, phase, None, limit, False, f"never: no {steady} from "
                       f"{at_s:g} s to the end at {end:g} s", _over(end - at_s, slo.max_s))
    ok = rto <= slo.max_s + _EPS
    detail = f"{rto:g} s (regained {steady} at {at_s + rto:g} s; fault at {at_s:g} s)"
    return Verdict(name, slo.kind, phase, rto, limit, ok, detail,
                   None if ok else _over(rto, slo.max_s))


def _fact(slo: FactSLO, phase: str, inp: _Inputs) -> Verdict:
    checks = ([f"== {slo.equals}"] if slo.equals is not None else []) + \
        ([f">= {slo.min:g}"] if slo.min is not None else []) + \
        ([f"<= {slo.max:g}"] if slo.max is not None else [])
    limit = " and ".join(checks)
    name = slo.name or f"{slo.fact} {limit}"
    if phase not in inp.faults:
        return _unmeasured(name, slo.kind, phase, limit, f"facts are recorded per fault; "
                           f"{phase!r} is not a fault")
    recorded = inp.facts.get(phase, {})
    if slo.fact not in recorded:
        return _unmeasured(name, slo.kind, phase, limit,
                           f"fault {phase} recorded no fact {slo.fact}")
    value = recorded[slo.fact]
    observed = value if value is None or isinstance(value, float | int | str) else str(value)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if (slo.min is not None or slo.max is not None) and not numeric:
        return Verdict(name, slo.kind, phase, observed, limit, False,
                       f"{slo.fact} = {value!r} is not a number", _MISS_CAP)
    misses = []
    if slo.equals is not None and not (type(value) is type(slo.equals) and value == slo.equals):
        misses.append(_MISS_CAP)
    if slo.min is not None and value < slo.min - _EPS:
        misses.append(_over(slo.min, value))
    if slo.max is not None and value > slo.max + _EPS:
        misses.append(_over(value, slo.max))
    return Verdict(name, slo.kind, phase, observed, limit, not misses,
                   f"{slo.fact} = {value!r}", max(misses) if misses else None)


_JUDGES: dict[type, Callable[[Any, str, _Inputs], Verdict]] = {
    SuccessRatioSLO: _success_ratio,
    P99SLO: _p99,
    NdcgSLO: _ndcg,
    SearchNdcgSLO: _search_ndcg,
    DegradedShareSLO: _degraded_share,
    RecoverySLO: _recovery,
    FactSLO: _fact,
}


def _unmeasured(name: str, kind: str, phase: str, limit: str, detail: str,
                observed: float | None = None) -> Verdict:
    return Verdict(name, kind, phase, observed, limit, False, detail, None)


def _no_window(w: WindowStats | None, phase: str) -> str:
    if w is None:
        return f"phase {phase} was not measured (the drill ended before it, or it never ran)"
    return f"no requests were offered in {phase}; nothing measured"


def _good_second(w: WindowStats, success_min: float, p99_ms: float | None) -> bool:
    if w.offered == 0 or w.ok / w.offered < success_min - _EPS:
        return False
    return p99_ms is None or (w.p99_ms is not None and w.p99_ms <= p99_ms + _EPS)


def _breakdown(w: WindowStats) -> str:
    parts = {"errors": w.errors - w.shed - w.timeouts, "shed": w.shed,
             "timeouts": w.timeouts, "dropped by the generator": w.dropped}
    named = [f"{n:,} {label}" for label, n in parts.items() if n > 0]
    return (": " + ", ".join(named)) if named else ""


def _over(bad: float, allowed: float) -> float:
    """How many times ``allowed`` the ``bad`` quantity is, capped (zero budget = the cap)."""
    if allowed <= 0:
        return _MISS_CAP
    return round(min(_MISS_CAP, bad / allowed), 3)
