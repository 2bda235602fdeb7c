"""Append-only audit log with a hash chain: JSONL, each entry carrying the previous entry's hash.

Editing, dropping or reordering any entry breaks the chain at that line; ``verify`` says where.
Dropping entries from the *end* leaves a valid shorter chain: pass the last known head hash
(``expected_head``, printed by every append) to catch that too.

Example:
    >>> import tempfile, pathlib
    >>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl", clock=FixedClock(0.0))
    >>> entry = log.append("alice@host", "publish", version="v1", digests={"manifest.json": "ab"})
    >>> log.verify() == entry.hash
    True
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from durable import fsync_dir
from replication.errors import AuditChainBroken

__all__ = ["GENESIS", "AuditEntry", "AuditLog", "Clock", "FixedClock", "SystemClock"]

GENESIS = "0" * 64


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


@dataclass(frozen=True)
class AuditEntry:
    """One state change: who did what to which version, with the digests involved."""

    seq: int
    time: str
    actor: str
    action: str
    version: str | None
    digests: Mapping[str, str]
    details: Mapping[str, Any]
    prev: str
    hash: str = ""

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("hash")
        return data


def _entry_hash(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class AuditLog:
    """The audit log file; appends are serialised with an exclusive file lock and fsynced."""

    path: Path
    clock: Clock = field(default_factory=SystemClock)

    def append(
        self,
        actor: str,
        action: str,
        *,
        version: str | None = None,
        digests: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry chained to the current last entry; returns it (with its hash)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            fh.seek(0)
            lines = fh.read().splitlines()
            last = json.loads(lines[-1]) if lines else None
            stamp = datetime.fromtimestamp(self.clock.now(), UTC).isoformat(timespec="milliseconds")
            draft = AuditEntry(
                seq=(last["seq"] + 1) if last else 1,
                time=stamp.replace("+00:00", "Z"),
                actor=actor,
                action=action,
                version=version,
                digests=dict(digests or {}),
                details=dict(details or {}),
                prev=last["hash"] if last else GENESIS,
            )
            entry = AuditEntry(**{**asdict(draft), "hash": _entry_hash(draft.body())})
            fh.write((json.dumps(asdict(entry), sort_keys=True) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(self.path.parent)
        return entry

    def entries(self) -> list[AuditEntry]:
        """Every entry, parsed but not verified."""
        if not self.path.exists():
            return []
        return [
            AuditEntry(**json.loads(line)) for line in self.path.read_text().splitlines() if line
        ]

    def verify(self, expected_head: str | None = None) -> str:
        """Check the whole chain; return the head hash. Raises AuditChainBroken at the first bad line."""
        prev, seq = GENESIS, 0
        if not self.path.exists():
            raise AuditChainBroken(
                f"{self.path}: no audit log found (expected one since the first state change); "
                "check --audit / $RECDRILL_AUDIT_LOG",
                line=0,
            )
        lines = self.path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            try:
                entry = AuditEntry(**json.loads(line))
            except (ValueError, TypeError) as exc:
                raise AuditChainBroken(
                    f"{self.path}:{number}: unparsable entry ({exc})", line=number
                ) from exc
            if entry.prev != prev:
                raise AuditChainBroken(
                    f"{self.path}:{number}: expected prev={prev[:16]}…, found {entry.prev[:16]}…: "
                    "an entry before this one was dropped, inserted or reordered",
                    line=number,
                )
            if entry.seq != seq + 1:
                raise AuditChainBroken(
                    f"{self.path}:{number}: expected seq {seq + 1}, found {entry.seq}", line=number
                )
            if _entry_hash(entry.body()) != entry.hash:
                raise AuditChainBroken(
                    f"{self.path}:{number}: entry hash does not match its content: the entry "
                    "was edited after it was written",
                    line=number,
                )
            prev, seq = entry.hash, entry.seq
        if expected_head is not None and prev != expected_head:
            raise AuditChainBroken(
                f"{self.path}: expected head {expected_head[:16]}…, found {prev[:16]}…: entries "
                "were dropped from the end (or the log was replaced)",
                line=len(lines),
            )
        return prev
