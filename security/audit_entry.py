"""One audit entry: its fields, its canonical hash, and parsing a JSONL line back into it.

The hash is SHA-256 over the canonical JSON of every field but ``hash``. ``role`` and ``target``
(added after the first logs were written) enter the hash only when set, so an entry written
before they existed hashes exactly as it did then.

Example:
    >>> e = AuditEntry(1, "2027-01-15T08:00:00.000Z", "alice@host", "publish", "v1", {}, {},
    ...                GENESIS).sealed()
    >>> parse_entry(e.to_line()) == e and e.intact()
    True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["GENESIS", "AuditEntry", "entry_hash", "parse_entry"]

GENESIS = "0" * 64
_OPTIONAL = ("role", "target")  # hashed only when set: old entries lack them
_STR_FIELDS = ("time", "actor", "action", "prev", "hash")


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action: who (``actor``, ``role``) did what (``action``) to what (``target``,
    ``version``), when, with which digests; ``prev`` chains it to the entry before."""

    seq: int
    time: str
    actor: str
    action: str
    version: str | None
    digests: Mapping[str, str]
    details: Mapping[str, Any]
    prev: str
    hash: str = ""
    role: str | None = None
    target: str | None = None

    def body(self) -> dict[str, Any]:
        """The hashed fields: all but ``hash``, and ``role``/``target`` only when set."""
        data = asdict(self)
        data.pop("hash")
        for name in _OPTIONAL:
            if data[name] is None:
                del data[name]
        return data

    def sealed(self) -> AuditEntry:
        """This entry with ``hash`` computed from its content."""
        return replace(self, hash=entry_hash(self.body()))

    def intact(self) -> bool:
        """True when ``hash`` matches the content (the entry was not edited)."""
        return entry_hash(self.body()) == self.hash

    def to_line(self) -> bytes:
        """The JSONL line (with its newline) this entry is stored as."""
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()


def entry_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``body``."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_entry(line: str | bytes) -> AuditEntry:
    """The entry stored on ``line``; ValueError saying what is wrong when it is not one."""
    try:
        entry = AuditEntry(**json.loads(line))  # TypeError: not an object, or other fields
    except TypeError as exc:
        raise ValueError(f"not an audit entry: {exc}") from None
    bad = [] if type(entry.seq) is int else ["seq"]
    bad += [n for n in _STR_FIELDS if not isinstance(getattr(entry, n), str)]
    bad += [n for n in ("digests", "details") if not isinstance(getattr(entry, n), dict)]
    if bad:
        raise ValueError(f"fields of the wrong type: {', '.join(bad)}")
    return entry
