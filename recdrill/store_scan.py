"""What replication stores hold of users, read only: versions holding a user, blob encryption.

A stored version is content-addressed and replicated: its blobs are shared with other versions,
copied to standby nodes and backup stores, and committed versions are never rewritten under
the same name. So forgetting a user does not edit a store in place: it finds the versions whose
user tables (``histories.npz`` and any other table) hold the user, and the forget request stays
``pending`` listing them until they are retired from every store (roll back off them, delete
them) and ``recdrill data forget`` is run again.

Every blob is read through ``VersionStore.read_blob``: decrypted with the keyring when sealed,
and checked against its sha256.

Example:
    >>> held = versions_holding("runs/store", Keyring(), frozenset({"p_..."}))  # doctest: +SKIP
    >>> [(v.version, v.files) for v in held]  # doctest: +SKIP
    [('20261129T071500Z-3f2a9c', ('histories.npz',))]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from recdrill.user_tables import (
    DEFAULT_USER_COLUMNS,
    IdForm,
    TableError,
    TableFacts,
    format_of,
    inspect_bytes,
)
from replication.errors import ReplicationError
from replication.keys import Keyring
from replication.repo import VersionStore
from replication.store import open_store

__all__ = ["StoreFacts", "StoredVersion", "store_facts", "versions_holding"]


@dataclass(frozen=True)
class StoredVersion:
    """A version of a store whose files hold the user: ``rows`` of theirs in ``files``."""

    store: str
    version: str
    files: tuple[str, ...]
    rows: int


@dataclass(frozen=True)
class StoreFacts:
    """How a store holds user data: blobs encrypted or clear, user ids clear or pseudonymised."""

    store: str
    versions: int
    blobs: int
    encrypted_blobs: int
    id_form: IdForm | None  # None: no user table could be read (no key for its blobs)


def _open(url: str, keyring: Keyring) -> VersionStore:
    repo = VersionStore(open_store(url), keyring, node=url)
    repo.check()
    return repo


def _tables(repo: VersionStore, ids: frozenset[str], user_columns: Sequence[str]
            ) -> dict[str, list[tuple[str, TableFacts]]]:
    """Per version, each user table's path and facts (each blob read once)."""
    seen: dict[str, TableFacts] = {}
    out: dict[str, list[tuple[str, TableFacts]]] = {}
    for version in repo.list_versions():
        record = repo.get_record(version)
        for blob in record.files:
            fmt = format_of(blob.path)
            if fmt == "other":
                continue
            if blob.sha256 not in seen:
                data = b"".join(repo.read_blob(blob.sha256, version=version, path=blob.path))
                seen[blob.sha256] = inspect_bytes(data, fmt, ids, user_columns)
            out.setdefault(version, []).append((blob.path, seen[blob.sha256]))
    return out


def versions_holding(url: str, keyring: Keyring, ids: frozenset[str],
                     user_columns: Sequence[str] = DEFAULT_USER_COLUMNS
                     ) -> list[StoredVersion]:
    """The versions of the store at ``url`` whose tables hold any of ``ids``."""
    out = []
    for version, tables in _tables(_open(url, keyring), ids, user_columns).items():
        hits = [(path, facts.rows) for path, facts in tables if facts.rows]
        if hits:
            out.append(StoredVersion(url, version, tuple(p for p, _ in hits),
                                     sum(n for _, n in hits)))
    return out


def store_facts(url: str, keyring: Keyring,
                user_columns: Sequence[str] = DEFAULT_USER_COLUMNS) -> StoreFacts:
    """Blob encryption and user-id form of the store at ``url``."""
    repo = _open(url, keyring)
    blobs = sorted(repo.list_blobs())
    encrypted = sum(repo.blob_key_id(d) is not None for d in blobs)
    try:
        tables = _tables(repo, frozenset(), user_columns)
    except (ReplicationError, TableError):  # no key for a blob, or a corrupt one: unknown
        form: IdForm | None = None
    else:
        forms = {facts.id_form for ts in tables.values() for _, facts in ts} - {"none"}
        form = "clear" if "clear" in forms else "pseudonymised" if forms else "none"
    return StoreFacts(url, len(repo.list_versions()), len(blobs), encrypted, form)
