"""Errors of the security layer.

Hierarchy::

    SecurityError
    ├── AccessDenied        a command needs a token of a higher role (401 / 403)
    ├── KeyFileError        a key file is missing, unreadable or malformed
    ├── SealedDataError     sealed (encrypted) data cannot be opened: wrong key, tampered, cut
    ├── ForgetRegisterError the forget register cannot be read or written
    ├── TokenTableError     the token table cannot be read
    └── AuditChainBroken    the audit chain was edited, dropped, reordered or truncated
"""

from __future__ import annotations

__all__ = ["AccessDenied", "AuditChainBroken", "ForgetRegisterError", "KeyFileError", "SealedDataError",
           "SecurityError", "TokenTableError"]


class SecurityError(Exception):
    """Root of every error the security layer raises."""


class KeyFileError(SecurityError):
    """A key file is missing, unreadable or malformed."""


class SealedDataError(SecurityError):
    """Sealed data cannot be opened (wrong key, tampered or truncated)."""


class ForgetRegisterError(SecurityError):
    """The forget register cannot be read or written."""


class TokenTableError(SecurityError):
    """The token table cannot be read."""


class AuditChainBroken(SecurityError):
    """The audit chain does not verify; ``line`` (1-based) locates the first problem.

    Example:
        >>> AuditChainBroken("audit.jsonl:2: edited", line=2).line
        2
    """

    def __init__(self, message: str, *, line: int) -> None:
        self.line = line
        super().__init__(message)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep ``line`` when the error crosses a process boundary (Ray actors).
        return (_rebuild_audit, (str(self), self.line))


def _rebuild_audit(message: str, line: int) -> AuditChainBroken:
    return AuditChainBroken(message, line=line)


class AccessDenied(SecurityError):
    """A command needing a role was run without a token of that role (``status``: 401 / 403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
