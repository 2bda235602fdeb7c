"""Canary decisions (pure) and the rollout loop driven by fakes: no Ray, sockets or sleeping."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from serving.canary import (
    CanaryGate,
    Judgement,
    Tally,
    canary_fraction,
    in_canary,
    judge,
    routing_key,
)
from serving.config import ServeSettings
from serving.rollout import RolloutResult, canary_rollout, tally_since

KEYS = [f"u{i}" for i in range(10_000)]


# -- routing -----------------------------------------------------------------------------------

def test_in_canary_is_stable_across_calls_and_processes() -> None:
    here = [in_canary(k, 0.3) for k in KEYS[:200]]
    assert here == [in_canary(k, 0.3) for k in KEYS[:200]]
    code = ("from serving.canary import in_canary; "
            "print(''.join('1' if in_canary(f'u{i}', 0.3) else '0' for i in range(200)))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout.strip()
    assert other == "".join("1" if x else "0" for x in here)


def test_share_zero_is_nobody_and_one_is_everybody() -> None:
    assert not any(in_canary(k, 0.0) for k in KEYS) and all(in_canary(k, 1.0) for k in KEYS)


@pytest.mark.parametrize("share", [0.05, 0.3, 0.5, 0.9])
def test_about_share_of_10k_keys_are_in_the_canary(share: float) -> None:
    assert sum(in_canary(k, share) for k in KEYS) / len(KEYS) == pytest.approx(share, abs=0.02)


def test_raising_the_share_only_adds_keys() -> None:
    small = {k for k in KEYS if in_canary(k, 0.1)}
    assert small <= {k for k in KEYS if in_canary(k, 0.2)}
    assert all(0.0 <= canary_fraction(k) < 1.0 for k in KEYS[:1000])


def test_routing_key_is_the_user_else_the_history() -> None:
    assert routing_key("u1", None) == "u1" and routing_key(None, ["a", "b"]) == "a\x1fb"
    assert routing_key(None, ["a b"]) != routing_key(None, ["a", "b"])


# -- tallies and the gate ----------------------------------------------------------------------

def test_tally_hr_and_sum() -> None:
    assert Tally().hr is None and Tally(4, 1).hr == 0.25
    assert Tally(3, 1) + Tally(1, 1) == Tally(4, 2) and "HR@10 0.500 (2/4)" in str(Tally(4, 2))


def test_gate_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="min_feedback"):
        CanaryGate(min_feedback=0)
    with pytest.raises(ValueError, match="min_ratio"):
        CanaryGate(min_ratio=0.0)
    with pytest.raises(ValueError, match="promote_after"):
        CanaryGate(min_feedback=100, promote_after=10)


GATE = CanaryGate(min_feedback=100, min_ratio=0.8, promote_after=300)


def test_judge_waits_for_feedback_on_both_arms() -> None:
    assert judge(GATE, Tally(99, 0), Tally(500, 500)) == (
        Judgement.WAIT, "waiting for 100 feedback per arm: stable 99, canary 500")
    assert judge(GATE, Tally(500, 500), Tally(99, 0))[0] is Judgement.WAIT


def test_judge_rolls_back_below_the_ratio() -> None:
    judgement, why = judge(GATE, Tally(200, 100), Tally(100, 39))
    assert judgement is Judgement.ROLLBACK and "0.390 (39/100)" in why and "0.400" in why


def test_judge_at_the_ratio_is_healthy_and_waits() -> None:
    assert judge(GATE, Tally(200, 100), Tally(100, 40))[0] is Judgement.WAIT


def test_judge_promotes_a_healthy_canary_after_promote_after() -> None:
    assert judge(GATE, Tally(200, 100), Tally(300, 150))[0] is Judgement.PROMOTE
    assert judge(CanaryGate(min_feedback=100), Tally(200, 100), Tally(10**6, 10**6))[0] is (
        Judgement.WAIT)


def test_judge_with_a_stable_hr_of_zero_never_rolls_back() -> None:
    assert judge(GATE, Tally(200, 0), Tally(100, 0))[0] is Judgement.WAIT


# -- the rollout loop with fakes ---------------------------------------------------------------

SETTINGS = ServeSettings(artifact="/nowhere", public_key="/nowhere.pub")


class FakeFleet:
    """Replicas that take set_version calls and gather feedback whenever time passes.

    Each tick (one ``sleep``) every replica records ``per_tick`` feedback on each arm in
    service, with the hit rates given; ``refuse`` makes the canary never come up.
    """

    def __init__(self, replicas: int = 2, stable_hr: float = 0.5, canary_hr: float = 0.5,
                 per_tick: int = 20, refuse: bool = False) -> None:
        self.now = 0.0
        self.calls: list[tuple[str | None, str | None, float]] = []
        self.stable, self.canary, self.share = "v1", None, 0.0
        self.hr = {"v1": stable_hr, "v2": canary_hr}
        self.per_tick, self.refuse = per_tick, refuse
        self.tallies: list[dict[str, Tally]] = [{} for _ in range(replicas)]
        self.fail_fetch_after: int | None = None
        self.fetches = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for tallies in self.tallies:
            for version in {self.stable, self.canary} - {None}:
                assert version is not None
                hits = round(self.per_tick * self.hr[version])
                tallies[version] = tallies.get(version, Tally()) + Tally(self.per_tick, hits)

    def set_version(self, settings: ServeSettings, version: str, *, canary: str | None = None,
                    canary_share: float = 0.0) -> None:
        assert settings is SETTINGS
        self.calls.append((version, canary, canary_share))
        self.stable = version
        self.canary, self.share = (None, 0.0) if self.refuse else (canary, canary_share)

    def fetch_stats(self) -> list[dict[str, Any]]:
        self.fetches += 1
        if self.fail_fetch_after is not None and self.fetches > self.fail_fetch_after:
            raise RuntimeError("stats endpoint exploded")
        return [{"replica": f"r{i}", "stable": self.stable, "canary": self.canary,
                 "canary_share": self.share,
                 "tally": {v: {"shown": t.shown, "hits": t.hits} for v, t in tallies.items()}}
                for i, tallies in enumerate(self.tallies)]

    def rollout(self, gate: CanaryGate, timeout_s: float = 60.0, **kwargs: Any) -> RolloutResult:
        return canary_rollout(SETTINGS, "v1", "v2", share=0.2, gate=gate, timeout_s=timeout_s,
                              poll_s=1.0, fetch_stats=self.fetch_stats,
                              set_version=self.set_version, clock=self.clock, sleep=self.sleep,
                              **kwargs)


def test_rollout_rolls_back_a_bad_canary_everywhere() -> None:
    fleet, rolled_back = FakeFleet(stable_hr=0.5, canary_hr=0.1), []
    result = fleet.rollout(CanaryGate(min_feedback=100), rollback=rolled_back.append)
    assert (result.outcome, result.version, result.stable) == ("rolled-back", "v2", "v1")
    assert fleet.calls == [("v1", "v2", 0.2), ("v1", None, 0.0)] and rolled_back == ["v1"]
    assert fleet.canary is None and "canary below the gate" in result.reason
    # two replicas x 20 per tick: the gate opens on the third check (120 >= 100 per arm)
    assert result.checks == 3 and result.canary_tally == Tally(120, 12)
    assert result.stable_tally == Tally(120, 60) and result.decided_s == 3.0
    assert result.canary_started_s == 0.0 and result.to_dict()["canary_tally"]["hits"] == 12


def test_rollout_promotes_a_healthy_canary_after_promote_after() -> None:
    fleet, rolled_back = FakeFleet(stable_hr=0.5, canary_hr=0.55), []
    gate = CanaryGate(min_feedback=100, promote_after=200)
    result = fleet.rollout(gate, rollback=rolled_back.append)
    assert result.outcome == "promoted" and "healthy after 200" in result.reason
    assert fleet.calls[-1] == ("v2", None, 0.0) and rolled_back == []
    assert result.canary_tally.shown == 200 and result.decided_s == 5.0


def test_rollout_undecided_at_the_timeout_clears_the_canary() -> None:
    fleet, rolled_back = FakeFleet(stable_hr=0.5, canary_hr=0.5), []
    result = fleet.rollout(CanaryGate(min_feedback=100), timeout_s=10.0,
                           rollback=rolled_back.append)
    assert result.outcome == "undecided" and result.decided_s is None
    assert "no decision within 10 s" in result.reason and "healthy so far" in result.reason
    assert fleet.calls[-1] == ("v1", None, 0.0) and fleet.canary is None and rolled_back == []
    assert result.seconds == 10.0 and result.checks == 10


def test_rollout_counts_only_feedback_since_the_canary_started() -> None:
    # Before the canary: a perfect stable record; afterwards both arms are at 0.5. Without
    # the baseline the canary (0.5 vs 0.8 x ~0.9) would be rolled back.
    fleet = FakeFleet(stable_hr=0.5, canary_hr=0.5)
    for tallies in fleet.tallies:
        tallies["v1"] = Tally(1000, 1000)
    result = fleet.rollout(CanaryGate(min_feedback=100, promote_after=100))
    assert result.outcome == "promoted" and result.stable_tally == Tally(120, 60)


def test_rollout_of_a_refused_canary_ends_undecided_quickly() -> None:
    fleet = FakeFleet(refuse=True)
    result = fleet.rollout(CanaryGate(), timeout_s=600.0, start_timeout_s=5.0)
    assert result.outcome == "undecided" and "not in service" in result.reason
    assert result.seconds == 5.0 and result.checks == 0 and fleet.calls[-1] == ("v1", None, 0.0)


def test_rollout_clears_the_canary_when_it_fails_midway() -> None:
    fleet = FakeFleet()
    fleet.fail_fetch_after = 3
    with pytest.raises(RuntimeError, match="exploded"):
        fleet.rollout(CanaryGate())
    assert fleet.calls == [("v1", "v2", 0.2), ("v1", None, 0.0)] and fleet.canary is None


def test_rollout_rejects_a_share_without_two_arms_or_the_same_version() -> None:
    fleet = FakeFleet()
    for share in (0.0, 1.0):
        with pytest.raises(ValueError, match="share"):
            canary_rollout(SETTINGS, "v1", "v2", share=share, gate=CanaryGate(), timeout_s=1,
                           set_version=fleet.set_version, fetch_stats=fleet.fetch_stats)
    with pytest.raises(ValueError, match="is the stable version"):
        canary_rollout(SETTINGS, "v1", "v1", share=0.5, gate=CanaryGate(), timeout_s=1,
                       set_version=fleet.set_version, fetch_stats=fleet.fetch_stats)
    assert fleet.calls == []


def test_tally_since_handles_restarted_replicas_and_evictions() -> None:
    def stats(replica: str, **tallies: tuple[int, int]) -> dict[str, Any]:
        return {"replica": replica,
                "tally": {v: {"shown": s, "hits": h} for v, (s, h) in tallies.items()}}

    base = [stats("r0", v1=(10, 5), v2=(4, 2)), stats("r1", v1=(7, 7))]
    now = [stats("r0", v1=(15, 6), v2=(1, 0)), stats("r2", v1=(3, 1))]  # r1 replaced by r2
    assert tally_since(base, now) == {"v1": Tally(8, 2), "v2": Tally(1, 0)}
