"""The node-call seam: ``NodeOps`` / ``NodeCalls`` match every implementation, maintenance runs
against a small fake driver over fake nodes (no cluster, no Ray), and maintenance never
imports the cluster driver."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grimp
import pytest

from replication import maintenance
from replication.config import ClusterConfig, Primary
from replication.fleet import RayFleet
from replication.keys import Keyring, KeySpec
from replication.nodeops import InProcessCalls, NodeCalls, NodeOps
from replication.plan import GcPlan, Inventory, VersionInfo
from replication.quorum import Ack
from replication.replicator import Replicator
from replication.repo import Ref, VersionStore
from replication.store import MemoryStore
from security.audit import AuditLog, FixedClock

ROOT = Path(__file__).resolve().parents[2]


def _ops(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(cls).items()
        if callable(fn) and not name.startswith("_")
    }


def _params(sig: inspect.Signature) -> list[tuple[str, Any]]:
    # Once a class has been made a Ray actor in this process, Ray's tracing hook has added a
    # ``_ray_trace_ctx`` keyword to its methods in place: not part of the operation.
    return [(p.name, p.default) for p in sig.parameters.values() if p.name != "_ray_trace_ctx"]


# -- the surface ---------------------------------------------------------------------------
def test_node_calls_fan_out_exactly_the_node_ops_with_names_first() -> None:
    per_node, fanned = _ops(NodeOps), _ops(NodeCalls)
    assert set(fanned) == set(per_node)
    for name, sig in per_node.items():
        self_, *rest = _params(sig)
        assert _params(fanned[name]) == [self_, ("names", inspect.Parameter.empty), *rest], name


@pytest.mark.parametrize("impl", [RayFleet, InProcessCalls])
def test_every_fan_out_implements_each_operation_with_its_signature(impl: type) -> None:
    for name, sig in _ops(NodeCalls).items():
        assert _params(inspect.signature(getattr(impl, name))) == _params(sig), name


def test_the_replicator_answers_every_node_operation() -> None:
    for name, sig in _ops(NodeOps).items():
        assert _params(inspect.signature(getattr(Replicator, name))) == _params(sig), name


def test_maintenance_never_imports_the_cluster_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    graph = grimp.build_graph("replication")  # includes TYPE_CHECKING-only imports
    assert graph.find_shortest_chain("replication.maintenance", "replication.cluster") is None
    assert graph.find_shortest_chain("replication.nodeops", "replication.fleet") is None
    modules = sorted(m for m in graph.modules if m != "replication")
    cycles = [
        (a, b)
        for a in modules
        for b in graph.find_modules_directly_imported_by(a)
        if b != "replication" and a < b and graph.find_shortest_chain(b, a) is not None
    ]
    assert cycles == []


# -- fakes ---------------------------------------------------------------------------------
class FakeNode:
    """A ``NodeOps`` holding one inventory; records the calls it answers."""

    def __init__(self, name: str, inv: Inventory, *, refetch_error: str | None = None) -> None:
        self.name, self.inv, self.refetch_error = name, inv, refetch_error
        self.calls: list[tuple[Any, ...]] = []

    def ping(self) -> str:
        return self.name

    def status(self) -> dict[str, Any]:
        return {"node": self.name, "committed": self.inv.committed()}

    def inventory(self, deep: bool = False) -> Inventory:
        self.calls.append(("inventory", deep))
        return self.inv

    def prepare(self, source: tuple[str, str], version: str) -> Ack:
        return Ack(self.name, True)

    def commit(self, ref: Ref) -> Ack:
        return Ack(self.name, True)

    def abort(self, version: str) -> bool:
        return False

    def set_current(self, ref: Ref) -> Ack:
        return Ack(self.name, True)

    def catch_up(self, source: tuple[str, str]) -> dict[str, Any]:
        return {"node": self.name, "versions": [], "blobs": 0}

    def refetch(self, digest: str, source: tuple[str, str], drop: bool) -> Ack:
        self.calls.append(("refetch", digest, source, drop))
        if self.refetch_error:
            raise OSError(self.refetch_error)
        return Ack(self.name, True)

    def verify_versions(self) -> dict[str, str]:
        return {v: "ok" for v in sorted(self.inv.committed())}

    def gc(self, now: float, grace_s: float) -> GcPlan:
        self.calls.append(("gc", now, grace_s))
        return GcPlan(records=("v0",), blobs=("x", "y"))

    def set_keys(self, key_spec: KeySpec) -> str | None:
        self.calls.append(("set_keys", key_spec))
        return key_spec.load().active_id

    def reseal(self) -> int:
        return 2

    def s_read_bytes(self, key: str) -> bytes:
        return b""

    def s_write_bytes(self, key: str, data: bytes) -> None:
        self.calls.append(("s_write_bytes", key, data))


@dataclass
class FakeDriver:
    """A ``maintenance.ClusterDriver`` whose primary is node ``a``; ``c`` is dead."""

    config: ClusterConfig
    audit: AuditLog
    keyring: Keyring
    fleet: NodeCalls
    nodes: list[str]
    clock: FixedClock = field(default_factory=lambda: FixedClock(1_800_000_000.0))
    overrides: list[tuple[str | None, str]] = field(default_factory=list)

    def discover(self) -> list[str]:
        return self.nodes

    def resolve_primary(self) -> Primary:
        return Primary("node", "a", "a")

    def vs_of(self, primary: Primary) -> VersionStore:
        return VersionStore(MemoryStore(), self.keyring, node=primary.name)

    def node_vs(self, name: str) -> VersionStore:
        return self.vs_of(Primary("node", name, name))

    def catch_up(self) -> dict[str, Any]:
        return {}

    def write_override(self, node: str | None, reason: str) -> None:
        self.overrides.append((node, reason))


V1 = {"v1": VersionInfo("v1", frozenset({"d1", "d2"}), seq=1)}


@pytest.fixture
def nodes() -> dict[str, FakeNode]:
    return {
        "a": FakeNode("a", Inventory("a", V1, blobs=frozenset({"d1", "d2"}))),
        "b": FakeNode("b", Inventory("b", V1, frozenset({"d1", "d2"}), corrupt=frozenset({"d2"}))),
    }


@pytest.fixture
def driver(tmp_path: Path, key_spec: KeySpec, nodes: dict[str, FakeNode]) -> FakeDriver:
    def node(name: str) -> NodeOps:
        if name == "c":
            raise ConnectionError("c is dead")
        return nodes[name]

    config = ClusterConfig(
        primary_url=str(tmp_path / "primary"),
        node_root=str(tmp_path / "nodes"),
        public_key_path=str(tmp_path / "signing.pub"),
        audit_path=str(tmp_path / "audit.jsonl"),
        key_spec=key_spec,
        actor="test@host",
    )
    clock = FixedClock(1_800_000_000.0)
    return FakeDriver(
        config,
        AuditLog(Path(config.audit_path), clock),
        key_spec.load(),
        InProcessCalls(node),
        ["a", "b", "c"],
        clock,
    )


# -- maintenance over the seam ---------------------------------------------------------------
def test_in_process_calls_return_each_failure_as_that_nodes_result(driver: FakeDriver) -> None:
    got = driver.fleet.ping(["a", "c", "zz"])
    assert got["a"] == "a"
    assert isinstance(got["c"], ConnectionError) and isinstance(got["zz"], KeyError)


def test_repair_refetches_a_corrupt_blob_from_a_healthy_peer(
    driver: FakeDriver, nodes: dict[str, FakeNode]
) -> None:
    report = maintenance.repair(driver)
    assert nodes["b"].calls[-1] == ("refetch", "d2", ("peer", "replicator-a"), True)
    assert report["healed"] == [{"node": "b", "digest": "d2", "source": "a"}]
    assert report["failed"] == [] and report["unrepairable"] == []
    assert report["verified"] == {"a": {"v1": "ok"}, "b": {"v1": "ok"}, "c": "c is dead"}
    assert [e.action for e in driver.audit.entries()] == ["repair"]


def test_repair_reports_a_refetch_that_raised(
    driver: FakeDriver, nodes: dict[str, FakeNode]
) -> None:
    nodes["b"].refetch_error = "disk full"
    report = maintenance.repair(driver)
    assert report["healed"] == []
    assert report["failed"] == [{"node": "b", "digest": "d2", "source": "a", "error": "disk full"}]


def test_gc_runs_on_every_live_node_and_reports_the_dead_one(
    driver: FakeDriver, nodes: dict[str, FakeNode]
) -> None:
    out = maintenance.gc(driver, grace_s=60.0)
    assert out == {
        "a": {"records": ["v0"], "blobs": 2},
        "b": {"records": ["v0"], "blobs": 2},
        "c": "ConnectionError: c is dead",
    }
    assert nodes["a"].calls == [("gc", 1_800_000_000.0, 60.0)]


def test_rotate_key_loads_the_new_ring_everywhere_then_reseals(
    driver: FakeDriver, nodes: dict[str, FakeNode], tmp_path: Path
) -> None:
    from replication.keys import generate_key_file

    new = tmp_path / "keys" / "new.key"
    generate_key_file(new)
    spec = KeySpec(files=(str(new), *driver.config.key_spec.files), env_var=None)
    out = maintenance.rotate_key(driver, spec)
    assert driver.keyring.active_id == out["key_id"] == spec.load().active_id
    assert all(n.calls == [("set_keys", spec)] for n in nodes.values())
    assert out["resealed"] == {"a": 2, "b": 2, "c": "ConnectionError: c is dead"}
