"""Gather the facts ``recdrill.compliance.assess`` judges: reads files, keys, register, audit.

Nothing is written. Sealed files are opened in memory with the data key when there is one; a
file that cannot be opened is reported as such rather than failing the whole gathering.

Example:
    >>> facts = gather(default_scope(), KeyLocations())  # doctest: +SKIP
    >>> assess(facts, Policy()).in_policy  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from recdrill.compliance import AuditFact, Facts, FileFact, KeyFact, PendingFact, PlaceFact
from recdrill.places import PlaceKind, Scope, StoredFile, artifact_dirs, open_file, walk
from recdrill.user_tables import TableError, inspect_bytes
from security.errors import SecurityError

__all__ = ["KeyLocations", "gather"]


@dataclass(frozen=True)
class KeyLocations:
    """Key files to report on; None: the default location of each."""

    pseudonym: Path | None = None
    data: Path | None = None
    audit: Path | None = None
    signing: Path | None = None
    store: tuple[Path, ...] = field(default=())


def _created_at(path: Path, keyfile: bool) -> tuple[datetime | None, str]:
    """When a key was made: from a recdrill key file, else the file's mtime."""
    if not path.exists():
        return None, ""
    if keyfile:
        from security.keyfiles import read_secret

        try:
            return read_secret(path).created, ""
        except SecurityError as exc:
            return datetime.fromtimestamp(path.stat().st_mtime, UTC), str(exc)
    return datetime.fromtimestamp(path.stat().st_mtime, UTC), ""


def _keys(where: KeyLocations, sealed_data: bool) -> Iterator[KeyFact]:
    from export.keys import private_key_path
    from security.paths import audit_key_path, data_key_path, pseudonym_key_path

    specs = [
        ("pseudonym", where.pseudonym or pseudonym_key_path(), True, False,
         ("make a new key, re-export every artifact with it and publish them, then retire the "
         "old key")),
        ("data", where.data or data_key_path(), True, sealed_data,
         ("make a new data key and re-seal the raw data under it (open each file with the old "
         "key, seal it with the new: `recdrill data encrypt` seals clear files only), then "
         "retire the old key")),
        ("audit", where.audit or audit_key_path(), True, False,
         ("verify the log (`recdrill audit verify`), then make a new audit key and re-sign the "
         "head anchor with it (security.audit_anchor.sign_head); no command does this yet")),
        ("signing", where.signing or private_key_path(), False, False,
         ("generate a new signing key pair, re-sign or re-export the artifacts, distribute the "
         "new public key")),
    ]
    for name, path, keyfile, needed, rotate in specs:
        created, problem = _created_at(path, keyfile)
        yield KeyFact(name, str(path), created, rotate, needed, problem)
    for path in where.store:
        created, problem = _created_at(path, False)
        yield KeyFact("store", str(path), created,
                      "add a new store key first in --store-key and run `recdrill replication "
                      "rotate-key`", True, problem)


def _file_fact(stored: StoredFile, data_key: bytes | None, user_columns: tuple[str, ...]
               ) -> FileFact | None:
    if stored.fmt == "other":
        return None
    try:
        data, sealed = open_file(stored.path, data_key)
    except SecurityError as exc:
        return FileFact(str(stored.path), True, None, str(exc))
    try:
        form = inspect_bytes(data, stored.fmt, frozenset(), user_columns).id_form
    except TableError as exc:
        return FileFact(str(stored.path), sealed, None, f"unreadable as {stored.fmt}: {exc}")
    return FileFact(str(stored.path), sealed, form)


def _local_places(scope: Scope, data_key: bytes | None) -> list[PlaceFact]:
    from export.manifest import read_manifest

    files = walk(scope)
    out = []
    for kind, place in scope.places():
        facts = [f for s in files if s.place == place and s.kind == kind
                 if (f := _file_fact(s, data_key, scope.user_columns)) is not None]
        key_ids = tuple((str(a), read_manifest(a).pseudonym_key_id) for a in artifact_dirs(place)
                        ) if kind == "artifact" else ()
        out.append(PlaceFact(kind, str(place), tuple(facts), key_ids=key_ids))
    return out


def _stores(scope: Scope, key_files: tuple[Path, ...]) -> list[PlaceFact]:
    if not scope.stores:
        return []
    from recdrill.store_scan import store_facts
    from replication.errors import ReplicationError
    from replication.keys import KeySpec

    keyring = KeySpec(files=tuple(str(p) for p in key_files)).load()
    out = []
    for url in scope.stores:
        try:
            facts = store_facts(url, keyring, scope.user_columns)
        except ReplicationError as exc:
            out.append(PlaceFact("store", url, (FileFact(url, False, None, str(exc)),)))
            continue
        out.append(PlaceFact("store", url, blobs=facts.blobs,
                             encrypted_blobs=facts.encrypted_blobs, id_form=facts.id_form))
    return out


def _state_place(kind: PlaceKind, path: Path, holds_users: bool) -> PlaceFact:
    return PlaceFact(kind, str(path), id_form="pseudonymised" if holds_users else "none")


def _parse_time(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def gather(scope: Scope, keys: KeyLocations, *, register: Path | None = None,
           audit_log: Path | None = None, now: datetime | None = None) -> Facts:
    """Read what ``recdrill compliance`` reports on; ``register``/``audit_log`` default to
    ``security.paths``."""
    from security.audit import AuditLog
    from security.datadir import data_key
    from security.forget_register import ForgetRegister
    from security.paths import audit_log_path, forget_register_path, pseudonym_key_path

    try:
        key = data_key(keys.data)
    except SecurityError:
        key = None  # reported with the key itself
    places = _local_places(scope, key)
    sealed = any(f.sealed for p in places if p.kind == "data" for f in p.files)
    places += _stores(scope, keys.store)
    reg = ForgetRegister(register or forget_register_path())
    try:
        requests, register_problem = reg.requests(), ""
    except SecurityError as exc:
        requests, register_problem = [], str(exc)
    places.append(_state_place("register", reg.path, bool(requests)))
    log = AuditLog(audit_log or audit_log_path(), key_path=keys.audit)
    report = log.check()
    places.append(_state_place("audit", log.path, report.entries > 0))
    pseudonym_path = keys.pseudonym or pseudonym_key_path()
    pseudonym_id = None
    if pseudonym_path.exists():
        from security.pseudonym import Pseudonymiser

        try:
            pseudonym_id = Pseudonymiser.load(pseudonym_path).key_id
        except SecurityError:
            pseudonym_id = None
    pending = tuple(
        PendingFact(r.ticket, r.pseudonym, _parse_time(r.requested_at), r.versions,
                    len(r.details.get("stored_pending", ()))) for r in requests
        if r.status != "done")
    audit = AuditFact(str(log.path), log.path.exists(), report.entries,
                      tuple((p.kind, p.severity, p.message) for p in report.problems))
    return Facts(now or datetime.now(UTC), tuple(places), tuple(_keys(keys, sealed)), pending,
                 audit, pseudonym_id, register_problem)
