"""Pure pieces of the runner, faults and CLI: schedules, target picks, exit codes, aborts."""

from __future__ import annotations

import random

import numpy as np
import pytest

from drills.cli import EXIT_ABORTED, EXIT_BROKEN, EXIT_ERROR, EXIT_HELD, exit_code
from drills.faults import pick
from drills.runner import _Live, drill_schedule, step_kind
from drills.scenario import BlastRadius, Scenario, TargetSpec

BASE = {"title": "t", "load": {"rate_rps": 10, "duration_s": 30},
        "method": [{"fault": "kill-node", "at_s": 10}],
        "steady_state_hypothesis": {"slos": [{"kind": "success_ratio", "min": 0.999}]}}


def test_overload_windows_multiply_the_rate_only_inside_them() -> None:
    s = drill_schedule(10, 10, [(4, 6, 3.0)])
    per_second = np.histogram(s.offsets_s, bins=10, range=(0, 10))[0].tolist()
    assert per_second == [10, 10, 10, 10, 30, 30, 10, 10, 10, 10]
    assert np.all(np.diff(s.offsets_s) > 0)


def test_blast_radius_picks_one_a_count_or_a_share() -> None:
    rng = random.Random(0)
    assert len(pick(list(range(5)), TargetSpec(), rng)) == 1
    assert pick([1, 2, 3], TargetSpec(select="first", blast_radius=BlastRadius(count=2)),
                rng) == [1, 2]
    assert len(pick(list(range(4)), TargetSpec(blast_radius=BlastRadius(percent=50)), rng)) == 2
    seeded = [pick(list(range(9)), TargetSpec(), random.Random(7)) for _ in range(2)]
    assert seeded[0] == seeded[1]


@pytest.mark.parametrize(("status", "held", "code"), [
    ("completed", True, EXIT_HELD), ("completed", False, EXIT_BROKEN),
    ("aborted", False, EXIT_ABORTED), ("error", False, EXIT_ERROR)])
def test_exit_code_follows_status_and_verdict(status: str, held: bool, code: int) -> None:
    assert exit_code({"status": status, "held": held}) == code


def test_scaled_scenario_keeps_slo_limits() -> None:
    s = Scenario.model_validate({**BASE, "steady_state_hypothesis": {"slos": [
        {"kind": "recovery_s", "max_s": 30}]}}).scaled(0.5)
    assert (s.load.duration_s, s.method[0].at_s, s.method[0].duration_s) == (15, 5, 5)
    assert s.steady_state_hypothesis.slos[0].max_s == 30


def test_live_counts_abort_only_on_settled_bad_seconds() -> None:
    live = _Live(Scenario.model_validate({**BASE, "abort": [{"success_below": 0.5,
                                                              "for_s": 2}]}))
    row = {"offered": 10, "finished": 10, "degraded": 0}
    live.update({0: {"second": 0, **row, "ok": 10}, 1: {"second": 1, **row, "ok": 1}})
    assert live.aborted_at is None
    live.update({0: {"second": 0, **row, "ok": 10}, 1: {"second": 1, **row, "ok": 1},
                 2: {"second": 2, "offered": 10, "finished": 3, "ok": 0, "degraded": 0}})
    assert live.aborted_at is None  # second 2 is not settled yet
    live.update({1: {"second": 1, **row, "ok": 1}, 2: {"second": 2, **row, "ok": 0}})
    assert live.aborted_at == 3 and "for 2 s" in (live.abort_reason or "")


def test_saturation_steps_refine_only_once_bracketed() -> None:
    assert step_kind([]) == "search" and step_kind([True, True]) == "search"
    assert step_kind([False, False]) == "search"  # still looking for a passing rate below
    assert step_kind([True, False]) == "refine"
