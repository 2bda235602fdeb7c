"""The typed node-call surface: what one replicator answers (``NodeOps``), the same operations
fanned out over many nodes (``NodeCalls``), and ``InProcessCalls``, the in-process fan-out that
``LocalFleet`` and unit-test fakes use.

A fan-out never raises for one node's failure: each node's entry in the ``Results`` is either
what it answered or the exception it failed with (a dead node, a timeout, an error it raised).

Example:
    >>> calls = InProcessCalls({"node-a": replicator}.__getitem__)  # doctest: +SKIP
    >>> calls.prepare(["node-a"], ("store", "/data/primary"), "v1")  # doctest: +SKIP
    {'node-a': Ack(node='node-a', ok=True, detail='4096 bytes in 0.01s')}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeAlias, TypeVar

from replication.keys import KeySpec
from replication.plan import GcPlan, Inventory
from replication.quorum import Ack
from replication.repo import Ref

__all__ = ["InProcessCalls", "NodeCalls", "NodeOps", "Results", "SourceSpec"]

T = TypeVar("T")

SourceSpec: TypeAlias = tuple[str, str]  # ("store", url) or ("peer", actor name)
Results: TypeAlias = dict[str, T | Exception]  # per node: its answer, or what it failed with


class NodeOps(Protocol):
    """The operations one node's replicator answers (``Replicator`` implements them).

    The ``s_*`` byte-level store calls a peer reaches through ``ActorStore`` are not listed,
    except the two the driver fans out for ``refs/primary``.
    """

    def ping(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    def inventory(self, deep: bool = False) -> Inventory: ...

    def prepare(self, source: SourceSpec, version: str) -> Ack: ...

    def commit(self, ref: Ref) -> Ack: ...

    def abort(self, version: str) -> bool: ...

    def set_current(self, ref: Ref) -> Ack: ...

    def catch_up(self, source: SourceSpec) -> dict[str, Any]: ...

    def refetch(self, digest: str, source: SourceSpec, drop: bool) -> Ack: ...

    def verify_versions(self) -> dict[str, str]: ...

    def gc(self, now: float, grace_s: float) -> GcPlan: ...

    def set_keys(self, key_spec: KeySpec) -> str | None: ...

    def reseal(self) -> int: ...

    def s_read_bytes(self, key: str) -> bytes: ...

    def s_write_bytes(self, key: str, data: bytes) -> None: ...


class NodeCalls(Protocol):
    """``NodeOps`` run on each of ``names`` in parallel, one method per operation.

    Names without a replicator are left out of (Ray) or failed in (in-process) the results.
    """

    def ping(self, names: Iterable[str]) -> Results[str]: ...

    def status(self, names: Iterable[str]) -> Results[dict[str, Any]]: ...

    def inventory(self, names: Iterable[str], deep: bool = False) -> Results[Inventory]: ...

    def prepare(self, names: Iterable[str], source: SourceSpec, version: str) -> Results[Ack]: ...

    def commit(self, names: Iterable[str], ref: Ref) -> Results[Ack]: ...

    def abort(self, names: Iterable[str], version: str) -> Results[bool]: ...

    def set_current(self, names: Iterable[str], ref: Ref) -> Results[Ack]: ...

    def catch_up(self, names: Iterable[str], source: SourceSpec) -> Results[dict[str, Any]]: ...

    def refetch(
        self, names: Iterable[str], digest: str, source: SourceSpec, drop: bool
    ) -> Results[Ack]: ...

    def verify_versions(self, names: Iterable[str]) -> Results[dict[str, str]]: ...

    def gc(self, names: Iterable[str], now: float, grace_s: float) -> Results[GcPlan]: ...

    def set_keys(self, names: Iterable[str], key_spec: KeySpec) -> Results[str | None]: ...

    def reseal(self, names: Iterable[str]) -> Results[int]: ...

    def s_read_bytes(self, names: Iterable[str], key: str) -> Results[bytes]: ...

    def s_write_bytes(self, names: Iterable[str], key: str, data: bytes) -> Results[None]: ...


class InProcessCalls:
    """``NodeCalls`` over in-process ``NodeOps``, one thread per node; ``node(name)`` raising
    (e.g. ``ConnectionError`` for a node marked dead) fails just that node."""

    def __init__(self, node: Callable[[str], NodeOps]) -> None:
        self._node = node

    def _each(self, names: Iterable[str], op: Callable[[NodeOps], T]) -> Results[T]:
        def one(name: str) -> T | Exception:
            try:
                return op(self._node(name))
            except Exception as exc:  # noqa: BLE001 - mirrors RayFleet: errors are results
                return exc

        names = list(names)
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            return dict(zip(names, pool.map(one, names), strict=True))

    def ping(self, names: Iterable[str]) -> Results[str]:
        return self._each(names, lambda n: n.ping())

    def status(self, names: Iterable[str]) -> Results[dict[str, Any]]:
        return self._each(names, lambda n: n.status())

    def inventory(self, names: Iterable[str], deep: bool = False) -> Results[Inventory]:
        return self._each(names, lambda n: n.inventory(deep))

    def prepare(self, names: Iterable[str], source: SourceSpec, version: str) -> Results[Ack]:
        return self._each(names, lambda n: n.prepare(source, version))

    def commit(self, names: Iterable[str], ref: Ref) -> Results[Ack]:
        return self._each(names, lambda n: n.commit(ref))

    def abort(self, names: Iterable[str], version: str) -> Results[bool]:
        return self._each(names, lambda n: n.abort(version))

    def set_current(self, names: Iterable[str], ref: Ref) -> Results[Ack]:
        return self._each(names, lambda n: n.set_current(ref))

    def catch_up(self, names: Iterable[str], source: SourceSpec) -> Results[dict[str, Any]]:
        return self._each(names, lambda n: n.catch_up(source))

    def refetch(
        self, names: Iterable[str], digest: str, source: SourceSpec, drop: bool
    ) -> Results[Ack]:
        return self._each(names, lambda n: n.refetch(digest, source, drop))

    def verify_versions(self, names: Iterable[str]) -> Results[dict[str, str]]:
        return self._each(names, lambda n: n.verify_versions())

    def gc(self, names: Iterable[str], now: float, grace_s: float) -> Results[GcPlan]:
        return self._each(names, lambda n: n.gc(now, grace_s))

    def set_keys(self, names: Iterable[str], key_spec: KeySpec) -> Results[str | None]:
        return self._each(names, lambda n: n.set_keys(key_spec))

    def reseal(self, names: Iterable[str]) -> Results[int]:
        return self._each(names, lambda n: n.reseal())

    def s_read_bytes(self, names: Iterable[str], key: str) -> Results[bytes]:
        return self._each(names, lambda n: n.s_read_bytes(key))

    def s_write_bytes(self, names: Iterable[str], key: str, data: bytes) -> Results[None]:
        return self._each(names, lambda n: n.s_write_bytes(key, data))
