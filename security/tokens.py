"""The token table: bearer tokens with roles, stored hashed, compared in constant time.

A token reads ``rdt_<id>_<secret>`` (id: 8 hex, secret: 256 random bits, url-safe base64). The
table (``security.paths.tokens_path()``, JSON, 0600, written atomically) keeps for each token
its id, name, role, creation and revocation times and the SHA-256 of the whole token — never
the token itself, which is shown once, when it is created. A fast hash is the right one here:
the secret has 256 bits of entropy, so there is nothing for a slow hash to protect against.

Roles are ordered: ``reader`` (recommend, search, feedback) < ``operator`` (reload, promote,
rollback, run a drill) < ``admin`` (keys, tokens); each role may do what the ones below it may.

Example:
    >>> import tempfile, pathlib
    >>> table = TokenTable(pathlib.Path(tempfile.mkdtemp()) / "tokens.json")
    >>> token, entry = table.create("ci", Role.READER)
    >>> table.authenticate(token).role, table.authenticate(token + "x")
    (<Role.READER: 1>, None)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path

from durable import atomic_write_text
from security.errors import AccessDenied, TokenTableError
from security.paths import tokens_path

__all__ = ["Principal", "Role", "TokenEntry", "TokenTable", "hash_token", "parse_role", "require"]

_TOKEN = re.compile(r"rdt_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
_DUMMY = hashlib.sha256(b"recdrill/no-such-token").hexdigest()


class Role(IntEnum):
    """What a token may do; a higher role may do everything a lower one may."""

    READER = 1
    OPERATOR = 2
    ADMIN = 3

    def __str__(self) -> str:
        return self.name.lower()


def parse_role(text: str) -> Role:
    """``"reader"`` → Role.READER; ValueError naming the choices otherwise."""
    try:
        return Role[text.strip().upper()]
    except KeyError:
        raise ValueError(f"role {text!r}: expected one of reader, operator, admin") from None


@dataclass(frozen=True)
class Principal:
    """Who a request authenticated as."""

    token_id: str
    name: str
    role: Role


def hash_token(token: str) -> str:
    """The SHA-256 (hex) a table stores for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenEntry:
    """One row of the table (no secret in it)."""

    id: str
    name: str
    role: str
    sha256: str = field(repr=False)
    created: str
    revoked: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def public(self) -> dict[str, object]:
        """The row without its hash (what `token list` shows)."""
        data = asdict(self)
        data.pop("sha256")
        return data


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class TokenTable:
    """The table file; every change rewrites it atomically, 0600."""

    path: Path = field(default_factory=tokens_path)

    def entries(self) -> list[TokenEntry]:
        """Every token ever created, revoked ones included; TokenTableError when unreadable."""
        if not self.path.exists():
            return []
        try:
            rows = json.loads(self.path.read_text())["tokens"]
            return [TokenEntry(**row) for row in rows]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TokenTableError(f"{self.path}: not a recdrill token table ({exc}); restore it "
                                  "from backup or recreate the tokens") from exc

    def _write(self, entries: list[TokenEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        old = os.umask(0o077)
        try:
            atomic_write_text(self.path, json.dumps(
                {"version": 1, "tokens": [asdict(e) for e in entries]}, indent=1) + "\n")
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    def create(self, name: str, role: Role) -> tuple[str, TokenEntry]:
        """A new token for ``name`` with ``role``: (the token, shown only now; its row)."""
        if not name.strip() or len(name) > 64:
            raise ValueError("name: expected 1-64 characters naming who holds the token")
        entries = self.entries()
        if any(e.name == name and e.active for e in entries):
            raise ValueError(f"name: an active token named {name!r} exists; revoke it first "
                             "or choose another name")
        ids = {e.id for e in entries}
        token_id = secrets.token_hex(4)
        while token_id in ids:
            token_id = secrets.token_hex(4)
        secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        token = f"rdt_{token_id}_{secret}"
        entry = TokenEntry(token_id, name, str(role), hash_token(token), _now())
        self._write([*entries, entry])
        return token, entry

    def revoke(self, id_or_name: str) -> TokenEntry:
        """Revoke the active token with this id or name; KeyError when there is none."""
        entries = self.entries()
        for i, e in enumerate(entries):
            if e.active and id_or_name in (e.id, e.name):
                entries[i] = replace(e, revoked=_now())
                self._write(entries)
                return entries[i]
        raise KeyError(f"no active token with id or name {id_or_name!r} (see `recdrill token "
                       "list`)")

    def authenticate(self, token: str) -> Principal | None:
        """The principal ``token`` belongs to, or None (unknown, wrong, revoked, malformed)."""
        return authenticate(token, {e.id: e for e in self.entries()})


def authenticate(token: str, by_id: dict[str, TokenEntry]) -> Principal | None:
    """Check ``token`` against rows keyed by id, comparing hashes in constant time.

    An unknown id still costs one comparison (against a dummy hash), so timing tells a caller
    nothing about which ids exist.
    """
    match = _TOKEN.fullmatch(token)
    entry = by_id.get(match.group(1)) if match else None
    expected = entry.sha256 if entry is not None else _DUMMY
    same = hmac.compare_digest(hash_token(token), expected)
    if not same or entry is None or not entry.active:
        return None
    return Principal(entry.id, entry.name, parse_role(entry.role))


def require(table: TokenTable, token: str | None, need: Role) -> Principal | None:
    """The caller of a command needing ``need``: None while the table holds no active token
    (access control not in use); AccessDenied (401 / 403) for a missing, unknown, revoked or
    too-low token once it does."""
    rows = {e.id: e for e in table.entries()}
    if not any(e.active for e in rows.values()):
        return None
    if not token:
        raise AccessDenied(f"tokens are in use ({table.path}): pass a token of role {need} or "
                           "above with --token or $RECDRILL_TOKEN", 401)
    principal = authenticate(token, rows)
    if principal is None:
        raise AccessDenied("invalid or revoked token", 401)
    if principal.role < need:
        raise AccessDenied(f"token {principal.name!r} has role {principal.role}; this needs "
                           f"{need} or above", 403)
    return principal
