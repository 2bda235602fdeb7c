"""What ``bench.frontdoor_bench`` writes: the front door's own figures (pure) and the Markdown
table, from the measured :class:`~bench.loadgen.compare.ContenderRecord` values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.loadgen.compare import ContenderRecord
from bench.loadgen.overload import added_ms
from bench.loadgen.report import machine_section
from bench.loadgen.saturation import Step

__all__ = ["door_figures", "markdown"]


def door_figures(door: ContenderRecord | None, one_replica: Step | None,
                 replicas_rr: Step | None, grpc: Step | None) -> dict[str, Any]:
    """The front door at half its saturation, next to the replicas reached directly at the
    same offered rate: the p50 it adds, and gRPC through it.

    Example:
        >>> s = lambda p50: Step(100, 100, 1, p50, 2 * p50, 3 * p50, 0.1, 0.1, True, kind="half")
        >>> door = ContenderRecord("door", "http", half=s(1.5))
        >>> fig = door_figures(door, s(1.0), s(0.75), None)
        >>> fig["added_p50_ms_vs_one_replica"], fig["added_p50_ms_vs_replicas_rr"]
        (0.5, 0.75)
    """
    half = door.half if door is not None else None

    def p(step: Step | None, key: str) -> float | None:
        return None if step is None else getattr(step, key)

    return {
        "rate_rps": p(half, "offered_rps"),
        "door_p50_ms": p(half, "p50_ms"), "door_p99_ms": p(half, "p99_ms"),
        "one_replica_p50_ms": p(one_replica, "p50_ms"),
        "one_replica_p99_ms": p(one_replica, "p99_ms"),
        "added_p50_ms_vs_one_replica": added_ms(p(half, "p50_ms"), p(one_replica, "p50_ms")),
        "replicas_rr_p50_ms": p(replicas_rr, "p50_ms"),
        "replicas_rr_p99_ms": p(replicas_rr, "p99_ms"),
        "added_p50_ms_vs_replicas_rr": added_ms(p(half, "p50_ms"), p(replicas_rr, "p50_ms")),
        "grpc_p50_ms": p(grpc, "p50_ms"), "grpc_p99_ms": p(grpc, "p99_ms"),
        "grpc_success_ratio": p(grpc, "success_ratio"),
    }


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _capacity_row(r: ContenderRecord, ratio: float | None) -> str:
    if r.error:
        return f"| {r.name} | {r.transport} | failed: {r.error.splitlines()[0][:120]} | | | |"
    h = r.half or Step(0, 0, 0, None, None, None, None, 0, True)
    star = "" if all(s.valid for s in r.steps) else " \\*"
    return (f"| {r.name}{star} | {r.transport} | {_f(r.saturation_rps, 0)} | {_f(ratio, 2)} | "
            f"{_f(h.offered_rps or None, 0)} | {_f(h.p50_ms, 2)} / {_f(h.p99_ms, 2)} |")


def _overload_row(r: ContenderRecord) -> str:
    o: dict[str, Any] = r.extra.get("overload") or {}
    v: dict[str, Any] = r.extra.get("verdict") or {}
    fast = {True: ", fails fast", False: ", fails slow", None: ""}[v.get("fast_failures")]
    valid = "" if o.get("valid", True) else " \\*"
    return (f"| {r.name}{valid} | {_f(o.get('offered_rps'), 0)} | {_f(o.get('goodput_rps'), 0)} "
            f"({_f(v.get('keep'), 2)}×) | {_f(o.get('slo_goodput_rps'), 0)} "
            f"({_f(v.get('slo_keep'), 2)}×) | {_pct(o.get('degraded_share'))} | "
            f"{_f(o.get('ok_p50_ms'), 1)} / "
            f"{_f(o.get('ok_p99_ms'), 1)} | {_pct(o.get('shed_share'))} | "
            f"{_pct(o.get('error_share'))} | {_pct(o.get('timeout_share'))} | "
            f"{_pct(o.get('dropped_share'))} | {_f(o.get('failed_p50_ms'), 1)} / "
            f"{_f(o.get('failed_p99_ms'), 1)} | {v.get('verdict', '–')}{fast} |")


def markdown(records: Sequence[ContenderRecord], ratio_table: dict[str, dict[str, Any]],
             baseline: str, door: dict[str, Any], machine: dict[str, Any],
             config: dict[str, Any]) -> str:
    """The report: capacity and overload per contender, the front door's figures, every step,
    the machine."""
    slo = config.get("slo_p99_ms")
    curves = [r for r in records if r.extra.get("role") != "reference"]
    lines = [
        "# Front doors: recdrill vs Ray Serve (HAProxy mode, standard proxy) vs FastAPI\n",
        ("Same artifact, same open-loop generator (one attempt per request, no retries), one "
         "run; latency from the intended send time. \\* = the generator broke its send-lag "
         "bound in a step of this contender (or in this run): treat it with care.\n"),
        "## Capacity\n",
        (f"Saturation = goodput of the highest offered rate with p99 ≤ {slo} ms, ≥ 99% "
         f"success and goodput ≥ 95% of offered; ratios to {baseline}, measured in this run.\n"),
        (f"| contender | transport | saturation req/s | × {baseline} | @½ req/s | "
         f"p50 / p99 ms @½ |"),
        "|---|---|---|---|---|---|",
    ]
    lines += [_capacity_row(r, ratio_table.get(r.name, {}).get(baseline)) for r in curves]
    lines += [
        "", "## Overload\n",
        (f"{config.get('overload_factor')}× the measured saturation for "
         f"{config.get('duration_s')} s. Goodput = successful answers per second (× saturation "
         f"in brackets: held ≥ 0.9×, collapsed < 0.5×); in-SLO = only those answered within "
         f"{slo} ms; degraded = share of the successful answers that came from a fallback "
         f"tier (recdrill's admission control answers past its in-flight limit from its "
         f"fallback lists, without the model); answered = latency of the successful answers. "
         f"Shed (503), error, timeout "
         f"({config.get('timeout_s')} s) and dropped (never sent: "
         f"{config.get('max_in_flight')} requests already outstanding) are shares of the "
         f"offered requests; failed = latency of shed + error + timeout, \"fails fast\" when "
         f"its p99 ≤ {slo} ms.\n"),
        ("| contender | offered req/s | goodput req/s | in-SLO req/s | degraded | answered p50 / "
         "p99 ms | shed | error | timeout | dropped | failed p50 / p99 ms | verdict |"),
        "|" + "---|" * 12,
    ]
    lines += [_overload_row(r) for r in curves if r.extra.get("overload")]
    lines += ["", "## Front door (recdrill)", ""]
    if door.get("rate_rps") is None:
        lines.append("Not measured (the front door found no saturation, or was not selected).")
    else:
        lines += [
            f"At {_f(door['rate_rps'], 0)} req/s (half of the front door's saturation):", "",
            (f"- through the front door (HTTP): p50 {_f(door['door_p50_ms'], 3)} ms, "
            f"p99 {_f(door['door_p99_ms'], 2)} ms;"),
            (f"- one replica direct: p50 {_f(door['one_replica_p50_ms'], 3)} ms → the front "
            f"door adds **{_f(door['added_p50_ms_vs_one_replica'], 3)} ms** at p50 (one replica "
            f"alone carries the whole rate here, so its own queueing is in this figure);"),
            (f"- all replicas direct, round-robin: p50 {_f(door['replicas_rr_p50_ms'], 3)} ms → "
            f"the hop adds **{_f(door['added_p50_ms_vs_replicas_rr'], 3)} ms** at p50;"),
            (f"- gRPC through the front door (h2): p50 {_f(door['grpc_p50_ms'], 3)} ms, p99 "
            f"{_f(door['grpc_p99_ms'], 2)} ms, success {_pct(door['grpc_success_ratio'])}."),
        ]
    lines += ["", "## Every step", "", ("| contender | kind | offered | goodput | ok | p50 ms | "
              "p99 ms | gen lag p99 ms | valid |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        for s in r.steps:
            lines.append(f"| {r.name} | {s.kind} | {_f(s.offered_rps, 0)} | {_f(s.goodput_rps, 0)} "
                         f"| {_pct(s.success_ratio)} | {_f(s.p50_ms, 2)} | {_f(s.p99_ms, 2)} | "
                         f"{_f(s.lag_p99_ms, 2)} | {'yes' if s.valid else '**no**'} |")
    lines += machine_section(machine)
    return "\n".join(lines)
