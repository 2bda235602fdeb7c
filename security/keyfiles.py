"""Secret key files: 32 random bytes with their creation time, written once, 0600, atomically.

Format (JSON, one object): ``{"created": "<ISO-8601 UTC>", "key": "<base64>"}``. The creation
time travels with the key (a copied file keeps it), so key ages can be reported and policed.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "k.key"
    >>> secret = ensure_secret(path)
    >>> len(secret.key), read_secret(path).key == secret.key
    (32, True)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from durable import atomic_write_text
from security.errors import KeyFileError

__all__ = ["KEY_BYTES", "Secret", "ensure_secret", "key_id_of", "read_secret"]

KEY_BYTES = 32


def key_id_of(key: bytes, purpose: str) -> str:
    """A short public fingerprint of ``key`` for ``purpose`` (16 hex); never reveals the key."""
    return hashlib.sha256(f"recdrill/{purpose}/".encode() + key).hexdigest()[:16]


@dataclass(frozen=True)
class Secret:
    """A key read from its file."""

    path: Path
    created: datetime
    key: bytes = field(repr=False)

    def age_days(self, now: datetime | None = None) -> float:
        """Days since the key was generated."""
        return ((now or datetime.now(UTC)) - self.created).total_seconds() / 86400


def read_secret(path: str | os.PathLike[str]) -> Secret:
    """The key in ``path``; KeyFileError naming the file when it is missing or malformed."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
        key = base64.b64decode(data["key"], validate=True)
        created = datetime.fromisoformat(data["created"])
    except FileNotFoundError:
        raise KeyFileError(f"{p}: no key file; create it with `recdrill data keys` or point the "
                           "environment variable at an existing one") from None
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise KeyFileError(f"{p}: not a recdrill key file (expected JSON with 'created' and a "
                           f"base64 'key'): {exc}") from exc
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{p}: key is {len(key)} bytes, expected {KEY_BYTES}")
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return Secret(p, created, key)


def ensure_secret(path: str | os.PathLike[str]) -> Secret:
    """The key in ``path``, generating it first (0600, directory 0700) when there is none."""
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = {"created": datetime.now(UTC).isoformat(timespec="seconds"),
                "key": base64.b64encode(os.urandom(KEY_BYTES)).decode()}
        old = os.umask(0o077)
        try:
            atomic_write_text(p, json.dumps(body) + "\n")
        finally:
            os.umask(old)
        os.chmod(p, 0o600)
    return read_secret(p)
