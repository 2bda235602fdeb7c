"""The content-addressed layout of one store, over any ``Store``.

::

    store.json                    format marker; its absence means "store unavailable"
    blobs/sha256/<hex>            file contents, addressed by plaintext sha256 (AES-GCM envelope
                                  when a key is active, else clear bytes)
    manifests/<version>.json      VersionRecord: every file of the artifact with sha256/size,
                                  encryption key id, prepared time
    refs/current, refs/previous   Ref JSON {"version", "seq", "at"}
    refs/committed/<version>      commit marker, Ref JSON; present = committed (seq orders commits)

Every blob read is decrypted (when sealed) and checked against its sha256 before a caller
sees the end of the stream; failures raise IntegrityError naming version, file and node.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from replication.crypto import decrypt_chunks, encrypt_chunks, envelope_key_id, is_encrypted
from replication.errors import (
    IntegrityError,
    KeyMissingError,
    NotFound,
    StoreError,
    StoreUnavailable,
    VersionError,
)
from replication.keys import Keyring
from replication.plan import Inventory, VersionInfo
from replication.store import CHUNK_BYTES, Store

__all__ = ["BlobRef", "Ref", "VersionRecord", "VersionStore", "check_version_name"]

STORE_FORMAT = "recdrill-store/1"
RECORD_FORMAT = "recdrill-store-manifest/1"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")


def check_version_name(version: str) -> str:
    """Versions become file names: letters, digits, ``.``, ``_``, ``-``; at most 128 chars."""
    if not _VERSION_RE.fullmatch(version):  # match's "$" also took a trailing newline
        raise VersionError(
            f"invalid version name {version!r}: expected letters, digits, '.', '_' or '-' "
            "(e.g. 20261129T071500Z-3f2a9c)"
        )
    return version


@dataclass(frozen=True)
class BlobRef:
    """One file of a version: its relative path, plaintext sha256 and size."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class VersionRecord:
    """A version's entry in a store: which blobs make up the artifact directory."""

    version: str
    files: tuple[BlobRef, ...]
    key_id: str | None
    prepared_at: float
    parent: str | None = None

    @property
    def digests(self) -> frozenset[str]:
        return frozenset(f.sha256 for f in self.files)

    def to_json_bytes(self) -> bytes:
        body = {"format": RECORD_FORMAT, **asdict(self)}
        body["files"] = [asdict(f) for f in self.files]
        return (json.dumps(body, sort_keys=True, indent=2) + "\n").encode()

    @classmethod
    def from_json_bytes(cls, data: bytes) -> VersionRecord:
        body = json.loads(data)
        if body.pop("format", None) != RECORD_FORMAT:
            raise ValueError(f"expected format {RECORD_FORMAT}")
        files = tuple(BlobRef(**f) for f in body.pop("files"))
        for f in files:
            if not _HEX_RE.match(f.sha256) or "/.." in "/" + f.path or f.path.startswith("/"):
                raise ValueError(f"bad file entry {f}")
        return cls(files=files, **body)


@dataclass(frozen=True)
class Ref:
    """A pointer to a committed version with its commit sequence number."""

    version: str
    seq: int
    at: str

    def to_json_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_json_bytes(cls, data: bytes) -> Ref:
        return cls(**json.loads(data))


def _blob_key(digest: str) -> str:
    if not _HEX_RE.match(digest):
        raise IntegrityError(f"malformed blob address {digest!r}")
    return f"blobs/sha256/{digest}"


class VersionStore:
    """Blobs, version records and refs in one ``Store``, with verification on every read.

    Example:
        >>> from replication.store import MemoryStore
        >>> vs = VersionStore(MemoryStore(), Keyring(), node="primary")
        >>> vs.init(); vs.check()
    """

    def __init__(self, store: Store, keyring: Keyring, *, node: str) -> None:
        self.store = store
        self.keyring = keyring
        self.node = node

    # -- health --------------------------------------------------------------------------
    def init(self) -> None:
        """Create the format marker (idempotent)."""
        if not self.store.exists("store.json"):
            self.store.write_bytes("store.json", json.dumps({"format": STORE_FORMAT}).encode())

    def check(self) -> None:
        """Raise StoreUnavailable unless the store is reachable and initialised."""
        try:
            marker = json.loads(self.store.read_bytes("store.json"))
        except (StoreError, ValueError) as exc:
            raise StoreUnavailable(
                f"store {self.store.url} ({self.node}) is unreachable or not initialised: {exc}"
            ) from exc
        if marker.get("format") != STORE_FORMAT:
            raise StoreUnavailable(
                f"{self.store.url}: expected format {STORE_FORMAT}, found {marker}"
            )

    # -- blobs ---------------------------------------------------------------------------
    def has_blob(self, digest: str) -> bool:
        return self.store.exists(_blob_key(digest))

    def list_blobs(self) -> frozenset[str]:
        return frozenset(k.rsplit("/", 1)[-1] for k in self.store.list("blobs/sha256"))

    def put_file(self, path: Path, rel: str) -> BlobRef:
        """Store a local file as ``rel`` (hash pass, then encrypt-and-write); dedupes by digest."""
        digest, size = _hash_file(path)
        if not self.has_blob(digest):
            self.store.write_chunks(_blob_key(digest), self._seal(_read_chunks(path), digest))
        return BlobRef(rel, digest, size)

    def _seal(self, plain: Iterable[bytes], digest: str) -> Iterable[bytes]:
        if self.keyring.encrypting:
            return encrypt_chunks(plain, self.keyring, digest=digest)
        return plain

    def iter_stored(self, digest: str) -> Iterator[bytes]:
        """The blob's stored bytes (envelope or clear), unverified: for copying between stores."""
        return self.store.iter_chunks(_blob_key(digest))

    def put_stored(self, digest: str, chunks: Iterable[bytes]) -> None:
        """Write stored bytes copied from another store, then verify them; bad copies are removed."""
        key = _blob_key(digest)
        self.store.write_chunks(key, chunks)
        try:
            self.verify_blob(digest)
        except IntegrityError:
            self.store.delete(key)
            raise

    def read_blob(
        self, digest: str, *, version: str | None = None, path: str | None = None
    ) -> Iterator[bytes]:
        """Plaintext of a blob; raises IntegrityError (before the stream ends) on any mismatch."""
        try:
            stored = self.store.iter_chunks(_blob_key(digest))
            first = next(stored, b"")
        except NotFound as exc:
            raise IntegrityError(
                "blob missing", version=version, path=path, node=self.node, digest=digest
            ) from exc
        chunks = _prepend(first, stored)
        try:
            if is_encrypted(first):
                chunks = decrypt_chunks(chunks, self.keyring, digest=digest)
            hasher = hashlib.sha256()
            for chunk in chunks:
                hasher.update(chunk)
                yield chunk
        except IntegrityError as exc:
            raise IntegrityError(
                exc.detail, version=version, path=path, node=self.node, digest=digest
            ) from exc
        except KeyMissingError as exc:
            raise KeyMissingError(
                f"{version or '?'}/{path or digest[:12]} on {self.node}: {exc}"
            ) from exc
        found = hasher.hexdigest()
        if found != digest:
            raise IntegrityError(
                f"sha256 mismatch: expected {digest}, found {found}; the copy is corrupt, run "
                "`python -m replication repair`",
                version=version,
                path=path,
                node=self.node,
                digest=digest,
            )

    def verify_blob(
        self, digest: str, *, version: str | None = None, path: str | None = None
    ) -> None:
        """Read a whole blob through verification, discarding the plaintext."""
        for _ in self.read_blob(digest, version=version, path=path):
            pass

    def blob_key_id(self, digest: str) -> str | None:
        """The key id a stored blob is sealed with (None when clear)."""
        return envelope_key_id(self.store.read_range(_blob_key(digest), 0, 64))

    def reseal_blob(self, digest: str) -> bool:
        """Re-encrypt a blob with the active key when sealed otherwise; True when rewritten."""
        if self.blob_key_id(digest) == self.keyring.active_id:
            return False
        plain = b"".join(self.read_blob(digest))  # verified before anything is rewritten
        self.store.write_chunks(_blob_key(digest), self._seal([plain], digest))
        return True

    def delete_blob(self, digest: str) -> None:
        self.store.delete(_blob_key(digest))

    # -- version records -------------------------------------------------------------------
    def put_record(self, record: VersionRecord) -> None:
        key = f"manifests/{check_version_name(record.version)}.json"
        self.store.write_bytes(key, record.to_json_bytes())

    def get_record(self, version: str) -> VersionRecord:
        key = f"manifests/{check_version_name(version)}.json"
        try:
            return VersionRecord.from_json_bytes(self.store.read_bytes(key))
        except NotFound as exc:
            raise VersionError(
                f"version {version} is not in store {self.store.url} ({self.node})"
            ) from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise IntegrityError(
                f"unreadable version record: {exc}", version=version, path=key, node=self.node
            ) from exc

    def has_record(self, version: str) -> bool:
        return self.store.exists(f"manifests/{check_version_name(version)}.json")

    def list_versions(self) -> list[str]:
        names = (k.rsplit("/", 1)[-1] for k in self.store.list("manifests"))
        return sorted(n[: -len(".json")] for n in names if n.endswith(".json"))

    def delete_record(self, version: str) -> None:
        self.store.delete(f"refs/committed/{check_version_name(version)}")
        self.store.delete(f"manifests/{version}.json")

    # -- refs ------------------------------------------------------------------------------
    def get_ref(self, name: str) -> Ref | None:
        try:
            return Ref.from_json_bytes(self.store.read_bytes(f"refs/{name}"))
        except NotFound:
            return None

    def set_ref(self, name: str, ref: Ref) -> None:
        self.store.write_bytes(f"refs/{name}", ref.to_json_bytes())

    def mark_committed(self, ref: Ref) -> None:
        self.store.write_bytes(
            f"refs/committed/{check_version_name(ref.version)}", ref.to_json_bytes()
        )

    def committed(self) -> dict[str, Ref]:
        out = {}
        for key in self.store.list("refs/committed"):
            ref = Ref.from_json_bytes(self.store.read_bytes(key))
            out[ref.version] = ref
        return out

    def flip_current(self, ref: Ref) -> None:
        """Point refs/current at ``ref``; the old current becomes refs/previous."""
        current = self.get_ref("current")
        if current is not None and current.version != ref.version:
            self.set_ref("previous", current)
        self.set_ref("current", ref)

    # -- inventory -------------------------------------------------------------------------
    def inventory(self, *, deep: bool = False) -> Inventory:
        """What this store holds; ``deep`` verifies every blob (sha256 + decryption)."""
        committed = self.committed()
        versions = {}
        for version in self.list_versions():
            try:
                record = self.get_record(version)
            except IntegrityError:
                continue
            ref = committed.get(version)
            versions[version] = VersionInfo(
                version, record.digests, ref.seq if ref else None, record.prepared_at
            )
        blobs = self.list_blobs()
        corrupt = set()
        if deep:
            for digest in blobs:
                try:
                    self.verify_blob(digest)
                except (IntegrityError, KeyMissingError):
                    corrupt.add(digest)
        current = self.get_ref("current")
        return Inventory(
            self.node, versions, blobs, frozenset(corrupt), current.version if current else None
        )


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            yield chunk


def _hash_file(path: Path) -> tuple[str, int]:
    hasher, size = hashlib.sha256(), 0
    for chunk in _read_chunks(path):
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest
