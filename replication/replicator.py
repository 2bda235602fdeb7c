"""The per-node replicator: a Ray-free ``Replicator`` owning one node-local store, plus the
thin Ray adapter (``actor_class``) and ``ActorStore``, a ``Store`` that reaches a peer's store
through its actor.

Tests drive ``Replicator`` directly; the cluster runs it as one actor per Ray node, pinned with
NodeAffinitySchedulingStrategy.

Example:
    >>> rep = Replicator("node-a", "/tmp/a/store", KeySpec(), "keys/signing.pub")  # doctest: +SKIP
    >>> rep.prepare(("store", "/data/primary"), "v1").ok  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from replication.checkout import materialise
from replication.errors import (
    IntegrityError,
    KeyMissingError,
    ReplicationError,
    StoreError,
    VersionError,
)
from replication.keys import KeySpec
from replication.nodeops import SourceSpec
from replication.plan import GcPlan, Inventory, plan_gc, plan_sync
from replication.quorum import Ack
from replication.repo import Ref, VersionStore
from replication.store import CHUNK_BYTES, Store, open_store
from replication.sync import apply_gc, apply_sync, catch_up, copy_refs
from security.audit import Clock, SystemClock

__all__ = ["NAMESPACE", "ActorStore", "Replicator", "SourceSpec", "actor_class", "actor_name"]

NAMESPACE = "recdrill-replication"


def actor_name(node: str) -> str:
    return f"replicator-{node}"


class ActorStore:
    """A ``Store`` whose bytes live behind a replicator actor (a peer's node-local store)."""

    def __init__(self, handle: Any, url: str, timeout_s: float = 120.0) -> None:
        self._handle = handle
        self.url = url
        self._timeout_s = timeout_s

    def _ask(self, submit: Callable[[Any], Any]) -> Any:
        """``submit(handle)`` (an actor method's ``.remote(...)``), then its answer; peer
        errors re-raised as themselves, an unreachable peer as ``StoreError``."""
        import ray

        try:
            return ray.get(submit(self._handle), timeout=self._timeout_s)
        except ReplicationError:
            raise
        except (ray.exceptions.RayError, TimeoutError) as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ReplicationError):
                raise cause from exc
            raise StoreError(
                f"peer store {self.url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc

    def local_path(self) -> Path | None:
        return None

    def read_bytes(self, key: str) -> bytes:
        return self._ask(lambda h: h.s_read_bytes.remote(key))

    def read_range(self, key: str, start: int, length: int) -> bytes:
        return self._ask(lambda h: h.s_read_range.remote(key, start, length))

    def iter_chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        size, offset = self.size(key), 0
        while offset < size:
            chunk = self.read_range(key, offset, chunk_bytes)
            if not chunk:
                raise StoreError(f"{key} on {self.url} shrank while being read")
            offset += len(chunk)
            yield chunk

    def write_bytes(self, key: str, data: bytes) -> None:
        self._ask(lambda h: h.s_write_bytes.remote(key, data))

    def write_chunks(self, key: str, chunks: Iterable[bytes]) -> None:
        token = self._ask(lambda h: h.s_upload_begin.remote())
        try:
            for chunk in chunks:
                self._ask(lambda h: h.s_upload_part.remote(token, chunk))  # noqa: B023 - runs now
            self._ask(lambda h: h.s_upload_commit.remote(token, key))
        except BaseException:
            self._ask(lambda h: h.s_upload_abort.remote(token))
            raise

    def exists(self, key: str) -> bool:
        return self._ask(lambda h: h.s_exists.remote(key))

    def size(self, key: str) -> int:
        return self._ask(lambda h: h.s_size.remote(key))

    def list(self, prefix: str) -> list[str]:
        return self._ask(lambda h: h.s_list.remote(prefix))

    def delete(self, key: str) -> None:
        self._ask(lambda h: h.s_delete.remote(key))


def _default_resolver(spec: SourceSpec) -> Store:
    kind, where = spec
    if kind == "store":
        return open_store(where)
    if kind == "peer":
        import ray

        return ActorStore(ray.get_actor(where, namespace=NAMESPACE), where)
    raise ValueError(f"unknown source kind {kind!r}: expected 'store' or 'peer'")


class Replicator:
    """Owns one node-local store: syncs versions into it, verifies, commits, repairs, collects."""

    def __init__(
        self,
        node: str,
        store_url: str,
        key_spec: KeySpec,
        public_key_path: str,
        *,
        cache_dir: str | None = None,
        resolve: Callable[[SourceSpec], Store] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.node = node
        self.store_url = store_url
        self.key_spec = key_spec
        self.public_key_path = public_key_path
        self.vs = VersionStore(open_store(store_url), key_spec.load(), node=node)
        self.vs.init()
        local = self.vs.store.local_path()
        work = local.parent if local else Path.home() / ".cache/recdrill" / node
        self.cache_dir = Path(cache_dir) if cache_dir else work / "checkouts"
        self._uploads = work / "uploads"
        self._resolve = resolve or _default_resolver
        self._clock = clock or SystemClock()
        self.last_verification: dict[str, Any] | None = None

    # -- liveness ----------------------------------------------------------------------
    def ping(self) -> str:
        return self.node

    def pid(self) -> int:
        """Process id (drills kill it to simulate losing the node mid-operation)."""
        return os.getpid()

    def _source(self, spec: SourceSpec) -> VersionStore:
        return VersionStore(self._resolve(spec), self.vs.keyring, node=spec[1])

    # -- store access for peers (ActorStore) -----------------------------------------------
    def s_read_bytes(self, key: str) -> bytes:
        return self.vs.store.read_bytes(key)

    def s_read_range(self, key: str, start: int, length: int) -> bytes:
        return self.vs.store.read_range(key, start, length)

    def s_write_bytes(self, key: str, data: bytes) -> None:
        self.vs.store.write_bytes(key, data)

    def s_exists(self, key: str) -> bool:
        return self.vs.store.exists(key)

    def s_size(self, key: str) -> int:
        return self.vs.store.size(key)

    def s_list(self, prefix: str) -> list[str]:
        return self.vs.store.list(prefix)

    def s_delete(self, key: str) -> None:
        self.vs.store.delete(key)

    def s_upload_begin(self) -> str:
        self._uploads.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        (self._uploads / token).touch()
        return token

    def s_upload_part(self, token: str, data: bytes) -> None:
        with (self._uploads / token).open("ab") as fh:
            fh.write(data)

    def s_upload_commit(self, token: str, key: str) -> None:
        part = self._uploads / token
        with part.open("rb") as fh:
            self.vs.store.write_chunks(key, iter(lambda: fh.read(CHUNK_BYTES), b""))
        part.unlink()

    def s_upload_abort(self, token: str) -> None:
        (self._uploads / token).unlink(missing_ok=True)

    # -- replication -------------------------------------------------------------------------
    def inventory(self, deep: bool = False) -> Inventory:
        inv = self.vs.inventory(deep=deep)
        if deep:
            self.last_verification = {
                "at": self._clock.now(),
                "ok": not inv.corrupt,
                "corrupt": sorted(inv.corrupt),
            }
        return inv

    def prepare(self, source: SourceSpec, version: str) -> Ack:
        """Copy ``version`` from ``source`` and verify it (blobs + signature); ack when done."""
        started = time.perf_counter()
        try:
            src = self._source(source)
            plan = plan_sync(src.inventory(), self.vs.inventory(), [version])
            copied = apply_sync(plan, src, self.vs)
            materialise(self.vs, version, self.cache_dir, self.public_key_path)
        except (ReplicationError, OSError) as exc:
            return Ack(self.node, False, f"{type(exc).__name__}: {exc}")
        return Ack(self.node, True, f"{copied} bytes in {time.perf_counter() - started:.2f}s")

    def commit(self, ref: Ref) -> Ack:
        """Mark ``ref.version`` committed and make it current; it must be held complete."""
        if not self.vs.inventory().complete(ref.version):
            return Ack(self.node, False, f"{ref.version} not held completely: prepare it first")
        self.vs.mark_committed(ref)
        self.vs.flip_current(ref)
        return Ack(self.node, True)

    def abort(self, version: str) -> bool:
        """Drop an uncommitted version's record and checkout; True when something was removed."""
        if version in self.vs.committed() or not self.vs.has_record(version):
            return False
        self.vs.delete_record(version)
        shutil.rmtree(self.cache_dir / version, ignore_errors=True)
        return True

    def set_current(self, ref: Ref) -> Ack:
        """Point refs/current at a committed version held here (promote, rollback)."""
        if ref.version not in self.vs.committed() or not self.vs.inventory().complete(ref.version):
            return Ack(self.node, False, f"{ref.version} is not committed and complete here")
        self.vs.flip_current(ref)
        return Ack(self.node, True)

    def catch_up(self, source: SourceSpec) -> dict[str, Any]:
        """Fetch every committed version of ``source`` this node lacks, verify, mirror refs."""
        src = self._source(source)
        plan = catch_up(src, self.vs)
        for version in plan.versions:
            materialise(self.vs, version, self.cache_dir, self.public_key_path)
        copy_refs(src, self.vs)
        return {"node": self.node, "versions": list(plan.versions), "blobs": len(plan.fetch)}

    def refetch(self, digest: str, source: SourceSpec, drop: bool) -> Ack:
        """Anti-entropy: replace a missing or corrupt blob with a verified copy from a peer."""
        try:
            if drop:
                self.vs.delete_blob(digest)
            src = self._source(source)
            self.vs.put_stored(digest, src.iter_stored(digest))
        except (ReplicationError, OSError) as exc:
            return Ack(self.node, False, f"{type(exc).__name__}: {exc}")
        return Ack(self.node, True)

    def verify_versions(self) -> dict[str, str]:
        """Materialise (and so verify) every committed version; {version: "ok" | error}."""
        out = {}
        for version in sorted(self.vs.committed()):
            try:
                materialise(self.vs, version, self.cache_dir, self.public_key_path)
                out[version] = "ok"
            except (IntegrityError, KeyMissingError, VersionError) as exc:
                out[version] = str(exc)
        return out

    def gc(self, now: float, grace_s: float) -> GcPlan:
        plan = plan_gc(self.vs.inventory(), now=now, grace_s=grace_s)
        apply_gc(plan, self.vs)
        for version in plan.records:
            shutil.rmtree(self.cache_dir / version, ignore_errors=True)
        return plan

    def set_keys(self, key_spec: KeySpec) -> str | None:
        """Reload the keyring (e.g. [new, old] before a rotation); returns the active key id."""
        self.key_spec = key_spec
        self.vs.keyring = key_spec.load()
        return self.vs.keyring.active_id

    def reseal(self) -> int:
        """Re-encrypt every blob with the active key, then update records; returns blobs rewritten."""
        from replication.sync import reseal_store

        return reseal_store(self.vs)

    def status(self) -> dict[str, Any]:
        committed = {v: r.seq for v, r in self.vs.committed().items()}
        current, previous = self.vs.get_ref("current"), self.vs.get_ref("previous")
        return {
            "node": self.node,
            "store": self.store_url,
            "committed": committed,
            "held": self.vs.list_versions(),
            "current": current.version if current else None,
            "previous": previous.version if previous else None,
            "last_verification": self.last_verification,
        }


def actor_class() -> Any:
    """``Replicator`` as a Ray actor class (threaded, so peers can read while it syncs)."""
    import ray

    # max_concurrency is an actor option that ray's typing stubs do not list.
    return ray.remote(num_cpus=0, max_concurrency=8, max_restarts=0)(Replicator)  # type: ignore[call-overload]
