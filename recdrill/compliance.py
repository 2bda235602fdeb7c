"""Compliance: where user data lives, how it is protected, and whether that is within policy.

``assess(facts, policy)`` is pure: ``facts`` are gathered by ``recdrill.compliance_gather``
(files, keys, the forget register, the audit chain), and the report names every violation
with what to do about it. ``recdrill compliance`` exits 0 in policy, 1 out of policy.

Rules (``violation`` puts the report out of policy, ``notice`` is listed only):

=========================  =========  ==========================================================
code                       severity   when
=========================  =========  ==========================================================
data-not-sealed            violation  raw data holding users is not sealed (policy requires it)
data-key-missing           violation  raw data is sealed but the data key cannot open it
key-too-old                violation  a key is older than the policy's maximum age
pseudonym-key-missing      violation  artifacts exist and the pseudonym key does not
pseudonym-key-mismatch     violation  an artifact was pseudonymised under another key
clear-ids-shipped          violation  an artifact or a store holds clear user ids
forget-overdue             violation  a forget request is pending past the policy's maximum
audit-broken               violation  the audit chain or its anchor does not verify
register-unreadable        violation  the forget register cannot be read
forget-pending             notice     a forget request is pending (within the maximum)
checkpoint-clear-ids       notice     a checkpoint holds clear ids unsealed (private zone)
store-not-encrypted        notice     a store holds blobs in clear
key-missing                notice     a key that is not needed yet does not exist
audit-missing              notice     no audit log yet
=========================  =========  ==========================================================

Example:
    >>> now = datetime(2026, 1, 1, tzinfo=UTC)
    >>> old = KeyFact("data", "k", now - timedelta(days=400), "rotate it")
    >>> report = assess(Facts(now, keys=(old,)), Policy())
    >>> report.in_policy, [f.code for f in report.violations]
    (False, ['key-too-old'])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from recdrill.places import PlaceKind
from recdrill.user_tables import IdForm

__all__ = ["AuditFact", "Facts", "FileFact", "Finding", "KeyFact", "PendingFact", "PlaceFact",
           "Policy", "Report", "assess"]

Severity = Literal["violation", "notice"]


@dataclass(frozen=True)
class Policy:
    """The limits a deployment holds itself to."""

    max_key_age_days: float = 365.0
    max_pending_days: float = 30.0
    require_encryption: bool = True


@dataclass(frozen=True)
class FileFact:
    """One file holding (or possibly holding) user data.

    ``id_form`` None: it could not be opened to tell (sealed without a usable key).
    """

    path: str
    sealed: bool
    id_form: IdForm | None
    problem: str = ""


@dataclass(frozen=True)
class PlaceFact:
    """A place and its files; a store reports blob counts instead of files."""

    kind: PlaceKind
    where: str
    files: tuple[FileFact, ...] = ()
    blobs: int = 0
    encrypted_blobs: int = 0
    id_form: IdForm | None = None  # stores, register, audit log: the place as a whole
    key_ids: tuple[tuple[str, str | None], ...] = ()  # artifacts: (path, pseudonym key id)

    @property
    def user_files(self) -> tuple[FileFact, ...]:
        return tuple(f for f in self.files if f.id_form != "none")

    def forms(self) -> set[str]:
        """How this place holds user ids (``unknown``: some files could not be opened)."""
        found: set[str] = {f.id_form or "unknown" for f in self.user_files}
        if self.id_form is not None and self.id_form != "none":
            found.add(self.id_form)
        return found


@dataclass(frozen=True)
class KeyFact:
    """A key: where it is, when it was made (None: the file does not exist)."""

    name: str
    path: str
    created: datetime | None
    rotate: str
    needed: bool = False  # missing is a violation (not a notice) when needed
    problem: str = ""


@dataclass(frozen=True)
class PendingFact:
    """A forget request not done yet."""

    ticket: str
    pseudonym: str
    requested_at: datetime
    versions: tuple[str, ...] = ()
    stored_pending: int = 0


@dataclass(frozen=True)
class AuditFact:
    """The audit chain's verdict: ``problems`` as (kind, severity, message)."""

    path: str
    exists: bool
    entries: int = 0
    problems: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Facts:
    """Everything ``assess`` looks at, gathered at ``now``."""

    now: datetime
    places: tuple[PlaceFact, ...] = ()
    keys: tuple[KeyFact, ...] = ()
    pending: tuple[PendingFact, ...] = ()
    audit: AuditFact | None = None
    pseudonym_key_id: str | None = None
    register_problem: str = ""  # the forget register cannot be read: pending requests unknown


@dataclass(frozen=True)
class Finding:
    """One rule that fired: on what, why, and what to do."""

    code: str
    severity: Severity
    subject: str
    message: str
    fix: str


@dataclass(frozen=True)
class Report:
    """The verdict, every finding, and the facts it was drawn from."""

    facts: Facts
    policy: Policy
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def violations(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "violation")

    @property
    def in_policy(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``recdrill compliance --json`` prints."""
        now = self.facts.now
        return {
            "in_policy": self.in_policy, "checked_at": now.isoformat(timespec="seconds"),
            "policy": asdict(self.policy),
            "violations": [asdict(f) for f in self.violations],
            "notices": [asdict(f) for f in self.findings if f.severity == "notice"],
            "places": [{"kind": p.kind, "where": p.where, "id_forms": sorted(p.forms()),
                        "files": [asdict(f) for f in p.user_files],
                        **({"blobs": p.blobs, "encrypted_blobs": p.encrypted_blobs}
                           if p.kind == "store" else {})} for p in self.facts.places],
            "keys": [{"name": k.name, "path": k.path, "exists": k.created is not None,
                      "age_days": None if k.created is None else round(age_days(k.created, now),
                                                                        1)}
                     for k in self.facts.keys],
            "pending_forget": [{"ticket": p.ticket, "pseudonym": p.pseudonym,
                                "age_days": round(age_days(p.requested_at, now), 1),
                                "versions": list(p.versions),
                                "stored_pending": p.stored_pending} for p in self.facts.pending],
            "audit": None if self.facts.audit is None else asdict(self.facts.audit),
        }


def age_days(then: datetime, now: datetime) -> float:
    """Days from ``then`` to ``now`` (naive times are taken as UTC)."""
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return (now - then) / timedelta(days=1)


def _v(code: str, subject: str, message: str, fix: str) -> Finding:
    return Finding(code, "violation", subject, message, fix)


def _n(code: str, subject: str, message: str, fix: str) -> Finding:
    return Finding(code, "notice", subject, message, fix)


def _places(facts: Facts, policy: Policy) -> Iterator[Finding]:
    for place in facts.places:
        users = place.user_files
        if place.kind == "data":
            clear = [f for f in users if not f.sealed]
            if clear and policy.require_encryption:
                yield _v("data-not-sealed", place.where,
                         f"{len(clear)} of {len(users)} raw files holding users are not sealed "
                         f"(e.g. {clear[0].path})",
                         f"seal them: recdrill data encrypt {place.where}")
            locked = [f for f in users if f.sealed and f.id_form is None]
            if locked:
                yield _v("data-key-missing", place.where,
                         f"{len(locked)} sealed files cannot be opened ({locked[0].problem})",
                         "restore the data key they were sealed with (RECDRILL_DATA_KEY)")
        elif place.kind == "checkpoint" and any(f.id_form == "clear" and not f.sealed
                                                for f in users):
            yield _n("checkpoint-clear-ids", place.where,
                     "a training checkpoint holds clear user ids, not sealed",
                     "train from sealed raw data (the checkpoint's user ids are then sealed "
                     "too); keep checkpoints in the private training zone")
        elif place.kind in ("artifact", "store") and "clear" in place.forms():
            yield _v("clear-ids-shipped", place.where,
                     f"this {place.kind} holds clear user ids",
                     "re-export from the checkpoint (export pseudonymises user ids) and retire "
                     "the old versions")
        if place.kind == "store" and place.encrypted_blobs < place.blobs:
            yield _n("store-not-encrypted", place.where,
                     f"{place.blobs - place.encrypted_blobs} of {place.blobs} blobs are in clear",
                     "configure --store-key and run `recdrill replication rotate-key`")
        for path, key_id in place.key_ids:
            if key_id and facts.pseudonym_key_id and key_id != facts.pseudonym_key_id:
                yield _v("pseudonym-key-mismatch", path,
                         f"pseudonymised with key id {key_id}, the pseudonym key here is "
                         f"{facts.pseudonym_key_id}: serving cannot match its users",
                         f"point RECDRILL_PSEUDONYM_KEY at key {key_id}, or re-export it")


def _keys(facts: Facts, policy: Policy) -> Iterator[Finding]:
    artifacts = any(p.kind == "artifact" and p.files for p in facts.places)
    for key in facts.keys:
        if key.created is None:
            if key.name == "pseudonym" and artifacts:
                yield _v("pseudonym-key-missing", key.path,
                         "artifacts exist but the pseudonym key does not: serving cannot map "
                         "callers to their pseudonyms, and forget cannot find users",
                         "restore the key (RECDRILL_PSEUDONYM_KEY) the artifacts were made with")
            elif key.needed:
                yield _v("key-missing", key.path, f"the {key.name} key is needed and missing",
                         key.rotate)
            else:
                yield _n("key-missing", key.path, f"no {key.name} key yet",
                         "created on first use (`recdrill data keys` for the data keys)")
            continue
        age = age_days(key.created, facts.now)
        if age > policy.max_key_age_days:
            yield _v("key-too-old", key.path,
                     f"the {key.name} key is {age:.0f} days old (max "
                     f"{policy.max_key_age_days:g})", key.rotate)


def _pending(facts: Facts, policy: Policy) -> Iterator[Finding]:
    for req in facts.pending:
        age = age_days(req.requested_at, facts.now)
        where = (f"{req.stored_pending} stored versions still hold the user"
                 if req.stored_pending else "not every file was scrubbed")
        fix = ("retire the stored versions it lists, then run `recdrill data forget` again"
               if req.stored_pending else "run `recdrill data forget` again and fix what it "
               "names")
        if age > policy.max_pending_days:
            yield _v("forget-overdue", f"ticket {req.ticket}",
                     f"forget request for {req.pseudonym} pending for {age:.0f} days (max "
                     f"{policy.max_pending_days:g}); {where}", fix)
        else:
            yield _n("forget-pending", f"ticket {req.ticket}",
                     f"forget request for {req.pseudonym} pending for {age:.1f} days; {where}",
                     fix)


def _audit(facts: Facts) -> Iterator[Finding]:
    if facts.register_problem:
        yield _v("register-unreadable", "forget register", facts.register_problem,
                 "restore the register from a backup: until then, pending forget requests "
                 "are unknown and training cannot leave forgotten users out")
    audit = facts.audit
    if audit is None:
        return
    errors = [(kind, msg) for kind, severity, msg in audit.problems if severity == "error"]
    if not audit.exists and [k for k, _ in errors] in ([], ["missing"]):
        yield _n("audit-missing", audit.path, "no audit log yet",
                 "the first audited action creates it")
    elif errors:
        yield _v("audit-broken", audit.path,
                 f"{len(errors)} problems, first: {errors[0][0]}: {errors[0][1]}",
                 "run `recdrill audit verify` to see each one; restore the log from a backup "
                 "and investigate who changed it")


def assess(facts: Facts, policy: Policy) -> Report:
    """Judge ``facts`` against ``policy``: every finding, violations first."""
    findings = [*_places(facts, policy), *_keys(facts, policy), *_pending(facts, policy),
                *_audit(facts)]
    findings.sort(key=lambda f: f.severity != "violation")
    return Report(facts, policy, tuple(findings))
