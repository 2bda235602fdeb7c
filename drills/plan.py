"""What a drill will do, without doing it: phase windows and the ``--dry-run`` printout.

``phases()`` is the single source of phase windows (the runner and the SLO judge use it);
``plan_text()`` renders a scenario for people. Both are pure: no Ray, no files, no clock.

Example:
    >>> from drills.scenario import Scenario
    >>> s = Scenario.model_validate({"title": "t", "load": {"rate_rps": 50, "duration_s": 30},
    ...     "method": [{"fault": "kill-replica", "at_s": 8}],
    ...     "steady_state_hypothesis": {"slos": [{"kind": "success_ratio", "min": 0.999}]}})
    >>> [p.name for p in phases(s)]
    ['baseline', 'kill-replica', 'recovery', 'whole']
    >>> phases(s)[1]
    PhaseWindow(name='kill-replica', start_s=8.0, end_s=18.0)
    >>> "success ratio >= 99.9% in baseline, each fault window, recovery" in plan_text(s)
    True
"""

from __future__ import annotations

import textwrap
from typing import NamedTuple

from drills.scenario import (
    FAULT_KINDS,
    P99SLO,
    SLO,
    AbortCondition,
    BlastRadius,
    DegradedShareSLO,
    FactSLO,
    FaultSpec,
    LoadSpec,
    NdcgSLO,
    RecoverySLO,
    Scenario,
    SearchNdcgSLO,
    SuccessRatioSLO,
    TargetSpec,
)

__all__ = ["PhaseWindow", "phases", "plan_text"]

_WIDTH = 100
_PICKED = ("replicas", "nodes", "stores")  # target kinds with several to pick from
_INDENT = " " * 12
_CLIENTS = {
    "plain": "one attempt per request, no retries (what curl or any client sees)",
    "recdrill-client": "serving.client, with retries and hedging (the view of our own client)",
}


class PhaseWindow(NamedTuple):
    """A named window ``[start_s, end_s)`` in seconds from the load's start."""

    name: str
    start_s: float
    end_s: float


def phases(scenario: Scenario) -> list[PhaseWindow]:
    """baseline, each fault (method order), recovery, whole; recovery is empty (end = start)
    when the last fault ends with the load.

    Example:
        >>> from drills.scenario import Scenario
        >>> s = Scenario.model_validate({"title": "t", "load": {"rate_rps": 5, "duration_s": 9},
        ...     "method": [{"fault": "overload", "at_s": 4, "duration_s": 3}],
        ...     "steady_state_hypothesis": {"slos": [{"kind": "success_ratio", "min": 1}]}})
        >>> phases(s)[2]
        PhaseWindow(name='recovery', start_s=7.0, end_s=9.0)
    """
    duration = float(scenario.load.duration_s)
    first = float(min(f.at_s for f in scenario.method))
    last_end = float(max(f.end_s for f in scenario.method))
    faults = [PhaseWindow(name, float(f.at_s), float(f.end_s))
              for name, f in zip(scenario.fault_names(), scenario.method, strict=True)]
    return [PhaseWindow("baseline", 0.0, first), *faults,
            PhaseWindow("recovery", last_end, max(last_end, duration)),
            PhaseWindow("whole", 0.0, duration)]


def plan_text(scenario: Scenario, *, source: str = "") -> str:
    """The dry-run printout: what would run, when, and what must hold.

    Example:
        >>> from drills.catalog import resolve
        >>> from drills.loader import load_scenario
        >>> print(plan_text(load_scenario(resolve("replica-kill"))).splitlines()[0])
        drill: replica-kill
    """
    lines = [f"drill: {scenario.title}"]
    if source:
        lines.append(f"source: {source}")
    if scenario.description:
        lines += textwrap.wrap(scenario.description, _WIDTH, initial_indent="  ",
                               subsequent_indent="  ")
    if scenario.tags:
        lines.append(f"tags: {', '.join(scenario.tags)}")
    lines += ["", *_cluster(scenario), *_load(scenario.load), "", "timeline:",
              *_timeline(scenario), "", f"steady state: {scenario.steady_state_hypothesis.title}",
              *[_wrap(f"  - {_slo(slo)}") for slo in scenario.steady_state_hypothesis.slos],
              "", *_abort(scenario.abort), _wrap(_rollbacks(scenario.rollbacks))]
    return "\n".join(lines)


def _wrap(line: str, indent: str = _INDENT) -> str:
    return "\n".join(textwrap.wrap(line, _WIDTH, subsequent_indent=indent))


def _num(x: float) -> str:
    return f"{x:g}"


def _ratio(x: float) -> str:
    return f"{x:.1f}x" if round(x, 1) == x else f"{x:g}x"


def _percent(x: float) -> str:
    return f"{round(x * 100, 6):g}%"


def _cluster(scenario: Scenario) -> list[str]:
    c = scenario.cluster
    if c.regions > 1:
        return [_wrap(f"cluster:    two regions, each its own process tree and Ray cluster: head + "
                      f"{c.workers} workers (1 CPU each), {c.replicas} replicas, its own stores "
                      f"and front door; {c.region_mode} cross-region replication"),
                _wrap(f"{_INDENT}the load calls one global entry (HAProxy: the primary region's "
                      "front door, the standby's as a backup server); never on an attached "
                      "cluster")]
    return [_wrap(f"cluster:    embedded: head + {c.workers} workers (1 CPU each), "
                  f"{c.replicas} replicas (one per node), publish quorum w={c.w}"),
            _wrap(f"{_INDENT}with RAY_ADDRESS set, the drill runs on that cluster instead and "
                  "this shape is ignored")]


def _load(load: LoadSpec) -> list[str]:
    if load.rate_rps is not None:
        rate = f"{_num(load.rate_rps)} rps"
    else:
        rate = f"{_num(load.rate_fraction or 0)} x the saturation rate measured before the drill"
    client = _CLIENTS[load.client]
    if load.client == "recdrill-client":
        hedge = f", hedge after {_num(load.hedge_after_s)} s" if load.hedge_after_s else ""
        client += f": {load.retries} retries{hedge}"
    if load.via == "frontdoor":
        addresses = ("one address: recdrill's front door (HAProxy: readiness checks, one retry "
                     "on another replica)")
    else:
        addresses = ("round robin over every replica address, no front door"
                     if load.addresses == "all" else "the first replica's address only")
    lines = [(f"load:       {rate} open loop over {load.protocol.upper()} for "
              f"{_num(load.duration_s)} s, seed {load.seed}"),
             _wrap(f"{_INDENT}client {load.client}: {client}"),
             _wrap(f"{_INDENT}{addresses}; timeout {_num(load.timeout_s)} s per request")]
    if load.feedback:
        lines.append(_wrap(f"{_INDENT}replays each answered user's held-out item as feedback "
                           "(online quality)"))
    if load.search_share:
        lines.append(_wrap(f"{_INDENT}{_percent(load.search_share)} of the requests are held-out "
                           "searches from the artifact (test split), scored by Recall@10 / "
                           "NDCG@10"))
    return lines


def _timeline(scenario: Scenario) -> list[str]:
    windows = phases(scenario)[:-1]  # 'whole' is the whole run
    faults = dict(zip(scenario.fault_names(), scenario.method, strict=True))
    width = max(len(p.name) for p in windows)
    rows, covered = [], 0.0
    for phase in sorted(windows, key=lambda p: p.start_s):
        if phase.start_s > covered:
            rows.append(_row(PhaseWindow("-", covered, phase.start_s), width,
                             "between faults: judged only in 'whole'"))
        covered = max(covered, phase.end_s)
        if phase.name == "baseline":
            what = "no fault: the reference for ratios"
        elif phase.name == "recovery":
            what = ("faults over, load continues" if phase.end_s > phase.start_s
                    else "empty: the last fault ends with the load")
        else:
            what = _fault(faults[phase.name])
        rows.append(_row(phase, width, what))
    return rows


def _row(phase: PhaseWindow, width: int, what: str) -> str:
    head = f"  [{phase.start_s:6.1f}, {phase.end_s:6.1f}) s  {phase.name:<{width}}  "
    return _wrap(head + what, " " * len(head))


def _fault(fault: FaultSpec) -> str:
    kind, target = FAULT_KINDS[fault.fault], fault.target
    text = f"{fault.fault} on {kind}"
    if kind in _PICKED or target != TargetSpec():
        text += f": {target.select} pick, {_blast(target.blast_radius)}"
    if fault.mode is not None:
        text += f", mode {fault.mode}"
    if fault.fault == "overload":
        text += f", offered rate x{_num(fault.factor)}"
    return text


def _blast(radius: BlastRadius) -> str:
    if radius.count is not None:
        return f"blast radius {radius.count}"
    if radius.percent is not None:
        return f"blast radius {_num(radius.percent)}% (rounded up, at least 1)"
    return "blast radius 1"


def _phases(names: tuple[str, ...], faults: str = "each fault window") -> str:
    words = {"faults": faults, "whole": "the whole run"}
    return ", ".join(words.get(name, name) for name in names)


def _slo(slo: SLO) -> str:
    label = f"{slo.name}: " if slo.name else ""
    if isinstance(slo, RecoverySLO):
        return f"{label}{_condition(slo)} after {_phases(slo.phases, 'each fault')}"
    if isinstance(slo, FactSLO):
        return f"{label}{_condition(slo)} recorded by {_phases(slo.phases, 'each fault')}"
    return f"{label}{_condition(slo)} in {_phases(slo.phases)}"


def _condition(slo: SLO) -> str:
    if isinstance(slo, SuccessRatioSLO):
        return f"success ratio >= {_percent(slo.min)}"
    if isinstance(slo, P99SLO):
        bounds = ([f"{_num(slo.max_ms)} ms"] if slo.max_ms is not None else []) + (
            [f"{_ratio(slo.max_ratio)} baseline"] if slo.max_ratio is not None else [])
        return "p99 <= " + " and <= ".join(bounds)
    if isinstance(slo, NdcgSLO):
        return f"NDCG@10 >= {_ratio(slo.min_ratio)} baseline"
    if isinstance(slo, SearchNdcgSLO):
        return f"search NDCG@10 >= {_ratio(slo.min_ratio)} baseline"
    if isinstance(slo, DegradedShareSLO):
        return f"degraded share <= {_percent(slo.max)}"
    if isinstance(slo, RecoverySLO):
        p99 = f" and p99 <= {_num(slo.p99_ms)} ms" if slo.p99_ms is not None else ""
        return (f"RTO <= {_num(slo.max_s)} s (success >= {_percent(slo.success_min)}{p99} "
                f"for {slo.window_s} s in a row)")
    return _fact(slo)


def _fact(slo: FactSLO) -> str:
    bounds = []
    if slo.min is not None:
        bounds.append(f">= {_num(slo.min)}")
    if slo.max is not None:
        bounds.append(f"<= {_num(slo.max)}")
    if slo.equals is not None:
        equals = str(slo.equals).lower() if isinstance(slo.equals, bool) else repr(slo.equals)
        bounds.append(f"== {equals}")
    return f"fact {slo.fact} " + " and ".join(bounds)


def _abort(conditions: tuple[AbortCondition, ...]) -> list[str]:
    if not conditions:
        return ["abort:      none, the drill runs to the end"]
    return [f"abort:      when per-second success < {_percent(c.success_below)} for {c.for_s} s "
            "in a row" for c in conditions]


def _rollbacks(rollbacks: tuple[str, ...]) -> str:
    if not rollbacks:
        return "rollbacks:  none"
    return f"rollbacks:  {', '.join(rollbacks)} (always run, also after an abort or an error)"
