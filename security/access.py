"""Access decisions for the servers: which bearer token may call which route.

``Authorizer.check(authorization_header, need)`` → ``Decision``: allowed, or 401 (no token, or
one that is unknown, wrong or revoked — one message for all of them, so an answer never helps
a guess) or 403 (a valid token whose role is below the route's). HTTP and gRPC use the same
decision (``Decision.grpc_code``: UNAUTHENTICATED / PERMISSION_DENIED).

Credentials come from the token table (re-read when the file changes, checked at most once a
second, so a revocation takes effect within about a second without a restart) and, for
compatibility, from two static tokens: ``api_token`` (role reader) and ``admin_token``
(role operator). With neither a table nor an ``api_token``, the read routes are open; with
neither a table nor an ``admin_token``, the operator routes are off (403).

Example:
    >>> auth = Authorizer(static={"s3cret": Role.READER})
    >>> auth.check("Bearer s3cret", Role.READER).allowed, auth.check(None, Role.READER).status
    (True, 401)
    >>> auth.check("Bearer s3cret", Role.OPERATOR).status
    403
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from security.errors import TokenTableError
from security.tokens import Principal, Role, TokenEntry, TokenTable, authenticate

__all__ = ["Authorizer", "Decision", "bearer"]

log = logging.getLogger(__name__)

RELOAD_S = 1.0
MISSING = "missing bearer token: send 'Authorization: Bearer <token>'"
INVALID = "invalid or revoked token"


def bearer(header: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` value (None: absent or another scheme)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class Decision:
    """The outcome of one access check."""

    status: Literal[200, 401, 403]
    message: str = ""
    principal: Principal | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 200

    @property
    def grpc_code(self) -> str:
        """The gRPC status name of a refusal."""
        return {200: "OK", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}[self.status]


_ANONYMOUS = Principal("-", "anonymous", Role.READER)


@dataclass
class Authorizer:
    """Access decisions over a token table and/or static tokens (see the module docstring)."""

    table: Path | None = None
    static: Mapping[str, Role] = field(default_factory=dict)
    _rows: dict[str, TokenEntry] = field(default_factory=dict, init=False, repr=False)
    _stamp: tuple[int, int] | None = field(default=None, init=False, repr=False)
    _checked: float = field(default=float("-inf"), init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.table is not None:
            self._reload(force=True)

    @property
    def reads_open(self) -> bool:
        """True when the read routes need no token."""
        return self.table is None and Role.READER not in self.static.values()

    @property
    def operators_enabled(self) -> bool:
        """True when some credential could reach the operator routes."""
        return self.table is not None or any(r >= Role.OPERATOR for r in self.static.values())

    def _reload(self, force: bool = False) -> None:
        """Re-read the table when its size or mtime changed (at most once a second)."""
        assert self.table is not None
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_S:
            return
        with self._lock:
            self._checked = now
            try:
                st = self.table.stat()
                stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp == self._stamp and not force:
                return
            try:
                rows = {e.id: e for e in TokenTable(self.table).entries()}
            except TokenTableError:
                if force:
                    raise
                log.exception("token table unreadable; keeping the previous one")
                return
            self._rows, self._stamp = rows, stamp

    def authenticate(self, header: str | None) -> Principal | None:
        """Who ``header`` (an Authorization value) authenticates as; None when nobody."""
        token = bearer(header)
        if token is None:
            return None
        found = None
        for secret, role in self.static.items():  # every one compared: no early exit
            if hmac.compare_digest(token.encode(), secret.encode()):
                found = Principal("static", f"static-{role}", role)
        if found is None and self.table is not None:
            self._reload()
            found = authenticate(token, self._rows)
        return found

    def check(self, header: str | None, need: Role) -> Decision:
        """May the caller presenting ``header`` call a route needing ``need``?"""
        if need == Role.READER and self.reads_open:
            return Decision(200, principal=self.authenticate(header) or _ANONYMOUS)
        if need >= Role.OPERATOR and not self.operators_enabled:
            return Decision(403, "operator routes are disabled: configure a token table "
                                 "(recdrill token create) or an admin token")
        if bearer(header) is None:
            return Decision(401, MISSING)
        principal = self.authenticate(header)
        if principal is None:
            return Decision(401, INVALID)
        if principal.role < need:
            return Decision(403, f"token {principal.name!r} has role {principal.role}; this "
                                 f"needs {need} or above", principal)
        return Decision(200, principal=principal)
