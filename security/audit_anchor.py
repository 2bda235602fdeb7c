"""The audit log's tail anchor: ``<log>.head`` holds the last entry's seq and hash under an HMAC.

A hash chain alone cannot tell a log whose last entries were cut off from a shorter honest
one. Every append therefore rewrites the anchor (atomically, under the log's lock) with
``{seq, hash, mac, key_id}``, ``mac`` = HMAC-SHA256 over (seq, hash) with the audit key
(``security.paths.audit_key_path()``, created 0600 on first use). Cutting the log leaves the
anchor ahead of it; rewriting the anchor to match needs the key.

Example:
    >>> a = sign_head(b"k" * 32, 3, "ab" * 32)
    >>> a.verify(b"k" * 32), a.verify(b"x" * 32)
    (True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from durable import atomic_write_text
from security.keyfiles import ensure_secret, key_id_of, read_secret
from security.paths import audit_key_path

__all__ = ["Anchor", "anchor_path", "ensure_audit_key", "read_anchor", "read_audit_key",
           "sign_head", "write_anchor"]

_PURPOSE = "audit-head"


@dataclass(frozen=True)
class Anchor:
    """The anchored head: entry ``seq`` has hash ``hash``; ``mac`` authenticates both."""

    seq: int
    hash: str
    mac: str
    key_id: str

    def verify(self, key: bytes) -> bool:
        """True when ``mac`` was made with ``key`` over this seq and hash."""
        return hmac.compare_digest(self.mac, _mac(key, self.seq, self.hash))


def _mac(key: bytes, seq: int, head: str) -> str:
    message = f"recdrill/{_PURPOSE}/v1\n{seq}\n{head}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_head(key: bytes, seq: int, head: str) -> Anchor:
    """An anchor for entry ``seq`` with hash ``head``, authenticated with ``key``."""
    return Anchor(seq, head, _mac(key, seq, head), key_id_of(key, _PURPOSE))


def anchor_path(log: Path) -> Path:
    """Where the anchor of ``log`` lives: beside it, ``<name>.head``."""
    return log.with_name(log.name + ".head")


def read_anchor(log: Path) -> Anchor | None:
    """The anchor of ``log``; None when there is none; ValueError when it is malformed."""
    path = anchor_path(log)
    try:
        data = json.loads(path.read_text())
        anchor = Anchor(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an audit anchor (expected JSON with seq, hash, mac, "
                         f"key_id): {exc}") from None
    if not isinstance(anchor.seq, int) or not all(
            isinstance(v, str) for v in (anchor.hash, anchor.mac, anchor.key_id)):
        raise ValueError(f"{path}: anchor fields have the wrong types: {data}")
    return anchor


def write_anchor(log: Path, anchor: Anchor) -> None:
    """Replace the anchor of ``log`` atomically (temp + fsync + rename)."""
    atomic_write_text(anchor_path(log), json.dumps(asdict(anchor), sort_keys=True) + "\n")


def ensure_audit_key(path: Path | None = None) -> bytes:
    """The audit key, generated (32 random bytes, 0600) on first use."""
    return ensure_secret(path or audit_key_path()).key


def read_audit_key(path: Path | None = None) -> bytes | None:
    """The audit key, or None when there is none yet (verifying never creates one).

    Raises KeyFileError when the file exists but is not a key file.
    """
    p = path or audit_key_path()
    return read_secret(p).key if p.exists() else None
