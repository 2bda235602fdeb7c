"""Forget a user: find every stored file holding them, plan, rewrite without them, record it.

``recdrill data forget USER`` runs :func:`run_forget`:

1. **keys** — the pseudonym of ``USER`` needs the pseudonym key. Refused (``ForgetRefused``)
   when it is missing while pseudonymised artifacts exist, or when an artifact was
   pseudonymised under another key: a fresh key would match nobody there.
2. **scan** (I/O, read only) — every file of every place (``recdrill.places``), sealed ones
   opened in memory, counted for rows of the user by clear id *or* pseudonym; replication
   stores read through their verified, decrypting reader.
3. **plan** (pure, :func:`plan_forget`) — files to rewrite in place (raw data, checkpoints),
   artifacts to amend and re-sign, stored versions that cannot be rewritten (they stay
   ``pending``, see ``recdrill.store_scan``), files that cannot be scrubbed (named), and the
   model versions trained on the user.
4. **apply** — the register records the request as ``pending`` first (pseudonym only), then
   each file is rewritten atomically (re-sealed if it was sealed, its mode kept) and each
   artifact amended (``recdrill.amend``); the request becomes ``done`` when nothing is left,
   and one ``data.forget`` audit entry (role ``operator``, target the pseudonym) says what
   was removed.

Running it again is harmless: it resumes the same ticket and finds nothing more to remove. A
user found nowhere is recorded too, so training and serving exclude them if they appear later.
The clear id never leaves this process: the register, the audit log, amendments and the
output carry the pseudonym and the ticket only.

Example:
    >>> outcome = run_forget("196", default_scope(), ForgetKeys.defaults())  # doctest: +SKIP
    >>> outcome.request.status, outcome.rows_removed  # doctest: +SKIP
    ('done', 42)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from durable import atomic_writer
from recdrill.places import Scope, StoredFile, artifact_dirs, open_file, walk
from recdrill.store_scan import StoredVersion, versions_holding
from recdrill.user_tables import TableError, inspect_bytes, without_users
from security.errors import SecurityError
from security.forget_register import ForgetRegister, ForgetRequest
from security.pseudonym import Pseudonymiser
from security.sealed import seal

__all__ = ["ArtifactFix", "Blocked", "ForgetKeys", "ForgetOutcome", "ForgetPlan",
           "ForgetRefused", "Hit", "Scan", "plan_forget", "run_forget", "scan_places"]

ACTION = "data.forget"


class ForgetRefused(Exception):
    """Forgetting cannot start soundly (a key is missing or foreign); nothing was changed."""


@dataclass(frozen=True)
class Hit:
    """A local file holding ``rows`` of the user."""

    file: StoredFile
    rows: int
    sealed: bool


@dataclass(frozen=True)
class Blocked:
    """Something holding the user that this run cannot scrub, and why."""

    where: str
    reason: str


@dataclass(frozen=True)
class ArtifactInfo:
    """An artifact directory as found: its version and signing/pseudonym key ids."""

    path: Path
    version: str
    signing_key_id: str | None
    pseudonym_key_id: str | None
    problem: str = ""  # manifest.json unreadable: the artifact cannot be amended


@dataclass(frozen=True)
class Scan:
    """What the scan found, with no decision taken."""

    hits: tuple[Hit, ...]
    stored: tuple[StoredVersion, ...]
    artifacts: tuple[ArtifactInfo, ...]
    blocked: tuple[Blocked, ...]
    files_scanned: int


@dataclass(frozen=True)
class ArtifactFix:
    """An artifact to amend: its files holding the user, rewritten, then re-signed."""

    artifact: ArtifactInfo
    hits: tuple[Hit, ...]


@dataclass(frozen=True)
class ForgetPlan:
    """What to do; ``complete`` when applying it leaves the user nowhere in scope."""

    rewrite: tuple[Hit, ...]
    amend: tuple[ArtifactFix, ...]
    stored: tuple[StoredVersion, ...]
    blocked: tuple[Blocked, ...]
    versions: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.stored and not self.blocked

    @property
    def found(self) -> bool:
        return bool(self.rewrite or self.amend or self.stored or self.blocked)


def _checkpoint_version(hit: Hit) -> str:
    return f"checkpoint:{hit.file.path.parent}"


def plan_forget(scan: Scan, signing_key_id: str | None) -> ForgetPlan:
    """Decide what to do with what ``scan`` found; artifacts are amended only when the
    signing key at hand (``signing_key_id``; None: none) is the one they were signed with.

    Example:
        >>> plan_forget(Scan((), (), (), (), 0), None).complete
        True
    """
    rewrite = tuple(h for h in scan.hits if h.file.artifact is None)
    by_artifact = {a.path: a for a in scan.artifacts}
    amend, blocked = [], list(scan.blocked)
    for path in sorted({h.file.artifact for h in scan.hits if h.file.artifact is not None}):
        info = by_artifact.get(path) or ArtifactInfo(path, path.name, None, None, "not scanned")
        hits = tuple(h for h in scan.hits if h.file.artifact == path)
        if info.problem:
            blocked.append(Blocked(str(path), f"{info.problem}: restore the artifact from its "
                                   "store or re-export it, then run the forget again"))
        elif signing_key_id is not None and info.signing_key_id == signing_key_id:
            amend.append(ArtifactFix(info, hits))
        else:
            blocked.append(Blocked(str(path), (
                f"needs re-signing with key id {info.signing_key_id}, and the signing key at "
                f"hand is {signing_key_id or 'missing'}: point --signing-key at that key "
                "and run the forget again")))
    versions = [a.version for a in by_artifact.values()
                if any(h.file.artifact == a.path for h in scan.hits)]
    versions += [_checkpoint_version(h) for h in rewrite if h.file.kind == "checkpoint"]
    versions += [s.version for s in scan.stored]
    return ForgetPlan(rewrite, tuple(amend), scan.stored, tuple(blocked),
                      tuple(sorted(set(versions))))


# -- keys ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ForgetKeys:
    """Key files forgetting may need (each only when the data calls for it)."""

    pseudonym: Path | None = None  # None: security.paths.pseudonym_key_path()
    data: Path | None = None  # None: security.paths.data_key_path()
    signing: Path | None = None  # None: export.keys.private_key_path()
    public: Path | None = None  # None: export.keys.public_key_path()
    store: tuple[Path, ...] = field(default=())

    def signing_paths(self) -> tuple[Path, Path]:
        from export.keys import private_key_path, public_key_path

        return self.signing or private_key_path(), self.public or public_key_path()


def _artifact_info(path: Path) -> ArtifactInfo:
    from export.errors import ManifestError
    from export.manifest import read_manifest

    try:
        manifest = read_manifest(path)
    except ManifestError as exc:
        return ArtifactInfo(path, path.name, None, None, f"manifest unreadable ({exc})")
    signing = manifest.signing["key_id"] if manifest.signing else None
    return ArtifactInfo(path, manifest.version, signing, manifest.pseudonym_key_id)


def load_pseudonymiser(artifacts: Iterable[ArtifactInfo], path: Path | None) -> Pseudonymiser:
    """The pseudonymiser to forget with; ForgetRefused when it cannot match the artifacts.

    Without a key file and without pseudonymised artifacts, the key is created (the pseudonym
    is what the register and the audit log record).
    """
    from security.paths import pseudonym_key_path

    key_path = path or pseudonym_key_path()
    pseudonymised = [a for a in artifacts if a.pseudonym_key_id is not None and not a.problem]
    if not key_path.exists() and pseudonymised:
        raise ForgetRefused(
            f"the pseudonym key {key_path} is missing, and {len(pseudonymised)} artifact(s) "
            f"hold pseudonyms made with key id {pseudonymised[0].pseudonym_key_id} (e.g. "
            f"{pseudonymised[0].path}); without that key the user cannot be found there: "
            "restore the key file (or set RECDRILL_PSEUDONYM_KEY) and run the forget again")
    try:
        pseudonymiser = Pseudonymiser.load(key_path, create=True)
    except SecurityError as exc:
        raise ForgetRefused(f"pseudonym key: {exc}") from exc
    foreign = [a for a in pseudonymised if a.pseudonym_key_id != pseudonymiser.key_id]
    if foreign:
        raise ForgetRefused(
            f"artifact {foreign[0].path} holds pseudonyms made with key id "
            f"{foreign[0].pseudonym_key_id}, but the key at {key_path} has id "
            f"{pseudonymiser.key_id}; point RECDRILL_PSEUDONYM_KEY at the key with id "
            f"{foreign[0].pseudonym_key_id} and run the forget again")
    return pseudonymiser


# -- scan ----------------------------------------------------------------------------------------

def find_artifacts(scope: Scope) -> list[ArtifactInfo]:
    """Every artifact directory of the scope's artifact places."""
    return [_artifact_info(a) for kind, place in scope.places() if kind == "artifact"
            for a in artifact_dirs(place)]


def scan_places(scope: Scope, ids: frozenset[str], pseudonym: str, *,
                data_key: bytes | None, store_keys: Iterable[Path] = (),
                artifacts: Iterable[ArtifactInfo] | None = None) -> Scan:
    """Read every place of ``scope`` for rows of ``ids`` (nothing is changed).

    A file that cannot be parsed, or an unknown file holding the pseudonym's bytes, is
    ``blocked``; a sealed file that cannot be opened is ForgetRefused.
    """
    hits, blocked = [], []
    files = walk(scope)
    for stored in files:
        try:
            data, sealed = open_file(stored.path, data_key)
        except SecurityError as exc:
            raise ForgetRefused(f"cannot open {stored.path} to look for the user: {exc}"
                                ) from exc
        if stored.fmt == "other":
            if pseudonym.encode() in data:
                blocked.append(Blocked(str(stored.path), "holds the user's pseudonym in a "
                                       "format forget cannot rewrite: remove it by hand"))
            continue
        try:
            rows = inspect_bytes(data, stored.fmt, ids, scope.user_columns).rows
        except TableError as exc:
            blocked.append(Blocked(str(stored.path), f"cannot be read as {stored.fmt} ({exc}): "
                                   "check it by hand"))
            continue
        if rows:
            hits.append(Hit(stored, rows, sealed))
    found = tuple(find_artifacts(scope) if artifacts is None else artifacts)
    stored_versions = _scan_stores(scope, ids, store_keys)
    return Scan(tuple(hits), tuple(stored_versions), found, tuple(blocked), len(files))


def _scan_stores(scope: Scope, ids: frozenset[str], store_keys: Iterable[Path]
                 ) -> list[StoredVersion]:
    if not scope.stores:
        return []
    from replication.errors import ReplicationError
    from replication.keys import KeySpec

    try:
        keyring = KeySpec(files=tuple(str(p) for p in store_keys)).load()
        return [v for url in scope.stores
                for v in versions_holding(url, keyring, ids, scope.user_columns)]
    except ReplicationError as exc:
        raise ForgetRefused(f"cannot read store to look for the user: {exc}") from exc


# -- apply ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Applied:
    """What applying a plan removed."""

    rows_removed: int = 0
    files_rewritten: int = 0
    artifacts_amended: int = 0


def _rewrite(hit: Hit, ids: frozenset[str], user_columns: tuple[str, ...],
             data_key: bytes | None) -> int:
    path = hit.file.path
    data, sealed = open_file(path, data_key)
    new, removed = without_users(data, hit.file.fmt, ids, user_columns)
    if not removed:
        return 0
    if sealed:
        assert data_key is not None  # open_file refused a sealed file without one
        new = seal(new, data_key)
    mode = path.stat().st_mode & 0o7777
    with atomic_writer(path) as fh:
        os.fchmod(fh.fileno(), mode)
        fh.write(new)
    return removed


def apply_plan(plan: ForgetPlan, ticket: str, ids: frozenset[str], scope: Scope,
               keys: ForgetKeys, data_key: bytes | None) -> Applied:
    """Rewrite and amend what ``plan`` says; each file and artifact is replaced atomically."""
    from recdrill.amend import Amendment, amend_artifact

    rows = files = amended = 0
    for hit in plan.rewrite:
        removed = _rewrite(hit, ids, scope.user_columns, data_key)
        rows, files = rows + removed, files + bool(removed)
    private, public = keys.signing_paths() if plan.amend else (Path(), Path())
    for fix in plan.amend:
        replaced, removed_by_file = {}, {}
        for hit in fix.hits:
            data, _ = open_file(hit.file.path, data_key)
            new, removed = without_users(data, hit.file.fmt, ids, scope.user_columns)
            if removed:
                replaced[hit.file.rel], removed_by_file[hit.file.rel] = new, removed
        if replaced:
            amend_artifact(fix.artifact.path, replaced,
                           Amendment(ticket, "forget", removed_by_file), private, public)
            rows, files = rows + sum(removed_by_file.values()), files + len(replaced)
            amended += 1
    return Applied(rows, files, amended)


# -- the whole run -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ForgetOutcome:
    """The request as recorded, what was removed, and what is left pending."""

    request: ForgetRequest
    plan: ForgetPlan
    applied: Applied
    files_scanned: int
    resumed: bool = False  # the user was asked to be forgotten before (same ticket)

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``recdrill data forget`` prints (pseudonym only, never the clear id)."""
        return {"ticket": self.request.ticket, "pseudonym": self.request.pseudonym,
                "status": self.request.status, "resumed": self.resumed,
                "versions": list(self.request.versions), **self.request.details}


def _details(plan: ForgetPlan, applied: Applied, scanned: int) -> dict[str, Any]:
    return {
        "found": plan.found, "rows_removed": applied.rows_removed,
        "files_rewritten": applied.files_rewritten,
        "artifacts_amended": applied.artifacts_amended, "files_scanned": scanned,
        "versions_found": len(plan.versions),
        "stored_pending": [{"store": s.store, "version": s.version, "files": list(s.files)}
                           for s in plan.stored],
        "blocked": [{"where": b.where, "reason": b.reason} for b in plan.blocked],
    }


def _resume(register: ForgetRegister, pseudonym: str) -> ForgetRequest | None:
    """The latest request for ``pseudonym``: forgetting again resumes it."""
    mine = [r for r in register.requests() if r.pseudonym == pseudonym]
    return mine[-1] if mine else None


def run_forget(user_id: str, scope: Scope, keys: ForgetKeys, *,
               register: ForgetRegister | None = None, audit_log: Path | None = None
               ) -> ForgetOutcome:
    """Forget ``user_id`` everywhere in ``scope``; see the module docstring for the steps."""
    from security.audit import record
    from security.datadir import data_key as read_data_key

    register = register or ForgetRegister()
    artifacts = find_artifacts(scope)
    pseudonym = load_pseudonymiser(artifacts, keys.pseudonym).of(user_id)
    ids = frozenset({str(user_id), pseudonym})
    try:
        data_key = read_data_key(keys.data)
    except SecurityError as exc:
        raise ForgetRefused(f"data key: {exc}") from exc
    try:
        scan = scan_places(scope, ids, pseudonym, data_key=data_key, store_keys=keys.store,
                           artifacts=artifacts)
    except OSError as exc:
        raise ForgetRefused(f"cannot read {exc.filename or 'a file'} to look for the user: "
                            f"{exc.strerror or exc}") from exc
    plan = plan_forget(scan, _signing_key_id(keys) if scan.hits else None)
    earlier = _resume(register, pseudonym)
    request = earlier or ForgetRequest.new(pseudonym)
    versions = tuple(sorted({*request.versions, *plan.versions}))
    request = request.advance(status="pending", versions=versions)
    register.record(request)  # before any change: an interrupted run leaves it pending
    try:
        applied = apply_plan(plan, request.ticket, ids, scope, keys, data_key)
    except BaseException as exc:
        record(ACTION, target=pseudonym, role="operator", log=audit_log,
               details={"ticket": request.ticket, "status": "failed",
                        "error": type(exc).__name__})
        raise
    details = {**_details(plan, applied, scan.files_scanned), "resumed": earlier is not None}
    request = request.advance(status="done" if plan.complete else "pending", details=details)
    register.record(request)
    record(ACTION, target=pseudonym, role="operator", log=audit_log,
           details={"ticket": request.ticket, "status": request.status, **{
               k: v for k, v in details.items() if k != "blocked"},
               "blocked": len(plan.blocked), "versions": list(versions)})
    return ForgetOutcome(request, plan, applied, scan.files_scanned, earlier is not None)


def _signing_key_id(keys: ForgetKeys) -> str | None:
    """The id of the signing key at hand (None: there is none, or it is unreadable)."""
    from export.errors import SigningError
    from export.signing import key_id_of

    private, public = keys.signing_paths()
    if not private.exists() or not public.exists():
        return None
    try:
        return key_id_of(public)
    except SigningError:
        return None


def summary_lines(outcome: ForgetOutcome) -> list[str]:
    """Human lines for stderr: what was removed and what is left to do."""
    request, plan, applied = outcome.request, outcome.plan, outcome.applied
    lines = [f"forget {request.pseudonym} (ticket {request.ticket}): {request.status}"]
    if not plan.found and outcome.resumed:
        lines.append(f"  nothing left of this user in {outcome.files_scanned} files scanned "
                     "(asked before, same ticket)")
    elif not plan.found:
        lines.append(f"  not found in {outcome.files_scanned} files scanned; recorded, so "
                     "training and serving exclude this user if they appear later")
    else:
        lines.append(f"  removed {applied.rows_removed} rows from {applied.files_rewritten} "
                     f"files; {applied.artifacts_amended} artifacts amended and re-signed; "
                     f"{len(request.versions)} versions marked as trained on the user")
    for stored in plan.stored:
        lines.append(f"  PENDING {stored.store} version {stored.version} holds the user "
                     f"({', '.join(stored.files)}): stored versions are never rewritten in "
                     "place; retire it from every store and backup (roll back off it, delete "
                     "it), publish the amended artifact under a new version, then run the "
                     "forget again")
    lines.extend(f"  PENDING {b.where}: {b.reason}" for b in plan.blocked)
    return lines

