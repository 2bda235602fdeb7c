"""The one audit log: append-only JSONL, hash-chained, with an HMAC-anchored tail.

Every admin action, drill, publish / promote / rollback, token change and operator read of raw
user data is one entry (actor, role, action, target, time, digests, previous hash) in
``security.paths.audit_log_path()``; ``record`` is the call for it. Each append also rewrites
the tail anchor ``<log>.head`` (``security.audit_anchor``), so ``check`` finds an edited,
dropped, reordered or truncated entry without the operator remembering anything, and names
each one (``security.audit_check``).

Example:
    >>> import tempfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> log = AuditLog(tmp / "audit.jsonl", FixedClock(0.0), key_path=tmp / "audit.key")
    >>> entry = log.append("alice@host", "publish", role="operator", target="v1", version="v1")
    >>> log.verify() == entry.hash, log.check().ok
    (True, True)
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from durable import fsync_dir
from security.audit_anchor import (
    Anchor,
    ensure_audit_key,
    read_anchor,
    read_audit_key,
    sign_head,
    write_anchor,
)
from security.audit_check import AnchorView, AuditReport, ParsedLine, inspect_chain
from security.audit_entry import GENESIS, AuditEntry, parse_entry
from security.errors import AuditChainBroken, KeyFileError
from security.paths import audit_log_path

__all__ = ["GENESIS", "AuditEntry", "AuditLog", "Clock", "FixedClock", "SystemClock",
           "default_actor", "record"]

_BLOCK = 1 << 16


class Clock(Protocol):
    """Wall-clock seconds since the epoch; pass a fake in tests."""

    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


@dataclass
class FixedClock:
    """A clock that only moves when told to (tests)."""

    t: float = 0.0

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def default_actor() -> str:
    """``<user>@<host>`` of this process (the uid when the user has no name)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _tail(fh: IO[bytes]) -> tuple[bytes, bytes]:
    """The last complete line (without newline) and the torn fragment after it, reading
    backwards from the end so an append does not read the whole log."""
    end = pos = fh.seek(0, os.SEEK_END)
    buf = b""
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        fh.seek(pos)
        buf = fh.read(step) + buf
        last = buf.rfind(b"\n")
        if last != -1 and buf.rfind(b"\n", 0, last) != -1:
            break
    fh.seek(end)
    last = buf.rfind(b"\n")
    if last == -1:
        return b"", buf
    return buf[buf.rfind(b"\n", 0, last) + 1:last], buf[last + 1:]


@dataclass
class AuditLog:
    """The audit log file. Appends are serialised with an exclusive lock, fsynced, and
    re-anchored; ``check`` reads under a shared lock, so it never sees half an append."""

    path: Path
    clock: Clock = field(default_factory=SystemClock)
    key_path: Path | None = None  # None: security.paths.audit_key_path()

    def append(
        self,
        actor: str,
        action: str,
        *,
        role: str | None = None,
        target: str | None = None,
        version: str | None = None,
        digests: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry chained to the last one and re-anchor the tail; returns the entry.

        Raises AuditChainBroken, appending nothing, when the log's tail disagrees with its
        anchor (cut or rewritten: appending would hide it) or the anchor is forged.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            key = ensure_audit_key(self.key_path)
            last_line, torn = _tail(fh)
            if torn and _parse_line(0, torn, torn=True).entry is not None:
                fh.write(b"\n")  # a whole entry that lost only its newline
                last_line, torn = torn, b""
            last = self._checked_tail(last_line, key)
            if torn:
                last = self._drop_torn(fh, last, torn, actor)
            entry = self._draft(last, actor, action, role, target, version, digests, details)
            self._write(fh, entry)
            write_anchor(self.path, sign_head(key, entry.seq, entry.hash))
        fsync_dir(self.path.parent)
        return entry

    def _checked_tail(self, line: bytes, key: bytes) -> AuditEntry | None:
        """The last complete entry, after checking it against the anchor."""
        try:
            last = parse_entry(line) if line else None
            anchor = read_anchor(self.path)
        except ValueError as exc:
            raise AuditChainBroken(f"{self.path}: cannot append: {exc}; run `recdrill audit "
                                   "verify` and restore the log from a backup", line=0) from exc
        if anchor is None:
            return last
        seq, head = (last.seq, last.hash) if last else (0, GENESIS)
        if not anchor.verify(key):
            why = "forged, or written with another audit key ($RECDRILL_AUDIT_KEY)"
        elif anchor.seq > seq or (anchor.seq == seq and anchor.hash != head):
            why = (f"it says seq {anchor.seq} ({anchor.hash[:16]}…), the log ends at seq {seq} "
                   f"({head[:16]}…): the log was cut or rewritten")
        else:
            return last
        raise AuditChainBroken(f"{self.path}: cannot append: the anchor does not match: {why}; "
                               "appending would hide it. Run `recdrill audit verify`, restore "
                               "the log from a backup", line=0)

    def _drop_torn(self, fh: IO[bytes], last: AuditEntry | None, torn: bytes,
                   actor: str) -> AuditEntry:
        """Cut a partial last line (a crashed append) and record its size and digest."""
        fh.truncate(fh.seek(0, os.SEEK_END) - len(torn))
        details = {"bytes": len(torn), "sha256": hashlib.sha256(torn).hexdigest()}
        entry = self._draft(last, actor, "audit.torn-tail", None, self.path.name, None, None,
                            details)
        self._write(fh, entry)
        return entry

    def _draft(self, last: AuditEntry | None, actor: str, action: str, role: str | None,
               target: str | None, version: str | None, digests: Mapping[str, str] | None,
               details: Mapping[str, Any] | None) -> AuditEntry:
        stamp = datetime.fromtimestamp(self.clock.now(), UTC).isoformat(timespec="milliseconds")
        return AuditEntry(
            seq=last.seq + 1 if last else 1, time=stamp.replace("+00:00", "Z"), actor=actor,
            action=action, version=version, digests=dict(digests or {}),
            details=dict(details or {}), prev=last.hash if last else GENESIS, role=role,
            target=target,
        ).sealed()

    @staticmethod
    def _write(fh: IO[bytes], entry: AuditEntry) -> None:
        fh.write(entry.to_line())
        fh.flush()
        os.fsync(fh.fileno())

    @contextlib.contextmanager
    def _shared(self) -> Iterator[bytes | None]:
        """The log's bytes (None: no log), read under a shared lock."""
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - held for the block
        except FileNotFoundError:
            yield None
            return
        with fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            yield fh.read()

    def lines(self) -> list[ParsedLine]:
        """Every line, parsed (an unparsable one carries the reason)."""
        with self._shared() as data:
            return _parse(data or b"")

    def entries(self) -> list[AuditEntry]:
        """Every entry, parsed but not verified; lines that are not entries are skipped."""
        return [ln.entry for ln in self.lines() if ln.entry is not None]

    def check(self, expected_head: str | None = None) -> AuditReport:
        """Every problem of the chain and its anchor, classified and located; never raises
        for a broken chain."""
        with self._shared() as data:
            lines = _parse(data or b"")
            anchor = self._anchor_view()
        return inspect_chain(str(self.path), lines, anchor, exists=data is not None,
                             expected_head=expected_head)

    def _anchor_view(self) -> AnchorView:
        try:
            anchor: Anchor | None = read_anchor(self.path)
        except ValueError as exc:
            return AnchorView("unreadable", detail=str(exc))
        if anchor is None:
            return AnchorView("absent")
        try:
            key = read_audit_key(self.key_path)
        except KeyFileError as exc:
            return AnchorView("unverified", anchor.seq, anchor.hash, str(exc))
        if key is None:
            return AnchorView("unverified", anchor.seq, anchor.hash,
                              "no audit key here ($RECDRILL_AUDIT_KEY or <key dir>/audit.key)")
        if not anchor.verify(key):
            return AnchorView("forged", anchor.seq, anchor.hash, f"key id {anchor.key_id}")
        return AnchorView("valid", anchor.seq, anchor.hash)

    def verify(self, expected_head: str | None = None) -> str:
        """Check the chain and its anchor; return the head hash.

        Raises AuditChainBroken with the first error (``check`` lists them all).
        """
        report = self.check(expected_head)
        if report.errors:
            raise AuditChainBroken(report.summary(), line=report.errors[0].line)
        return report.head


def _parse(data: bytes) -> list[ParsedLine]:
    out = []
    raw = data.split(b"\n")
    complete = raw[:-1]  # the part after the last newline is a torn line, or empty
    for number, line in enumerate(complete, start=1):
        out.append(_parse_line(number, line, torn=False))
    if raw[-1]:
        out.append(_parse_line(len(complete) + 1, raw[-1], torn=True))
    return out


def _parse_line(number: int, line: bytes, *, torn: bool) -> ParsedLine:
    try:
        return ParsedLine(number, parse_entry(line))
    except (ValueError, UnicodeDecodeError) as exc:
        return ParsedLine(number, None, str(exc), torn=torn)


def record(
    action: str,
    *,
    target: str | None = None,
    role: str | None = None,
    version: str | None = None,
    digests: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
    log: Path | None = None,
    actor: str | None = None,
) -> AuditEntry:
    """Append one entry to the one audit log (``log`` or ``audit_log_path()``).

    ``actor`` defaults to ``<user>@<host>``. Raises AuditChainBroken when the log's tail was
    cut or its anchor forged (see ``AuditLog.append``).

    Example:
        >>> record("token.create", target="tok_ab12", role="admin")  # doctest: +SKIP
        AuditEntry(seq=12, ..., action='token.create', ..., role='admin', target='tok_ab12')
    """
    return AuditLog(log or audit_log_path()).append(
        actor or default_actor(), action, role=role, target=target, version=version,
        digests=digests, details=details)
