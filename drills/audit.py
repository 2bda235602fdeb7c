"""A drill in the one audit log: ``drill.start`` before anything is touched, ``drill.finish``
with the verdict and the digests of the report it wrote.

Both go to ``RunOptions.audit_log`` when set, else ``security.paths.audit_log_path()``: the
log every other recdrill command writes. (The stores a drill builds keep their own short-lived
replication log under the work directory, removed with them.)

Example:
    >>> started = drill_started(scenario, Path("runs/drills/x"))  # doctest: +SKIP
    >>> drill_finished(started, journal).details["held"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drills.errors import EnvironmentError_
from drills.scenario import Scenario
from export.manifest import hash_file
from security.audit import AuditEntry, record
from security.errors import SecurityError
from security.paths import audit_log_path

__all__ = ["DrillAudit", "drill_finished", "drill_started"]

log = logging.getLogger(__name__)

ROLE = "operator"


@dataclass(frozen=True)
class DrillAudit:
    """Where a running drill is audited, and its start entry."""

    log: Path
    scenario: str
    start: AuditEntry
    actor: str | None = None  # the operator token's name (None: the OS user)


def drill_started(scenario: Scenario, out: Path, audit_log: Path | None = None,
                  ray_address: str | None = None, actor: str | None = None) -> DrillAudit:
    """Record ``drill.start``; EnvironmentError_ when the audit log refuses the entry (a drill
    breaks things on purpose: it does not run unaudited)."""
    path = audit_log or audit_log_path()
    details = {"out": str(out), "faults": [f.fault for f in scenario.method],
               "cluster": ray_address or "embedded"}
    try:
        entry = record("drill.start", target=scenario.title, role=ROLE, details=details,
                       log=path, actor=actor)
    except (SecurityError, OSError) as exc:
        raise EnvironmentError_(f"cannot record the drill in the audit log {path}: {exc}; "
                                "fix the log (recdrill audit verify) or point --audit "
                                "elsewhere") from exc
    return DrillAudit(path, scenario.title, entry, actor)


def drill_finished(started: DrillAudit, journal: Mapping[str, Any]) -> AuditEntry | None:
    """Record ``drill.finish`` (status, held, breach, report paths and digests); a failure to
    record is logged, not raised: the drill is over and its report written."""
    paths = {k: Path(v) for k, v in (journal.get("paths") or {}).items()}
    digests = {p.name: hash_file(p)[0] for p in paths.values() if p.is_file()}
    details = {"status": journal.get("status"), "held": journal.get("held"),
               "breach": journal.get("breach"), "error": journal.get("error"),
               "report": str(paths["report"]) if "report" in paths else None,
               "journal": str(paths["journal"]) if "journal" in paths else None,
               "start_seq": started.start.seq}
    try:
        return record("drill.finish", target=started.scenario, role=ROLE, digests=digests,
                      actor=started.actor,
                      details=details, log=started.log)
    except (SecurityError, OSError) as exc:
        log.error("drill %s finished (%s) but its end could not be recorded in the audit log "
                  "%s: %s", started.scenario, details["status"], started.log, exc)
        return None
