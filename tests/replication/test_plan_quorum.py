from __future__ import annotations

import pytest

from replication.errors import ConfigError, NoPrimaryCandidate, VersionError
from replication.plan import Inventory, VersionInfo, plan_catch_up, plan_gc, plan_repair, plan_sync
from replication.quorum import (
    Ack,
    Candidate,
    choose_primary,
    lag,
    next_seq,
    quorum_reached,
    validate_w,
)

V1 = VersionInfo("v1", frozenset({"a", "b"}), seq=1)
V2 = VersionInfo("v2", frozenset({"b", "c"}), seq=2)
PRIMARY = Inventory("primary", {"v1": V1, "v2": V2}, blobs=frozenset("abc"))


def test_plan_sync_fetches_only_what_is_missing_and_drops_corrupt_first() -> None:
    target = Inventory("n1", {"v1": V1}, blobs=frozenset("ab"), corrupt=frozenset("b"))
    plan = plan_sync(PRIMARY, target, ["v2"])
    assert plan.versions == ("v2",) and plan.fetch == ("b", "c") and plan.drop == ("b",)


def test_plan_sync_refuses_an_incomplete_source() -> None:
    broken = Inventory("p", {"v1": V1}, blobs=frozenset("a"))
    with pytest.raises(VersionError, match="complete"):
        plan_sync(broken, Inventory("n1", {}), ["v1"])


def test_catch_up_skips_uncommitted_and_up_to_date() -> None:
    pending = VersionInfo("v3", frozenset({"d"}), seq=None)
    src = Inventory("p", {"v1": V1, "v2": V2, "v3": pending}, blobs=frozenset("abcd"))
    target = Inventory("n1", {"v1": V1}, blobs=frozenset("ab"))
    plan = plan_catch_up(src, target)
    assert plan.versions == ("v2",) and plan.fetch == ("c",)
    assert plan_catch_up(src, Inventory("n2", {"v1": V1, "v2": V2}, blobs=frozenset("abc"))).empty


def test_plan_repair_prefers_the_primary_and_reports_stuck_blobs() -> None:
    n1 = Inventory("n1", {"v1": V1}, blobs=frozenset("ab"), corrupt=frozenset("a"))
    n2 = Inventory("n2", {"v1": V1}, blobs=frozenset("ab"))
    steps, stuck = plan_repair([n2, n1, PRIMARY], prefer=["primary"])
    assert [(s.node, s.digest, s.source, s.drop) for s in steps] == [("n1", "a", "primary", True)]
    assert stuck == ()
    lonely = Inventory("n3", {"v9": VersionInfo("v9", frozenset({"z"}), seq=3)})
    assert plan_repair([lonely, n2])[1] == (("n3", "z"),)


def test_plan_gc_never_collects_committed_versions() -> None:
    stale = VersionInfo("v3", frozenset({"d"}), seq=None, prepared_at=0.0)
    fresh = VersionInfo("v4", frozenset({"e"}), seq=None, prepared_at=95.0)
    inv = Inventory("n", {"v1": V1, "v2": V2, "v3": stale, "v4": fresh}, blobs=frozenset("abcdex"))
    plan = plan_gc(inv, now=100.0, grace_s=10.0)
    assert plan.records == ("v3",) and plan.blobs == ("d", "x")
    assert {"v1", "v2", "v4"} == plan.kept_versions


def test_quorum_counts_distinct_successful_nodes() -> None:
    acks = [Ack("n1", True), Ack("n1", True), Ack("n2", False, "dead")]
    assert not quorum_reached(acks, 2)
    assert quorum_reached([*acks, Ack("n3", True)], 2)


def test_validate_w() -> None:
    validate_w(2, 3)
    with pytest.raises(ConfigError, match="only 1 live"):
        validate_w(2, 1)
    with pytest.raises(ConfigError):
        validate_w(0, 3)


def test_choose_primary_newest_commit_wins() -> None:
    assert (
        choose_primary([Candidate("n1", {"v1": 1, "v2": 2}), Candidate("n2", {"v1": 1, "v3": 3})])
        == "n2"
    )


def test_choose_primary_is_deterministic_on_ties_and_ignores_dead_nodes() -> None:
    same = {"v1": 1, "v2": 2}
    assert choose_primary([Candidate("n2", same), Candidate("n1", same)]) == "n1"
    assert choose_primary([Candidate("n1", {"v2": 2}), Candidate("n2", same)]) == "n2"
    assert choose_primary([Candidate("n0", {"v9": 9}, alive=False), Candidate("n5", same)]) == "n5"


def test_choose_primary_without_candidates() -> None:
    with pytest.raises(NoPrimaryCandidate, match="restore"):
        choose_primary([Candidate("n1", {}), Candidate("n2", {"v1": 1}, alive=False)])


def test_lag_and_next_seq() -> None:
    assert lag({"v1": 1, "v2": 2}, {"v1": 1}) == 1
    assert next_seq([]) == 1 and next_seq([1, 5]) == 6
