"""The set of replicators the driver talks to: ``RayFleet`` (one actor per Ray node) and
``LocalFleet`` (in-process replicators, the fake for unit tests, with a ``kill`` driver).

Example:
    >>> fleet = LocalFleet.create("/tmp/nodes", ["node-a", "node-b"], KeySpec(), "k.pub")  # doctest: +SKIP
    >>> fleet.refresh()  # doctest: +SKIP
    (['node-a', 'node-b'], set())
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from replication.checkout import node_name, node_store_path
from replication.errors import StoreError
from replication.keys import KeySpec
from replication.nodeops import InProcessCalls, NodeCalls, NodeOps, Results, SourceSpec
from replication.plan import GcPlan, Inventory
from replication.quorum import Ack
from replication.replicator import NAMESPACE, ActorStore, Replicator, actor_class, actor_name
from replication.repo import Ref
from replication.store import Store, open_store

__all__ = ["Fleet", "LocalFleet", "RayFleet"]


class Fleet(NodeCalls, Protocol):
    """Live replicators by node name; each ``NodeCalls`` method fans one operation out to them
    in parallel, failures coming back as exceptions."""

    def refresh(self) -> tuple[list[str], set[str]]:
        """(live node names, dead node names); starts replicators on new nodes."""
        ...

    def store(self, name: str) -> Store:
        """A Store view of a node's local store, usable from the driver."""
        ...


class RayFleet:
    """One ``Replicator`` actor per live Ray node, pinned with NodeAffinitySchedulingStrategy."""

    def __init__(
        self,
        node_root: str,
        key_spec: KeySpec,
        public_key_path: str,
        *,
        detached: bool = True,
        timeout_s: float = 300.0,
    ) -> None:
        self.node_root = node_root
        self.key_spec = key_spec
        self.public_key_path = public_key_path
        self.detached = detached
        self.timeout_s = timeout_s
        self.handles: dict[str, Any] = {}

    def refresh(self) -> tuple[list[str], set[str]]:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = ray.nodes()
        alive = {node_name(n["NodeID"]): n["NodeID"] for n in nodes if n["Alive"]}
        dead = {node_name(n["NodeID"]) for n in nodes if not n["Alive"]} - set(alive)
        for name in [n for n in self.handles if n not in alive]:
            del self.handles[name]
        cls = actor_class()
        fresh = {}
        for name, node_id in sorted(alive.items()):
            if name not in self.handles:
                fresh[name] = cls.options(
                    name=actor_name(name),
                    namespace=NAMESPACE,
                    get_if_exists=True,
                    lifetime="detached" if self.detached else None,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                ).remote(
                    name,
                    str(node_store_path(self.node_root, node_id)),
                    self.key_spec,
                    str(self.public_key_path),
                )
        self.handles.update(fresh)
        pings = self._gather(sorted(fresh), "ping", lambda h: h.ping.remote(), timeout_s=60.0)
        for name, result in pings.items():
            if isinstance(result, Exception):
                self.handles.pop(name, None)
        return sorted(self.handles), dead

    def _gather(
        self,
        names: Iterable[str],
        method: str,
        submit: Callable[[Any], Any],
        *,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """``submit(handle)`` (an actor method's ``.remote(...)``) on each named node, then wait
        up to ``timeout_s`` (default: the fleet's) for all; ``method`` only names timeouts."""
        import ray

        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        refs = {submit(self.handles[n]): n for n in names if n in self.handles}
        if not refs:
            return {}
        ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        out: dict[str, Any] = {}
        for ref in ready:
            try:
                out[refs[ref]] = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a dead node's actor surfaces as any RayError
                out[refs[ref]] = getattr(exc, "cause", None) or exc
        for ref in pending:
            ray.cancel(ref, force=False)
            out[refs[ref]] = TimeoutError(f"{refs[ref]}.{method}: no answer within {timeout_s}s")
        return out

    # -- NodeCalls: one explicit remote call per operation ----------------------------------
    def ping(self, names: Iterable[str]) -> Results[str]:
        return self._gather(names, "ping", lambda h: h.ping.remote())

    def status(self, names: Iterable[str]) -> Results[dict[str, Any]]:
        return self._gather(names, "status", lambda h: h.status.remote())

    def inventory(self, names: Iterable[str], deep: bool = False) -> Results[Inventory]:
        return self._gather(names, "inventory", lambda h: h.inventory.remote(deep))

    def prepare(self, names: Iterable[str], source: SourceSpec, version: str) -> Results[Ack]:
        return self._gather(names, "prepare", lambda h: h.prepare.remote(source, version))

    def commit(self, names: Iterable[str], ref: Ref) -> Results[Ack]:
        return self._gather(names, "commit", lambda h: h.commit.remote(ref))

    def abort(self, names: Iterable[str], version: str) -> Results[bool]:
        return self._gather(names, "abort", lambda h: h.abort.remote(version))

    def set_current(self, names: Iterable[str], ref: Ref) -> Results[Ack]:
        return self._gather(names, "set_current", lambda h: h.set_current.remote(ref))

    def catch_up(self, names: Iterable[str], source: SourceSpec) -> Results[dict[str, Any]]:
        return self._gather(names, "catch_up", lambda h: h.catch_up.remote(source))

    def refetch(
        self, names: Iterable[str], digest: str, source: SourceSpec, drop: bool
    ) -> Results[Ack]:
        return self._gather(names, "refetch", lambda h: h.refetch.remote(digest, source, drop))

    def verify_versions(self, names: Iterable[str]) -> Results[dict[str, str]]:
        return self._gather(names, "verify_versions", lambda h: h.verify_versions.remote())

    def gc(self, names: Iterable[str], now: float, grace_s: float) -> Results[GcPlan]:
        return self._gather(names, "gc", lambda h: h.gc.remote(now, grace_s))

    def set_keys(self, names: Iterable[str], key_spec: KeySpec) -> Results[str | None]:
        return self._gather(names, "set_keys", lambda h: h.set_keys.remote(key_spec))

    def reseal(self, names: Iterable[str]) -> Results[int]:
        return self._gather(names, "reseal", lambda h: h.reseal.remote())

    def s_read_bytes(self, names: Iterable[str], key: str) -> Results[bytes]:
        return self._gather(names, "s_read_bytes", lambda h: h.s_read_bytes.remote(key))

    def s_write_bytes(self, names: Iterable[str], key: str, data: bytes) -> Results[None]:
        return self._gather(names, "s_write_bytes", lambda h: h.s_write_bytes.remote(key, data))

    def store(self, name: str) -> Store:
        return ActorStore(self.handles[name], name, self.timeout_s)


class LocalFleet(InProcessCalls):
    """In-process replicators over local directories: the Ray-free fake for unit tests."""

    def __init__(self, replicators: dict[str, Replicator]) -> None:
        super().__init__(self._node)
        self.replicators = replicators
        self.down: set[str] = set()

    @classmethod
    def create(
        cls, root: str | Path, names: list[str], key_spec: KeySpec, public_key_path: str | Path
    ) -> LocalFleet:
        fleet = cls({})
        for name in names:
            fleet.add(name, Path(root) / name / "store", key_spec, public_key_path)
        return fleet

    def add(
        self, name: str, store_url: str | Path, key_spec: KeySpec, public_key_path: str | Path
    ) -> None:
        """Join a new node (it starts empty)."""
        self.replicators[name] = Replicator(
            name, str(store_url), key_spec, str(public_key_path), resolve=self._resolve
        )

    def kill(self, name: str) -> None:
        """Simulate a dead node: calls to it fail, it is reported dead."""
        self.down.add(name)

    def _resolve(self, spec: SourceSpec) -> Store:
        kind, where = spec
        if kind == "store":
            return open_store(where)
        name = where.removeprefix("replicator-")
        if name in self.down:
            raise StoreError(f"peer {name} is down")
        return self.replicators[name].vs.store

    def refresh(self) -> tuple[list[str], set[str]]:
        return sorted(set(self.replicators) - self.down), set(self.down)

    def _node(self, name: str) -> NodeOps:
        if name in self.down:
            raise ConnectionError(f"{name} is dead")
        return self.replicators[name]

    def store(self, name: str) -> Store:
        if name in self.down:
            raise StoreError(f"{name} is dead")
        return self.replicators[name].vs.store
