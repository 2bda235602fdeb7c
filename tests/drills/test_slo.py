"""Tolerance checks: one SLO kind per test, hand-built windows, nothing faked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.loadgen.timeline import WindowStats
from drills.scenario import AbortCondition, Scenario
from drills.slo import (
    Verdict,
    abort_due,
    evaluate,
    expand_phases,
    held,
    recovery_time_s,
    worst_breach,
)


def _w(label: str = "p", offered: int = 1000, ok: int | None = None, *, shed: int = 0,
       timeouts: int = 0, dropped: int = 0, degraded: int = 0, p99: float | None = 10.0,
       ndcg: float | None = 0.06, start: float = 0.0, end: float = 10.0) -> WindowStats:
    ok = offered if ok is None else ok
    return WindowStats(label, start, end, offered, ok, offered - ok - dropped, shed, timeouts,
                       dropped, degraded, ok / (end - start), 2.0 if ok else None,
                       p99 if ok else None, p99 * 2 if ok and p99 else None, 0.2 if ok else None,
                       ndcg if ok else None, ok)


def _sec(s: int, ok: int = 100, p99: float = 5.0) -> WindowStats:
    return _w(str(s), 100, ok, p99=p99, start=float(s), end=float(s + 1))


def _judge(slo: dict[str, Any], phases: Mapping[str, WindowStats] | None = None,
           timeline: Sequence[WindowStats] = (), facts: Mapping[str, Any] | None = None,
           windows: Mapping[str, tuple[float, float]] | None = None) -> list[Verdict]:
    s = _scenario(slo)
    return evaluate(s, phases or {}, timeline, {"kill": (8.0, 18.0)} if windows is None
                    else windows, {"kill": facts} if facts is not None else {})


def _scenario(*slos: dict[str, Any], faults: int = 1) -> Scenario:
    method = [{"fault": "kill-replica", "name": "kill", "at_s": 8},
              {"fault": "overload", "at_s": 20}][:faults]
    return Scenario.model_validate({
        "title": "t", "load": {"rate_rps": 100, "duration_s": 40}, "method": method,
        "steady_state_hypothesis": {"slos": list(slos)}})


def _one(slo: dict[str, Any], phase: WindowStats, base: WindowStats | None = None) -> Verdict:
    phases = {"kill": phase} | ({"baseline": base} if base is not None else {})
    [verdict] = _judge({**slo, "phases": ["kill"]}, phases)
    return verdict


def test_expand_phases() -> None:
    assert expand_phases(["baseline", "faults", "b", "whole"], ["a", "b"]) == [
        "baseline", "a", "b", "whole"]
    assert expand_phases(["faults"], []) == []


def test_evaluate_judges_each_slo_on_each_phase_in_order() -> None:
    s = _scenario({"kind": "success_ratio", "min": 0.99}, {"kind": "recovery_s", "max_s": 5},
                  faults=2)
    phases = {n: _w(n) for n in ("baseline", "kill", "overload", "recovery")}
    verdicts = evaluate(s, phases, [_sec(i) for i in range(40)],
                        {"kill": (8, 18), "overload": (20, 30)}, {})
    assert [(v.kind, v.phase) for v in verdicts] == [
        ("success_ratio", "baseline"), ("success_ratio", "kill"), ("success_ratio", "overload"),
        ("success_ratio", "recovery"), ("recovery_s", "kill"), ("recovery_s", "overload")]
    assert held(verdicts) and worst_breach(verdicts) is None


def test_success_ratio() -> None:
    assert _one({"kind": "success_ratio", "min": 0.999}, _w(offered=12000, ok=11995)).held
    v = _one({"kind": "success_ratio", "min": 0.999}, _w(offered=12000, ok=10885, timeouts=15))
    assert (v.held, v.observed, v.limit, v.slo) == (False, 0.9071, ">= 0.999",
                                                     "success ratio >= 0.999")
    assert "1,115 of 12,000 requests failed: 1,100 errors, 15 timeouts; budget 12" in v.detail
    assert v.miss == round(1115 / 12, 3)


def test_success_ratio_uses_exact_counts_not_the_rounded_ratio() -> None:
    # 99,985 / 100,000 rounds to 0.9999 but is below it
    assert not _one({"kind": "success_ratio", "min": 0.9999}, _w(offered=100000, ok=99985)).held


def test_success_ratio_of_an_empty_or_missing_phase_is_not_held() -> None:
    empty = _one({"kind": "success_ratio", "min": 0.5}, _w(offered=0))
    assert (empty.held, empty.observed, empty.miss) == (False, None, None)
    assert "no requests were offered in kill" in empty.detail
    [missing] = _judge({"kind": "success_ratio", "min": 0.5, "phases": ["recovery"]})
    assert not missing.held and "phase recovery was not measured" in missing.detail


def test_success_ratio_counts_generator_drops_as_failures() -> None:
    v = _one({"kind": "success_ratio", "min": 0.99}, _w(offered=100, ok=90, dropped=10))
    assert not v.held and "10 dropped by the generator" in v.detail


def test_p99_absolute() -> None:
    assert _one({"kind": "p99_ms", "max_ms": 50}, _w(p99=50.0)).held
    v = _one({"kind": "p99_ms", "max_ms": 50}, _w(p99=200.0))
    assert (v.held, v.observed, v.limit, v.miss) == (False, 200.0, "<= 50 ms", 4.0)


def test_p99_relative_to_baseline_takes_the_tighter_bound() -> None:
    slo = {"kind": "p99_ms", "max_ms": 100, "max_ratio": 2}
    v = _one(slo, _w(p99=90.0), base=_w(p99=41.2))
    assert (v.held, v.limit) == (False, "<= 100 ms and <= 2x baseline (41.2 ms)")
    assert v.slo == "p99 <= 100 ms and 2x baseline" and "82.4 ms bound" in v.detail
    assert _one(slo, _w(p99=80.0), base=_w(p99=41.2)).held


def test_p99_without_successes_or_baseline_is_not_held() -> None:
    none_ok = _one({"kind": "p99_ms", "max_ms": 50}, _w(ok=0))
    assert not none_ok.held and "no successful answers" in none_ok.detail
    no_base = _one({"kind": "p99_ms", "max_ratio": 2}, _w(p99=1.0))
    assert (no_base.held, no_base.miss) == (False, None)
    assert "baseline p99 was not measured" in no_base.detail
    # the absolute bound alone already shows the breach
    over = _one({"kind": "p99_ms", "max_ms": 50, "max_ratio": 2}, _w(p99=500.0))
    assert (over.held, over.miss) == (False, 10.0)


def test_ndcg_ratio_to_baseline() -> None:
    assert _one({"kind": "ndcg10", "min_ratio": 0.9}, _w(ndcg=0.055), base=_w(ndcg=0.06)).held
    v = _one({"kind": "ndcg10", "min_ratio": 0.9}, _w(ndcg=0.03), base=_w(ndcg=0.06))
    assert (v.held, v.observed, v.limit) == (False, 0.5, ">= 0.9x baseline (0.0600)")


def test_ndcg_not_measured_is_not_held() -> None:
    assert not _one({"kind": "ndcg10", "min_ratio": 0.9}, _w(ndcg=None), base=_w()).held
    no_base = _one({"kind": "ndcg10", "min_ratio": 0.9}, _w())
    assert not no_base.held and "baseline NDCG@10 was not measured" in no_base.detail
    zero = _one({"kind": "ndcg10", "min_ratio": 0.9}, _w(), base=_w(ndcg=0.0))
    assert not zero.held and "undefined" in zero.detail


def test_degraded_share() -> None:
    assert _one({"kind": "degraded_share", "max": 0.1}, _w(ok=500, degraded=50)).held
    v = _one({"kind": "degraded_share", "max": 0.1}, _w(ok=500, degraded=100))
    assert (v.held, v.observed, v.miss) == (False, 0.2, 2.0)
    assert "100 of 500 answers from the fallback tier" in v.detail
    assert not _one({"kind": "degraded_share", "max": 0.1}, _w(ok=0)).held


def test_recovery_time_of_a_service_that_never_degraded_is_zero() -> None:
    assert recovery_time_s([_sec(s) for s in range(20)], 8.4, 0.999, 3) == 0.0


def test_recovery_time_counts_to_the_start_of_the_first_good_window() -> None:
    tl = [_sec(s, ok=0 if 8 <= s < 12 else 100) for s in range(30)]
    assert recovery_time_s(tl, 8.0, 0.999, 3) == 4.0
    assert recovery_time_s(tl, 8.5, 0.999, 3) == 3.5


def test_recovery_time_needs_consecutive_good_seconds() -> None:
    flaky = [_sec(s, ok=0 if s in (8, 9, 11, 14) else 100) for s in range(20)]
    assert recovery_time_s(flaky, 8, 0.999, 3) == 7.0  # 15, 16, 17
    gap = [_sec(s, ok=0 if s == 8 else 100) for s in range(20) if s != 11]
    assert recovery_time_s(gap, 8, 0.999, 3) == 4.0  # 9, 10 then a missing second


def test_recovery_time_with_a_latency_bound_and_never() -> None:
    slow = [_sec(s, p99=500.0 if 8 <= s < 15 else 5.0) for s in range(30)]
    assert recovery_time_s(slow, 8, 0.999, 3) == 0.0
    assert recovery_time_s(slow, 8, 0.999, 3, p99_ms=100) == 7.0
    assert recovery_time_s([_sec(s, ok=90) for s in range(30)], 8, 0.999, 3) is None
    assert recovery_time_s([_sec(s, ok=0) for s in range(5)] + [
        _w(str(s), 0, start=s, end=s + 1) for s in range(5, 10)], 0, 0.9, 1) is None


def test_recovery_verdict() -> None:
    tl = [_sec(s, ok=0 if 8 <= s < 12 else 100) for s in range(40)]
    [v] = _judge({"kind": "recovery_s", "max_s": 5}, timeline=tl)
    assert (v.held, v.observed, v.limit, v.phase) == (True, 4.0, "<= 5 s", "kill")
    [slow] = _judge({"kind": "recovery_s", "max_s": 2}, timeline=tl)
    assert (slow.held, slow.miss) == (False, 2.0)


def test_recovery_verdict_never_or_unmeasurable_is_not_held() -> None:
    down = [_sec(s, ok=0 if s >= 8 else 100) for s in range(40)]
    [never] = _judge({"kind": "recovery_s", "max_s": 5}, timeline=down)
    assert (never.held, never.observed) == (False, None) and never.detail.startswith("never")
    [early] = _judge({"kind": "recovery_s", "max_s": 30}, timeline=down[:12])
    assert (early.held, early.miss) == (False, None) and "too soon" in early.detail
    [absent] = _judge({"kind": "recovery_s", "max_s": 5}, timeline=down, windows={})
    assert not absent.held and "was not injected" in absent.detail
    [wrong] = _judge({"kind": "recovery_s", "max_s": 5, "phases": ["baseline"]}, timeline=down)
    assert not wrong.held and "'baseline' is not a fault" in wrong.detail


def test_fact_bounds() -> None:
    def fact(facts: dict[str, Any], **bound: Any) -> bool:
        [v] = _judge({"kind": "fact", "fact": "x", **bound}, facts=facts)
        return v.held

    assert fact({"x": 21.3}, max=30) and not fact({"x": 31.0}, max=30)
    assert fact({"x": 2}, min=1) and not fact({"x": 0}, min=1)
    assert fact({"x": True}, equals=True) and not fact({"x": False}, equals=True)
    assert not fact({"x": 1}, equals=True)  # 1 is not True
    assert fact({"x": "v2"}, equals="v2") and not fact({"x": "v1"}, equals="v2")
    assert not fact({"x": "fast"}, max=30) and not fact({"x": None}, min=0)


def test_fact_missing_is_not_held() -> None:
    [v] = _judge({"kind": "fact", "fact": "rpo_versions", "max": 0}, facts={"other": 1})
    assert (v.held, v.detail) == (False, "fault kill recorded no fact rpo_versions")
    [no_facts] = _judge({"kind": "fact", "fact": "rpo_versions", "max": 0})
    assert not no_facts.held
    [phase] = _judge({"kind": "fact", "fact": "x", "max": 0, "phases": ["recovery"]})
    assert not phase.held and "not a fault" in phase.detail


def test_fact_names_and_limits() -> None:
    [v] = _judge({"kind": "fact", "fact": "rollback_s", "min": 1, "max": 30},
                 facts={"rollback_s": 12.0})
    assert (v.slo, v.limit, v.observed, v.held) == ("rollback_s >= 1 and <= 30",
                                                    ">= 1 and <= 30", 12.0, True)
    [named] = _judge({"kind": "fact", "fact": "x", "equals": True, "name": "refused"},
                     facts={"x": True})
    assert named.slo == "refused"


def test_abort_due() -> None:
    cond = AbortCondition(success_below=0.5, for_s=3)
    bad, good, idle = _sec(0, ok=10), _sec(0, ok=100), _w(offered=0)
    assert abort_due([good, bad, bad, bad], [cond]) is cond
    assert abort_due([bad, bad, good], [cond]) is None
    assert abort_due([bad, bad], [cond]) is None
    assert abort_due([bad, idle, bad, bad], [cond]) is None
    assert abort_due([bad, idle], [cond]) is None
    other = AbortCondition(success_below=0.2, for_s=1)
    assert abort_due([bad, bad, bad], [other, cond]) is other


def test_held_needs_at_least_one_verdict() -> None:
    ok = Verdict("a", "fact", "f", 1, "", True, "")
    assert held([ok]) and not held([]) and not held([ok, Verdict("b", "fact", "f", 2, "",
                                                                  False, "")])


def test_worst_breach_ranks_measured_misses_first() -> None:
    def broken(slo: str, miss: float | None, phase: str = "kill") -> Verdict:
        return Verdict(slo, "success_ratio", phase, 0.9, "", False, "d", miss)

    assert worst_breach([broken("a", 2.0), broken("b", 90.0), broken("c", None)]) == (
        "b broke in kill: d")
    assert worst_breach([broken("c", None, "whole")]) == "c was not measured over the whole drill: d"
