"""The register of forget requests: which pseudonymised users must be gone, and how far it got.

An append-only JSONL file (``security.paths.forget_register_path()``), one line per state of a
request; the last line of a ticket is its state. It stores pseudonyms only, never a clear id.
Readers: training excludes every registered user, serving stops answering them, compliance
lists requests still ``pending``. Writers: ``recdrill data forget``.

Example:
    >>> import tempfile, pathlib
    >>> reg = ForgetRegister(pathlib.Path(tempfile.mkdtemp()) / "forget.jsonl")
    >>> reg.record(ForgetRequest.new("p_" + "0" * 32))
    >>> sorted(reg.pseudonyms()), [r.status for r in reg.pending()]
    (['p_00000000000000000000000000000000'], ['pending'])
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from durable import fsync_dir
from security.errors import ForgetRegisterError
from security.paths import forget_register_path

__all__ = ["ForgetRegister", "ForgetRequest", "Status"]

Status = Literal["pending", "done"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ForgetRequest:
    """One request to forget one user, in one of its states."""

    ticket: str
    pseudonym: str
    requested_at: str
    status: Status = "pending"
    #: Model versions trained on the user's data (marked; they stop answering the user).
    versions: tuple[str, ...] = ()
    updated_at: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, pseudonym: str) -> ForgetRequest:
        """A fresh pending request for ``pseudonym``."""
        now = _now()
        return cls(uuid.uuid4().hex, pseudonym, now, "pending", (), now)

    def advance(self, **changes: Any) -> ForgetRequest:
        """This request with ``changes`` applied and ``updated_at`` set to now."""
        return replace(self, **changes, updated_at=_now())


@dataclass(frozen=True)
class ForgetRegister:
    """The register file."""

    path: Path = field(default_factory=forget_register_path)

    def record(self, request: ForgetRequest) -> None:
        """Append ``request``'s current state (locked, fsynced)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = json.dumps({**asdict(request), "versions": list(request.versions)},
                          sort_keys=True) + "\n"
        with open(self.path, "ab") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(self.path.parent)

    def requests(self) -> list[ForgetRequest]:
        """Every request in its latest state, oldest request first."""
        if not self.path.exists():
            return []
        latest: dict[str, ForgetRequest] = {}
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                req = ForgetRequest(**{**data, "versions": tuple(data.get("versions", ()))})
            except (ValueError, TypeError) as exc:
                raise ForgetRegisterError(f"{self.path}:{number}: unreadable entry ({exc})"
                                          ) from exc
            latest[req.ticket] = req
        return list(latest.values())

    def pseudonyms(self) -> frozenset[str]:
        """Every user ever asked to be forgotten (pending or done)."""
        return frozenset(r.pseudonym for r in self.requests())

    def pending(self) -> list[ForgetRequest]:
        """Requests not yet completed."""
        return [r for r in self.requests() if r.status != "done"]
