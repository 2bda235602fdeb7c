"""drills.plan: phase windows and the dry-run printout, pure and from the scenario alone."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from drills.catalog import catalog
from drills.loader import load_scenario
from drills.plan import PhaseWindow, phases, plan_text
from drills.scenario import Scenario


def _scenario(method: list[dict[str, Any]], slos: list[dict[str, Any]] | None = None,
              **extra: Any) -> Scenario:
    return Scenario.model_validate({
        "title": "t", "load": {"rate_rps": 100, "duration_s": 60}, "method": method,
        "steady_state_hypothesis": {"slos": slos or [{"kind": "success_ratio", "min": 0.999}]},
        **extra})


TWO_FAULTS = _scenario(
    [{"fault": "kill-replica", "at_s": 10, "duration_s": 10},
     {"fault": "corrupt-checkpoint", "name": "corruption", "mode": "tamper", "at_s": 30,
      "duration_s": 12, "target": {"select": "first", "blast_radius": {"percent": 50}}}],
    [{"kind": "success_ratio", "min": 0.999},
     {"kind": "p99_ms", "max_ratio": 2.0, "phases": ["kill-replica"]},
     {"kind": "p99_ms", "max_ms": 250, "max_ratio": 1.5, "phases": ["whole"]},
     {"kind": "ndcg10", "min_ratio": 0.95, "phases": ["faults", "recovery"]},
     {"kind": "degraded_share", "max": 0.05, "phases": ["baseline"]},
     {"kind": "recovery_s", "max_s": 30},
     {"kind": "fact", "fact": "rpo_versions", "max": 0},
     {"kind": "fact", "fact": "refused_everywhere", "equals": True, "phases": ["corruption"]},
     {"kind": "fact", "name": "fast", "fact": "publish_resume_s", "min": 1, "max": 10}],
    abort=[{"success_below": 0.2, "for_s": 10}],
    rollbacks=["repair-stores", "resume-replicas"])


def test_all_is_pinned() -> None:
    assert importlib.import_module("drills.plan").__all__ == ["PhaseWindow", "phases", "plan_text"]


def test_phases_of_two_faults() -> None:
    assert phases(TWO_FAULTS) == [
        PhaseWindow("baseline", 0.0, 10.0),
        PhaseWindow("kill-replica", 10.0, 20.0),
        PhaseWindow("corruption", 30.0, 42.0),
        PhaseWindow("recovery", 42.0, 60.0),
        PhaseWindow("whole", 0.0, 60.0),
    ]


def test_phases_keep_method_order_and_baseline_ends_at_the_first_fault() -> None:
    s = _scenario([{"fault": "kill-node", "at_s": 20, "duration_s": 30},
                   {"fault": "kill-replica", "at_s": 5, "duration_s": 5}])
    assert [tuple(p) for p in phases(s)] == [("baseline", 0, 5), ("kill-node", 20, 50),
                                             ("kill-replica", 5, 10), ("recovery", 50, 60),
                                             ("whole", 0, 60)]


def test_recovery_is_empty_when_the_last_fault_ends_with_the_load() -> None:
    s = _scenario([{"fault": "overload", "at_s": 50, "duration_s": 10}])
    assert phases(s)[-2:] == [PhaseWindow("recovery", 60.0, 60.0), PhaseWindow("whole", 0.0, 60.0)]


def test_a_fault_outlasting_the_load_is_refused() -> None:
    with pytest.raises(ValueError, match="runs past the end of the load"):
        _scenario([{"fault": "overload", "at_s": 50, "duration_s": 20}])


def test_phase_names_match_the_scenario() -> None:
    assert [p.name for p in phases(TWO_FAULTS)] == TWO_FAULTS.phase_names()


def test_plan_text_shows_the_timeline_with_targets() -> None:
    text = plan_text(TWO_FAULTS, source="x.yaml")
    assert text.startswith("drill: t\nsource: x.yaml\n")
    assert "[   0.0,   10.0) s  baseline" in text
    assert ("[  10.0,   20.0) s  kill-replica  kill-replica on replicas: random pick, "
            "blast radius 1\n") in text
    assert "[  20.0,   30.0) s  -             between faults: judged only in 'whole'" in text
    assert ("[ 30.0, 42.0) s corruption corrupt-checkpoint on stores: first pick, blast radius "
            "50% (rounded up, at least 1), mode tamper [ 42.0, 60.0)") in " ".join(text.split())
    assert "[  42.0,   60.0) s  recovery      faults over, load continues" in text


@pytest.mark.parametrize("line", [
    "success ratio >= 99.9% in baseline, each fault window, recovery",
    "p99 <= 2.0x baseline in kill-replica",
    "p99 <= 250 ms and <= 1.5x baseline in the whole run",
    "NDCG@10 >= 0.95x baseline in each fault window, recovery",
    "degraded share <= 5% in baseline",
    "RTO <= 30 s (success >= 99.9% for 3 s in a row) after each fault",
    "fact rpo_versions <= 0 recorded by each fault",
    "fact refused_everywhere == true recorded by corruption",
    "fast: fact publish_resume_s >= 1 and <= 10 recorded by each fault",
])
def test_plan_text_writes_each_slo_as_a_condition(line: str) -> None:
    assert f"\n  - {line}\n" in plan_text(TWO_FAULTS)


def test_plan_text_shows_abort_and_rollbacks() -> None:
    text = plan_text(TWO_FAULTS)
    assert "abort:      when per-second success < 20% for 10 s in a row\n" in text
    assert text.endswith("rollbacks:  repair-stores, resume-replicas (always run, also after an "
                         "abort or an error)")


def test_plan_text_defaults() -> None:
    s = _scenario([{"fault": "overload", "at_s": 10, "factor": 2.5}], rollbacks=[],
                  load={"rate_fraction": 0.8, "duration_s": 30, "client": "recdrill-client",
                        "protocol": "grpc", "hedge_after_s": 0.05})
    text = plan_text(s)
    assert "load:       0.8 x the saturation rate measured before the drill open loop over GRPC" \
        in text
    assert "client recdrill-client: serving.client, with retries and hedging" in text
    assert "2 retries, hedge after 0.05 s" in text
    assert "overload on load, offered rate x2.5\n" in text
    assert "RAY_ADDRESS" in text
    assert "abort:      none, the drill runs to the end\n" in text
    assert text.endswith("rollbacks:  none")
    assert "as feedback" not in text


def test_plan_text_says_feedback_is_replayed() -> None:
    s = _scenario([{"fault": "bad-model", "at_s": 10}],
                  load={"rate_rps": 100, "duration_s": 30, "feedback": True})
    assert "as feedback" in plan_text(s)


@pytest.mark.parametrize("name", sorted(catalog()))
def test_plan_text_of_every_shipped_scenario(name: str) -> None:
    scenario = load_scenario(catalog()[name])
    text = plan_text(scenario)
    assert all(f") s  {fault}" in text for fault in scenario.fault_names())
    assert text.count("\n  - ") == len(scenario.steady_state_hypothesis.slos)
    assert all(len(line) <= 100 for line in text.splitlines())
