"""Errors raised by the replication stage.

Hierarchy::

    ReplicationError                 root: catch this to handle any replication failure
    ├── ConfigError                  bad flag, URL, key file or W value
    ├── KeyMissingError              a blob is encrypted with a key id the keyring lacks
    ├── StoreError                   a store operation failed
    │   ├── StoreUnavailable         the store (e.g. the primary) cannot be reached at all
    │   └── NotFound                 a blob, manifest or ref is absent
    ├── IntegrityError               stored bytes fail sha256, decryption or signature checks
    ├── VersionError                 unknown, uncommitted or already-present version
    ├── QuorumNotReached             fewer than W verified copies acknowledged a publish
    ├── NoPrimaryCandidate           primary lost and no live standby holds a committed version
    └── AuditChainBroken             the audit log does not verify; also a
                                     ``security.errors.AuditChainBroken``, which the audit
                                     log itself (``security.audit``) raises

Every message says what was expected, what was found, and what to do next.
"""

from __future__ import annotations

from security import errors as security_errors

__all__ = [
    "AuditChainBroken",
    "ConfigError",
    "IntegrityError",
    "KeyMissingError",
    "NoPrimaryCandidate",
    "NotFound",
    "QuorumNotReached",
    "ReplicationError",
    "StoreError",
    "StoreUnavailable",
    "VersionError",
]


class ReplicationError(Exception):
    """Root of every error raised by ``replication``."""


class ConfigError(ReplicationError):
    """A configuration value (URL, key file, W, flag) is invalid."""


class KeyMissingError(ReplicationError):
    """An encryption key needed to read or write a blob is not available."""


class StoreError(ReplicationError):
    """A store operation failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or is not initialised (e.g. the primary was deleted)."""


class NotFound(StoreError):
    """A key (blob, manifest, ref) is absent from a store."""


class IntegrityError(ReplicationError):
    """Stored bytes failed verification; names the version, file and node involved.

    Example:
        >>> str(IntegrityError("sha256 mismatch", version="v1", path="model.onnx", node="node-ab"))
        'v1/model.onnx on node-ab: sha256 mismatch'
    """

    def __init__(
        self,
        detail: str,
        *,
        version: str | None = None,
        path: str | None = None,
        node: str | None = None,
        digest: str | None = None,
    ) -> None:
        self.detail = detail
        self.version = version
        self.path = path
        self.node = node
        self.digest = digest
        where = f"{version or '?'}/{path or (digest and 'sha256:' + digest[:12]) or '?'}"
        super().__init__(f"{where} on {node or '?'}: {detail}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep the fields when the error crosses a process boundary (Ray actors).
        return (_rebuild_integrity, (self.detail, self.version, self.path, self.node, self.digest))


class VersionError(ReplicationError):
    """A version is unknown, not committed, or conflicts with one already published."""


class QuorumNotReached(ReplicationError):
    """Fewer than W node-local stores acknowledged a verified copy; nothing was committed."""


class NoPrimaryCandidate(ReplicationError):
    """The primary is lost and no live standby can take over."""


class AuditChainBroken(ReplicationError, security_errors.AuditChainBroken):
    """The audit log does not verify at ``line`` (1-based), as a replication command saw it.

    ``except security.errors.AuditChainBroken`` catches this one too.
    """

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_audit, (str(self), self.line))


def _rebuild_integrity(
    detail: str, version: str | None, path: str | None, node: str | None, digest: str | None
) -> IntegrityError:
    return IntegrityError(detail, version=version, path=path, node=node, digest=digest)


def _rebuild_audit(message: str, line: int) -> AuditChainBroken:
    return AuditChainBroken(message, line=line)
