"""The set of replicators the driver talks to: ``RayFleet`` (one actor per Ray node) and
``LocalFleet`` (in-process replicators, the fake for unit tests, with a ``kill`` driver).

Example:
    >>> fleet = LocalFleet.create("/tmp/nodes", ["node-a", "node-b"], KeySpec(), "k.pub")  # doctest: +SKIP
    >>> fleet.refresh()  # doctest: +SKIP
    (['node-a', 'node-b'], set())
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from replication.checkout import node_name, node_store_path
from replication.keys import KeySpec
from replication.replicator import (
    NAMESPACE,
    ActorStore,
    Replicator,
    SourceSpec,
    actor_class,
    actor_name,
)
from replication.store import Store, StoreError, open_store

__all__ = ["Fleet", "LocalFleet", "RayFleet"]


class Fleet(Protocol):
    """Live replicators by node name."""

    def refresh(self) -> tuple[list[str], set[str]]:
        """(live node names, dead node names); starts replicators on new nodes."""
        ...

    def call(self, names: list[str], method: str, *args: Any, timeout_s: float) -> dict[str, Any]:
        """Call a Replicator method on each node in parallel; failures come back as exceptions."""
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
        pings = self.call(sorted(fresh), "ping", timeout_s=60.0)
        for name, result in pings.items():
            if isinstance(result, Exception):
                self.handles.pop(name, None)
        return sorted(self.handles), dead

    def call(self, names: list[str], method: str, *args: Any, timeout_s: float) -> dict[str, Any]:
        import ray

        refs = {
            getattr(self.handles[n], method).remote(*args): n for n in names if n in self.handles
        }
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

    def store(self, name: str) -> Store:
        return ActorStore(self.handles[name], name, self.timeout_s)


class LocalFleet:
    """In-process replicators over local directories: the Ray-free fake for unit tests."""

    def __init__(self, replicators: dict[str, Replicator]) -> None:
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

    def call(self, names: list[str], method: str, *args: Any, timeout_s: float) -> dict[str, Any]:
        def one(name: str) -> Any:
            if name in self.down:
                return ConnectionError(f"{name} is dead")
            try:
                return getattr(self.replicators[name], method)(*args)
            except Exception as exc:  # noqa: BLE001 - mirrors RayFleet: errors are results
                return exc

        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            return dict(zip(names, pool.map(one, names), strict=True))

    def store(self, name: str) -> Store:
        if name in self.down:
            raise StoreError(f"{name} is dead")
        return self.replicators[name].vs.store
