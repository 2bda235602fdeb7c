"""User-id pseudonyms: a keyed HMAC-SHA256, so a stored id cannot be traced back without the key.

Every user id that leaves the private training zone (artifacts, logs, metrics, reports, drill
journals) is ``Pseudonymiser.of(user_id)``; serving maps a caller's id through the same key
before it looks the user up. The key lives outside the repository
(``security.paths.pseudonym_key_path()``); its public fingerprint (``key_id``) is recorded
where pseudonyms are stored, so a reader with the wrong key refuses instead of answering
"unknown user" for everyone.

Example:
    >>> p = Pseudonymiser(b"k" * 32)
    >>> p.of("42") == p.of("42"), p.of("42") != p.of("43"), p.of("42").startswith("p_")
    (True, True, True)
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from security.keyfiles import ensure_secret, key_id_of, read_secret
from security.paths import pseudonym_key_path

__all__ = ["PREFIX", "Pseudonymiser", "is_pseudonym"]

PREFIX = "p_"
_HEX = 32  # 128 bits of the HMAC: collisions are out of reach for any user base


def is_pseudonym(value: str) -> bool:
    """True when ``value`` has the shape of a pseudonym (``p_`` + 32 hex)."""
    tail = value[len(PREFIX):]
    return (value.startswith(PREFIX) and len(tail) == _HEX
            and all(c in "0123456789abcdef" for c in tail))


@dataclass(frozen=True)
class Pseudonymiser:
    """Maps user ids to pseudonyms with one key."""

    key: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        """The key's public fingerprint (16 hex)."""
        return key_id_of(self.key, "pseudonym")

    def of(self, user_id: str) -> str:
        """The pseudonym of ``user_id``."""
        mac = hmac.new(self.key, str(user_id).encode(), hashlib.sha256).hexdigest()
        return PREFIX + mac[:_HEX]

    def many(self, user_ids: Iterable[str]) -> list[str]:
        """The pseudonyms of ``user_ids``, in order."""
        return [self.of(u) for u in user_ids]

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, create: bool = False
             ) -> Pseudonymiser:
        """The pseudonymiser whose key is in ``path`` (default: ``pseudonym_key_path()``);
        ``create`` generates the key when there is none (KeyFileError otherwise)."""
        p = path if path is not None else pseudonym_key_path()
        return cls((ensure_secret(p) if create else read_secret(p)).key)
